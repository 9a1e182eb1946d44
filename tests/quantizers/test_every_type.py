"""Every registered quantizer type x every registered bridge type (a new entry in either registry is tested here
without editing a list): shapes, agreement of every path, save / load, folding, where the gradient goes. A type
without a table (`has_table`) runs with bridge_type "none" only, and the tests of a table (folding, its
gradients) skip it. (What is particular to each type: test_vq.py, test_residual.py, test_multiscale.py.)"""

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from fvq_hf import FVQModel
from fvq_hf.quantizers import QUANTIZERS

from ..helpers import bridge_types, quantizer_types, random_images, typed_model
from ..testing_utils import ModelHubTests

TABLE_TYPES = QUANTIZERS.names(lambda cls: cls.has_table)
# Every type with every bridge it takes: a type without a table takes none.
PAIRS = [(q, b) for q in quantizer_types() for b in bridge_types() if b == "none" or q in TABLE_TYPES]


def images_for(model, n: int = 2) -> torch.Tensor:
    return random_images(n, model.fixed_image_size or model.config.sample_size)


def model_of(quantizer_type: str):
    """The tiny model of a type with its usual bridge: the VQBridge, or none for a type without a table."""
    return typed_model(quantizer_type, "vqbridge" if quantizer_type in TABLE_TYPES else "none")


@pytest.mark.parametrize(("quantizer_type", "bridge_type"), PAIRS)
def test_shapes_and_every_path_agree(quantizer_type, bridge_type, tmp_path):
    model = typed_model(quantizer_type, bridge_type).eval()
    x = images_for(model)
    with torch.no_grad():
        out, enc = model(x), model.encode(x)
        ids = model.tokenize(x)
        # the ids are as the one ids spec says, and the card's description of them is read off it
        spec, side = model.quantizer.ids, x.shape[-1] // model.downsample_factor
        assert ids.shape == (2, *spec.image_shape(side)) and ids.ndim == model.quantizer.indices_ndim
        assert model.token_description()[0] == ", ".join(str(n) for n in ids.shape[1:])
        maps = model.quantizer.level_maps(ids)
        assert [label for label, _ in maps] == list(spec.level_labels) and len(maps) == model.quantizer.num_levels
        assert sum(m.numel() for _, m in maps) == ids.numel()
        assert torch.equal(ids, enc.indices) and torch.equal(out.indices, ids)
        torch.testing.assert_close(model.quantizer.lookup(ids), enc.quantized)
        # (forward's latents are z + (z_q - z), for the straight-through gradient: equal up to rounding)
        torch.testing.assert_close(model.detokenize(ids), out.sample, rtol=1e-4, atol=1e-4)
    model.save_pretrained(tmp_path)
    loaded = FVQModel.from_pretrained(tmp_path).eval()
    assert loaded.config.quantizer_config == model.config.quantizer_config
    # the class computes the instance's spec from the saved config: one value
    assert type(loaded.quantizer).ids_spec(loaded.config.quantizer_config) == loaded.quantizer.ids == spec
    with torch.no_grad():
        assert torch.equal(loaded.tokenize(x), ids)
        # (the same weights; a bridge's matmul may round differently in another allocation)
        torch.testing.assert_close(loaded.detokenize(ids), model.detokenize(ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("quantizer_type", "bridge_type"), [(q, b) for q, b in PAIRS if q in TABLE_TYPES])
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


@pytest.mark.parametrize("quantizer_type", TABLE_TYPES)
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


@pytest.mark.parametrize("quantizer_type", TABLE_TYPES)
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
    model = model_of(quantizer_type).eval()
    with torch.no_grad():
        ids = model.tokenize(images_for(model, 1))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        model.detokenize(torch.full_like(ids, 256))
    with pytest.raises(ValueError, match=re.escape(f"Expected indices of shape {model.quantizer.indices_shape}")):
        model.detokenize(ids[..., None])


class EveryQuantizerTypeHub(ModelHubTests):
    """Strict loading, corrupt files and dtypes of a tokenizer of the quantizer type `quantizer_type`; a test class
    of it per registered type follows."""

    model_class = FVQModel
    breaking_change = ("latent_channels", 64)  # (a type without a table has no weight of K rows)
    quantizer_type: str

    def make_model(self):
        return model_of(self.quantizer_type)

    def output(self, model):
        x = images_for(model)
        return torch.cat([model(x).sample.flatten(), model.tokenize(x).flatten().float()])


for _name in quantizer_types():
    _title = "".join(part.title() for part in re.split(r"[^a-zA-Z0-9]+", _name))
    globals()[f"TestHubOf{_title}"] = type(f"TestHubOf{_title}", (EveryQuantizerTypeHub,), {"quantizer_type": _name})


def test_the_registries_refuse_what_is_not_their_kind():
    from fvq_hf.conversion.layouts import LAYOUTS
    from fvq_hf.evaluation.metrics import METRICS

    with pytest.raises(TypeError, match="is not a Quantizer subclass"):
        QUANTIZERS.register(dict)
    with pytest.raises(TypeError, match="is not a Layout subclass"):
        LAYOUTS.register("vqgan")
    with pytest.raises(TypeError, match="is not a Metric subclass"):
        METRICS.register(int)
    with pytest.raises(ValueError, match=r"Unknown quantizer_type 'bad'; expected one of vq, residual, multiscale"):
        typed_model("bad")


@pytest.mark.parametrize("quantizer_type", QUANTIZERS.names(lambda cls: not cls.has_table))
def test_a_type_without_a_table_refuses_a_bridge_and_folding(quantizer_type):
    with pytest.raises(ValueError, match=rf"\(quantizer_type '{quantizer_type}'\) has no codebook table, so it "
                                         "takes no bridge: use bridge_type 'none', not 'vqbridge'"):
        typed_model(quantizer_type, "vqbridge")
    model = model_of(quantizer_type)
    with pytest.raises(ValueError, match="has no codebook table .* no bridge to fold"):
        model.fold_bridge()
    with pytest.raises(ValueError, match="has no codebook table, so it takes no bridge"):
        model.add_bridge("linear")
    # what needs no table still works: the card's bridge line, the usage heatmap's grid of K = 256 codes
    assert model.bridge_name == f"none (the {model.quantizer.display_name} quantizer has no codebook table)"
    assert model.codebook_grid == (16, 16)


@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_compile_traces_the_search_without_a_graph_break(quantizer_type):
    # The search is the custom op fvq_hf::nearest_code: Dynamo keeps it in the graph (the kernel alone, a pybind
    # function, broke it). The eager backend: this tests tracing, not inductor's C++ compile.
    model = model_of(quantizer_type)
    side = model.config.sample_size // 4  # the tiny model's downsampling
    quantizer, latents = model.quantizer, torch.randn(2, model.quantizer.code_dim, side, side)
    torch._dynamo.reset()
    compiled = torch.compile(quantizer, backend="eager", fullgraph=True)
    assert torch.equal(compiled(latents).indices, quantizer(latents).indices)
