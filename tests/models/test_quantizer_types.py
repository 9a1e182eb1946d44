"""Every quantizer type x every bridge type: shapes, agreement of every path, save / load, where the gradient goes.
(Folding: test_fvq_model.py; what is particular to each type: test_residual.py, test_multiscale.py.)"""

import pytest
import torch

from fvq_hf import FVQModel

from ..helpers import make_tiny_model, perturb_bridge, random_images
from ..testing_utils import ModelHubTests

BRIDGE_TYPES = ["vqbridge", "linear", "mlp", "none"]
# The tiny model: 32 px images, an 8 x 8 latent grid. 3 and 5 do not divide 8, as VAR's scales do not divide 16.
CONFIGS = {"vq": None, "residual": {"depth": 3}, "multiscale": {"scales": [1, 3, 5, 8]}}
IDS_SHAPES = {"vq": (2, 8, 8), "residual": (2, 8, 8, 3), "multiscale": (2, 1 + 9 + 25 + 64)}


def typed_model(quantizer_type: str, bridge_type: str = "vqbridge", **overrides) -> FVQModel:
    model = make_tiny_model(bridge_type=bridge_type, quantizer_type=quantizer_type,
                            quantizer_config=CONFIGS[quantizer_type], **overrides)
    if bridge_type == "vqbridge":
        perturb_bridge(model)
    return model


@pytest.mark.parametrize("bridge_type", BRIDGE_TYPES)
@pytest.mark.parametrize("quantizer_type", list(CONFIGS))
def test_shapes_and_every_path_agree(quantizer_type, bridge_type, tmp_path):
    model = typed_model(quantizer_type, bridge_type).eval()
    x = random_images()
    with torch.no_grad():
        out, enc = model(x), model.encode(x)
        ids = model.tokenize(x)
        assert ids.shape == IDS_SHAPES[quantizer_type] and torch.equal(ids, enc.indices) and torch.equal(out.indices, ids)
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


@pytest.mark.parametrize("quantizer_type", list(CONFIGS))
def test_through_the_vqbridge_every_code_gets_gradient(quantizer_type):
    quantizer = typed_model(quantizer_type).quantizer
    torch.manual_seed(0)
    out = quantizer(torch.randn(1, 8, 8, 8))
    (out.codebook_loss + out.commitment_loss).backward()
    assert out.indices.unique().numel() < 256 * 0.8  # many codes are not hit...
    assert (quantizer.embedding.weight.grad.abs().sum(dim=1) > 0).all()  # ...and every one of them learns


@pytest.mark.parametrize("quantizer_type", list(CONFIGS))
def test_a_plain_codebook_trains_only_the_codes_it_hits(quantizer_type):
    quantizer = typed_model(quantizer_type, "none").quantizer
    torch.manual_seed(0)
    out = quantizer(torch.randn(1, 8, 8, 8))
    (out.codebook_loss + out.commitment_loss).backward()
    rows = (quantizer.embedding.weight.grad.abs().sum(dim=1) > 0).nonzero().flatten()
    assert set(rows.tolist()) == set(out.indices.flatten().tolist())


class TestQuantizerTypesHub(ModelHubTests):
    """Strict loading, corrupt files, dtypes of the residual and multi-scale tokenizers (plain VQ's: test_fvq_model)."""

    model_class = FVQModel
    breaking_change = ("num_vq_embeddings", 512)

    @pytest.fixture(autouse=True, params=["residual", "multiscale"])
    def quantizer_type(self, request):
        self.make_model = lambda: typed_model(request.param)

    def output(self, model):
        return torch.cat([model(random_images()).sample.flatten(), model.tokenize(random_images()).flatten().float()])
