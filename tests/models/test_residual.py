"""Residual quantization (`quantizer_type="residual"`): D codes per position from one (bridged) codebook.
(Folding is tested with plain VQ's, in test_fvq_model.py.)"""

import json

import pytest
import torch
from torch import nn

from fvq_hf import FVQModel
from fvq_hf.models.bridges import build_bridge
from fvq_hf.models.quantizer import VectorQuantizer, resolve_quantizer_config

from ..conftest import TINY_BRIDGES, make_tiny_model, perturb_bridge
from ..testing_utils import ModelHubTests
from .test_fvq_model import _images

BRIDGE_TYPES = ["vqbridge", "linear", "mlp", "none"]


def residual_model(bridge_type="vqbridge", depth=3, **overrides):
    model = make_tiny_model(bridge_type=bridge_type, quantizer_type="residual", quantizer_config={"depth": depth},
                            **overrides)
    if bridge_type == "vqbridge":
        perturb_bridge(model)
    return model


@pytest.mark.parametrize("bridge_type", BRIDGE_TYPES)
def test_shapes_and_every_path_agree(bridge_type):
    model = residual_model(bridge_type).eval()
    x = _images()
    with torch.no_grad():
        out, enc = model(x), model.encode(x)
        ids = model.tokenize(x)
        assert ids.shape == (2, 8, 8, 3) and torch.equal(ids, enc.indices) and torch.equal(out.indices, ids)
        torch.testing.assert_close(model.quantizer.lookup(ids), enc.latents)
        torch.testing.assert_close(model.detokenize(ids), out.sample)
    assert model.residual_depth == 3 and model.config.quantizer_config == {"depth": 3}


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


def test_every_depth_trains_the_one_bridged_codebook():
    torch.manual_seed(0)
    vq = VectorQuantizer(nn.Embedding(256, 8), build_bridge("vqbridge", 256, 8, TINY_BRIDGES["vqbridge"]),
                         residual_depth=3)
    with torch.no_grad():
        vq.bridge.proj_out.weight.normal_(std=0.05)
    out = vq(torch.randn(1, 8, 2, 2))  # 4 positions x 3 depths hit at most 12 of 256 codes
    (out.codebook_loss + out.commitment_loss).backward()
    assert out.indices.unique().numel() <= 12
    assert (vq.embedding.weight.grad.abs().sum(dim=1) > 0).all()  # through the bridge, every code


def test_plain_vq_residual_trains_only_the_codes_it_hits():
    torch.manual_seed(0)
    vq = VectorQuantizer(nn.Embedding(256, 8), None, residual_depth=3)
    out = vq(torch.randn(1, 8, 2, 2))
    (out.codebook_loss + out.commitment_loss).backward()
    rows = (vq.embedding.weight.grad.abs().sum(dim=1) > 0).nonzero().flatten()
    assert set(rows.tolist()) == set(out.indices.flatten().tolist())


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
     ("residual", {"depth": 2.5}, "integer >= 1"),
     ("residual", {"levels": 2}, r"\['levels'\] do not apply to quantizer_type 'residual'"),
     ("vq", {"depth": 2}, r"\['depth'\] do not apply to quantizer_type 'vq', which takes none"),
     ("lfq", None, "Unknown quantizer_type 'lfq'; expected one of vq, residual")],
)
def test_bad_quantizer_configs(quantizer_type, quantizer_config, match):
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
    assert FVQModel.from_pretrained(tmp_path).residual_depth == 4


class TestResidualModelHub(ModelHubTests):
    model_class = FVQModel
    breaking_change = ("num_vq_embeddings", 512)

    def make_model(self):
        return residual_model()

    def output(self, model):
        return torch.cat([model(_images()).sample.flatten(), model.tokenize(_images()).flatten().float()])
