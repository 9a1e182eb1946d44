"""Every registered quantizer type x every registered bridge type (a new entry in either registry is tested here
without editing a list): shapes, agreement of every path, save / load, folding, where the gradient goes.
(What is particular to each type: test_vq.py, test_residual.py, test_multiscale.py.)"""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from fvq_hf import FVQModel

from ..helpers import bridge_types, quantizer_types, random_images, typed_model
from ..testing_utils import ModelHubTests


def images_for(model, n: int = 2) -> torch.Tensor:
    return random_images(n, model.fixed_image_size or model.config.sample_size)


@pytest.mark.parametrize("bridge_type", bridge_types())
@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_shapes_and_every_path_agree(quantizer_type, bridge_type, tmp_path):
    model = typed_model(quantizer_type, bridge_type).eval()
    x = images_for(model)
    with torch.no_grad():
        out, enc = model(x), model.encode(x)
        ids = model.tokenize(x)
        assert ids.ndim == model.quantizer.indices_ndim and ids.shape[0] == 2
        maps = model.quantizer.level_maps(ids)
        assert len(maps) == model.quantizer.num_levels and sum(m.numel() for _, m in maps) == ids.numel()
        assert torch.equal(ids, enc.indices) and torch.equal(out.indices, ids)
        torch.testing.assert_close(model.quantizer.lookup(ids), enc.latents)
        # (forward's latents are z + (z_q - z), for the straight-through gradient: equal up to rounding)
        torch.testing.assert_close(model.detokenize(ids), out.sample, rtol=1e-4, atol=1e-4)
    model.save_pretrained(tmp_path)
    loaded = FVQModel.from_pretrained(tmp_path).eval()
    assert loaded.config.quantizer_config == model.config.quantizer_config
    with torch.no_grad():
        assert torch.equal(loaded.tokenize(x), ids)
        # (the same weights; a bridge's matmul may round differently in another allocation)
        torch.testing.assert_close(loaded.detokenize(ids), model.detokenize(ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bridge_type", bridge_types())
@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_fold_bridge_is_equivalent(quantizer_type, bridge_type, tmp_path):
    model = typed_model(quantizer_type, bridge_type).eval()
    folded = model.fold_bridge()
    assert folded.config.bridge_type == "none" and folded.quantizer.bridge is None
    assert folded.config.quantizer_config == model.config.quantizer_config
    x = images_for(model, 3)
    with torch.no_grad():
        a, b = model(x), folded(x)
    assert torch.equal(a.indices, b.indices)
    assert a.indices.unique().numel() > 8  # ids vary, so that "the same ids" says something
    torch.testing.assert_close(b.sample, a.sample, rtol=1e-5, atol=1e-5)
    folded.save_pretrained(tmp_path)
    keys = load_file(tmp_path / "diffusion_pytorch_model.safetensors").keys()
    assert not [k for k in keys if "bridge" in k]
    assert json.loads((tmp_path / "config.json").read_text())["bridge_type"] == "none"


@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_through_the_vqbridge_every_code_gets_gradient(quantizer_type):
    model = typed_model(quantizer_type)
    quantizer, side = model.quantizer, model.config.sample_size // 4
    torch.manual_seed(0)
    out = quantizer(torch.randn(1, 8, side, side))
    (out.codebook_loss + out.commitment_loss).backward()
    hit = torch.zeros(256, dtype=torch.bool)
    hit[out.indices.flatten()] = True
    assert (~hit).sum() >= 64  # (a precondition: many codes are not hit)
    assert (quantizer.embedding.weight.grad.abs().sum(dim=1) > 0).all()  # every one of them learns


@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_a_plain_codebook_trains_only_the_codes_it_hits(quantizer_type):
    model = typed_model(quantizer_type, "none")
    quantizer, side = model.quantizer, model.config.sample_size // 4
    torch.manual_seed(0)
    out = quantizer(torch.randn(1, 8, side, side))
    (out.codebook_loss + out.commitment_loss).backward()
    rows = (quantizer.embedding.weight.grad.abs().sum(dim=1) > 0).nonzero().flatten()
    assert set(rows.tolist()) == set(out.indices.flatten().tolist())


@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_ids_out_of_range_or_of_another_shape_are_named(quantizer_type):
    model = typed_model(quantizer_type).eval()
    with torch.no_grad():
        ids = model.tokenize(images_for(model, 1))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        model.detokenize(torch.full_like(ids, 256))
    with pytest.raises(ValueError, match=re.escape(f"Expected indices of shape {model.quantizer.indices_shape}")):
        model.detokenize(ids[..., None])


class TestEveryQuantizerTypeHub(ModelHubTests):
    """Strict loading, corrupt files and dtypes of a tokenizer of every quantizer type."""

    model_class = FVQModel
    breaking_change = ("num_vq_embeddings", 512)

    @pytest.fixture(autouse=True, params=quantizer_types())
    def quantizer_type(self, request):
        self.make_model = lambda: typed_model(request.param)

    def output(self, model):
        x = images_for(model)
        return torch.cat([model(x).sample.flatten(), model.tokenize(x).flatten().float()])


def test_the_registries_refuse_what_is_not_their_kind():
    from fvq_hf.conversion.layouts import LAYOUTS
    from fvq_hf.evaluation.metrics import METRICS
    from fvq_hf.quantizers import register_quantizer

    with pytest.raises(TypeError, match="is not a Quantizer subclass"):
        register_quantizer("bad", dict)
    with pytest.raises(TypeError, match="is not a Layout subclass"):
        LAYOUTS.register("vqgan")
    with pytest.raises(TypeError, match="is not a Metric subclass"):
        METRICS.register(int)
    with pytest.raises(ValueError, match=r"Unknown quantizer_type 'bad'; expected one of vq, residual, multiscale"):
        typed_model("bad")
