"""The bridge registry: a new bridge is one class plus its entry, and every model path works with it."""

import json

import pytest
import torch
from torch import nn

from fvq_hf import FVQModel
from fvq_hf.bridges import BRIDGES, CodebookBridge, register_bridge, resolve_bridge_config

from ..helpers import make_tiny_model


class ScaleBridge(CodebookBridge, nn.Module):
    """An example bridge: a learnable per-dimension scale and shift of the table (the whole module)."""

    display_name = "per-dimension affine map (example)"

    def __init__(self, codebook_size: int, code_dim: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((code_dim,), init_scale))
        self.shift = nn.Parameter(torch.zeros(code_dim))

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        return table * self.scale + self.shift


@pytest.fixture
def scale_bridge(monkeypatch):
    monkeypatch.setitem(BRIDGES, "scale", ScaleBridge)  # what register_bridge("scale", ScaleBridge) does
    return make_tiny_model(bridge_type="scale", bridge_config={"init_scale": 3.0}).eval()


def test_an_example_bridge_works_end_to_end(scale_bridge, tmp_path):
    model = scale_bridge
    assert model.config.bridge_config == {"init_scale": 3.0} and model.bridge_name.startswith("per-dimension")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ids = model.tokenize(images)
        torch.testing.assert_close(model.quantizer.codebook(), model.quantizer.embedding.weight * 3.0)
        assert torch.equal(model.fold_bridge().tokenize(images), ids)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["bridge_config"] == {"init_scale": 3.0}
    with torch.no_grad():
        assert torch.equal(FVQModel.from_pretrained(tmp_path).tokenize(images), ids)
    # gradient reaches every code through the bridge? No: an affine map per code only reaches hit codes.
    model.train()
    model(images).codebook_loss.backward()
    assert model.quantizer.bridge.scale.grad.abs().sum() > 0


def test_config_keys_belong_to_the_bridge():
    with pytest.raises(ValueError, match=r"keys \['hidden_size'\] do not exist for the linear projector"):
        make_tiny_model(bridge_type="linear", bridge_config={"hidden_size": 8})
    with pytest.raises(ValueError, match="plain VQ.*takes no bridge_config"):
        make_tiny_model(bridge_type="none", bridge_config={"depth": 2})
    with pytest.raises(ValueError, match=r"Unknown bridge_type 'vq'; choose one of \['vqbridge', 'dit', 'linear'"):
        make_tiny_model(bridge_type="vq")
    assert resolve_bridge_config("mlp", {"depth": 4}) == {"hidden_size": 256, "depth": 4}


def test_register_bridge_checks_the_class(monkeypatch):
    monkeypatch.setattr("fvq_hf.bridges.BRIDGES", dict(BRIDGES))
    with pytest.raises(TypeError, match="not a CodebookBridge"):
        register_bridge("linear2", nn.Linear)
    with pytest.raises(ValueError, match="reserved"):
        register_bridge("none", ScaleBridge)


@pytest.mark.parametrize("bridge_type, expected", [
    ("vqbridge", {"patch_size": 4, "hidden_size": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}),
    ("mlp", {"hidden_size": 32, "depth": 2}),
    ("linear", {}),
    ("none", {}),
])
def test_configs_of_fvq_hf_0_1_still_load(bridge_type, expected, tmp_path):
    """0.1 wrote every bridge's keys flat; they load into the new shape, with the same weights."""
    model = make_tiny_model(bridge_type=bridge_type, bridge_config=expected or None)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["bridge_config"]
    config.update(bridge_patch_size=4, bridge_hidden_size=32, bridge_depth=2, bridge_num_heads=2, bridge_mlp_ratio=2.0)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = FVQModel.from_pretrained(tmp_path)
    assert loaded.config.bridge_config == expected and "bridge_patch_size" not in loaded.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert FVQModel.from_config(config).config.bridge_config == expected
