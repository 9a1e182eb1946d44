"""Residual quantization (`quantizer_type="residual"`): D codes per position from one (bridged) codebook.
(What every quantizer type must do, folding included: test_every_type.py.)"""

import json

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.quantizers import resolve_quantizer_config

from ..helpers import make_tiny_model, perturb_bridge


def residual_model(bridge_type="vqbridge", depth=3, **overrides):
    model = make_tiny_model(bridge_type=bridge_type, quantizer_type="residual", quantizer_config={"depth": depth},
                            **overrides)
    if bridge_type == "vqbridge":
        perturb_bridge(model)
    return model


def test_the_first_depth_is_plain_vq_and_depths_refine():
    plain, residual = make_tiny_model(), make_tiny_model(quantizer_type="residual", quantizer_config={"depth": 4})
    perturb_bridge(plain)
    residual.load_state_dict(plain.state_dict())  # the same weights: a residual adds no parameter
    torch.manual_seed(0)
    latents = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        first, deep = plain.quantizer(latents), residual.quantizer(latents)
        codebook = plain.quantizer.codebook()
    assert torch.equal(deep.indices[..., 0], first.indices)
    # Each further code quantizes what the codes before left: the partial sums are what forward returns.
    partial = codebook[deep.indices].cumsum(dim=-2)
    torch.testing.assert_close(partial[..., -1, :].permute(0, 3, 1, 2), deep.latents)
    errors = [(partial[..., level, :].permute(0, 3, 1, 2) - latents).pow(2).mean() for level in range(4)]
    assert errors[-1] < errors[0]


@pytest.mark.parametrize(
    ("indices", "match"),
    [(torch.zeros(1, 8, 8, dtype=torch.long), r"\(B, h, w, 3\), got \(1, 8, 8\)"),
     (torch.zeros(1, 8, 8, 2, dtype=torch.long), r"\(B, h, w, 3\), got \(1, 8, 8, 2\)"),
     (torch.full((1, 8, 8, 3), 256), r"\[0, 256\)")],
)
def test_ids_of_the_wrong_shape_name_the_expected_one(indices, match):
    with pytest.raises(ValueError, match=match):
        residual_model().detokenize(indices)
    with pytest.raises(ValueError, match=r"\(B, h, w\), got \(1, 8, 8, 3\)"):
        make_tiny_model().detokenize(torch.zeros(1, 8, 8, 3, dtype=torch.long))


@pytest.mark.parametrize(
    ("quantizer_type", "quantizer_config", "match"),
    [("residual", {"depth": 0}, "depth must be an integer >= 1, got 0"),
     ("residual", {"depth": 2.5}, "'depth' must be an integer, got 2.5"),
     ("residual", {"levels": 2}, r"\['levels'\] do not apply to quantizer_type 'residual'"),
     ("vq", {"depth": 2}, r"\['depth'\] do not apply to quantizer_type 'vq', which takes none"),
     ("lfq", None, "Unknown quantizer_type 'lfq'; expected one of vq, residual")],
)
def test_bad_quantizer_configs_are_refused_naming_the_key_or_value(quantizer_type, quantizer_config, match):
    with pytest.raises(ValueError, match=match):
        make_tiny_model(quantizer_type=quantizer_type, quantizer_config=quantizer_config)


def test_residual_with_l2_norm_is_refused():
    with pytest.raises(ValueError, match="residual quantization"):
        make_tiny_model(bridge_type="mlp", codebook_l2_norm=True, quantizer_type="residual")


def test_defaults_are_saved_complete(tmp_path):
    assert resolve_quantizer_config("residual", None) == {"depth": 4}
    make_tiny_model(quantizer_type="residual").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantizer_type"] == "residual" and config["quantizer_config"] == {"depth": 4}
    assert FVQModel.from_pretrained(tmp_path).quantizer.num_levels == 4

