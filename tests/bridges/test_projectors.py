import pytest
import torch

from fvq_hf.bridges import LinearBridge, MLPBridge


def test_projectors_keep_the_tables_shape_with_their_depth_of_layers():
    table = torch.randn(100, 8)
    assert LinearBridge(100, 8)(table).shape == (100, 8)
    mlp = MLPBridge(100, 8, hidden_size=16, depth=4)
    assert mlp(table).shape == (100, 8)
    assert sum(isinstance(m, torch.nn.Linear) for m in mlp.modules()) == 5
    with pytest.raises(ValueError, match="depth >= 1"):
        MLPBridge(100, 8, hidden_size=16, depth=0)


@pytest.mark.parametrize("cls", [LinearBridge, MLPBridge])
def test_projectors_freeze_a_spread_out_table(cls):
    assert cls.freezes_table and not cls.starts_at_zero
    weight = torch.empty(4096, 16)
    cls(4096, 16).init_table(weight)
    assert abs(weight.std().item() - 16**-0.5) < 0.01
