"""Multi-scale quantization (`quantizer_type="multiscale"`, VAR's): a token map per scale from one (bridged)
codebook. (What every quantizer type must do, folding included: test_every_type.py; VAR's own checkpoints:
tests/conversion/test_parity.py.)"""

import json

import pytest
import torch
import torch.nn.functional as F

from fvq_hf import FVQModel
from fvq_hf.quantizers.multiscale import phi_for_scale

from ..helpers import make_tiny_model, perturb_bridge, random_images

SCALES = [1, 3, 5, 8]  # the tiny model's latent grid is 8 x 8; 3 and 5 do not divide it, as VAR's 3, 5, 6, ... 16
MULTISCALE = {"quantizer_type": "multiscale", "quantizer_config": {"scales": SCALES}}


def multiscale_model(bridge_type="vqbridge", **overrides):
    model = make_tiny_model(bridge_type=bridge_type, **{**MULTISCALE, **overrides})
    if bridge_type == "vqbridge":
        perturb_bridge(model)
    return model


def test_scale_maps_come_coarsest_first_in_raster_order():
    model = multiscale_model().eval()
    with torch.no_grad():
        ids = model.tokenize(random_images())
    assert model.config.quantizer_config == {"scales": SCALES, "num_phi": 4, "phi_ratio": 0.5}
    maps = model.quantizer.level_maps(ids)
    assert [label for label, _ in maps] == ["scale 1x1", "scale 3x3", "scale 5x5", "scale 8x8"]
    assert [tuple(m.shape) for _, m in maps] == [(2, s, s) for s in SCALES]
    assert torch.equal(maps[1][1].flatten(1), ids[:, 1:10])


def test_each_scale_quantizes_what_the_coarser_ones_left():
    model = multiscale_model("none", quantizer_config={"scales": SCALES, "phi_ratio": 0.0}).eval()
    quantizer = model.quantizer
    torch.manual_seed(0)
    latents = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        out = quantizer(latents)
        codebook = quantizer.codebook().detach()
    maps = quantizer.split_scales(out.indices)
    # scale 1: the nearest code to each image's mean latent (area-downsampling to 1 x 1)
    mean = latents.mean(dim=(2, 3))
    assert torch.equal(maps[0].flatten(), torch.cdist(mean, codebook).argmin(dim=1))
    # without phi the latent is the sum of the upsampled code maps, and the error falls as scales are added
    partial, errors = 0.0, []
    for scale, ids in zip(SCALES, maps):
        codes = codebook[ids].permute(0, 3, 1, 2)
        partial = partial + (codes if scale == 8 else F.interpolate(codes, size=(8, 8), mode="bicubic"))
        errors.append(float((partial - latents).pow(2).mean()))
    torch.testing.assert_close(partial, out.latents)
    assert errors[-1] < errors[0]


def test_vars_choice_of_phi_is_made_in_float64():
    # VAR: 4 shared convs, ticks 1/12 ... 11/12; scales 2 and 7 of 10 sit halfway between two ticks.
    assert [phi_for_scale(k, 10, 4) for k in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert [phi_for_scale(k, 10, 1) for k in range(10)] == [0] * 10  # fully shared
    assert [phi_for_scale(k, 4, 4) for k in range(4)] == [0, 1, 2, 3]
    assert phi_for_scale(0, 1, 4) == 0  # one scale
    assert len(multiscale_model(quantizer_config={"scales": SCALES, "phi_ratio": 0.0}).quantizer.phi) == 0


def test_the_phi_convs_learn():
    model = multiscale_model()
    out = model(random_images())
    (out.sample.pow(2).mean() + out.codebook_loss + out.commitment_loss).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.quantizer.phi.parameters())


@pytest.mark.parametrize(
    ("quantizer_config", "match"),
    [({"scales": [1, 3, 5]}, r"last multi-scale scale must be the latent grid, sample_size / 4 = 8; got scales \[1, 3, 5\]"),
     ({"scales": [1, 5, 3, 8]}, "increasing integers"),
     ({"scales": []}, "non-empty"),
     ({"scales": [0, 8]}, ">= 1"),
     ({"scales": 8}, "list"),
     ({"num_phi": 0}, "num_phi .* >= 1, got 0"),
     ({"phi_ratio": 1.5}, r"phi_ratio must lie in \[0, 1\]"),
     ({"depth": 2}, r"\['depth'\] do not apply to quantizer_type 'multiscale'")],
)
def test_bad_multiscale_configs_are_refused_naming_the_value(quantizer_config, match):
    with pytest.raises(ValueError, match=match):
        make_tiny_model(quantizer_type="multiscale", quantizer_config={"scales": SCALES, **quantizer_config})


def test_l2_norm_is_refused_for_multiscale():
    with pytest.raises(ValueError, match="multi-scale quantization"):
        multiscale_model("mlp", codebook_l2_norm=True)


def test_images_of_another_size_and_ids_of_the_wrong_shape_name_the_expected_one():
    model = multiscale_model().eval()
    with pytest.raises(ValueError, match=r"exactly 32 x 32 .*'scales': \[1, 3, 5, 8\].*got \(48, 48\)"):
        model.tokenize(random_images(size=48))
    with pytest.raises(ValueError, match=r"\(B, 99\) \(scales \[1, 3, 5, 8\], coarsest first\), got \(1, 8, 8\)"):
        model.detokenize(torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 99\).*got \(1, 64\)"):
        model.detokenize(torch.zeros(1, 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        model.detokenize(torch.full((1, 99), 256))
    with pytest.raises(ValueError, match=r"multiscale tokenizer \(4 scales, 99 tokens per image\)"):
        model.require_one_code_per_position("the generator")


def test_defaults_are_vars_and_saved_complete(tmp_path):
    model = make_tiny_model(sample_size=64, quantizer_type="multiscale",
                            quantizer_config={"scales": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]})
    assert model.quantizer.num_tokens == 680 and model.fixed_image_size == 64  # VAR's 680 tokens
    make_tiny_model(**MULTISCALE).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["quantizer_config"] == {"scales": SCALES, "num_phi": 4, "phi_ratio": 0.5}
    assert FVQModel.from_pretrained(tmp_path).quantizer.scales == SCALES
