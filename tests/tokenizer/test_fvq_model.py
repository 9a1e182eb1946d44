import json

import pytest
import torch

from fvq_hf import FVQModel

from ..helpers import TINY_CONFIG, make_tiny_model, perturb_bridge, random_images
from ..testing_utils import ModelHubTests


def test_ids_and_latents_follow_the_token_grid_of_any_image_size(tiny_model):
    x = random_images()
    out = tiny_model(x)
    assert out.sample.shape == x.shape
    assert out.indices.shape == (2, 8, 8) and out.indices.dtype == torch.long
    assert tiny_model.downsample_factor == 4 and tiny_model.token_grid_size(32, 48) == (8, 12)
    assert tiny_model.token_grid_size() == (8, 8)
    enc = tiny_model.encode(random_images(1, 48))
    assert enc.latents.shape == (1, 8, 12, 12) and enc.indices.shape == (1, 12, 12)


def test_encode_decode_tokenize_detokenize_agree(tiny_model):
    perturb_bridge(tiny_model)
    tiny_model.eval()
    x = random_images()
    with torch.no_grad():
        enc = tiny_model.encode(x)
        indices = tiny_model.tokenize(x)
        assert torch.equal(indices, enc.indices)
        from_latents = tiny_model.decode(enc.latents).sample  # quantized here, as diffusers' VQModel.decode
        from_quantized = tiny_model.decode(enc.quantized, force_not_quantize=True).sample
        from_indices = tiny_model.detokenize(indices)
        forward = tiny_model(x).sample
    assert not torch.equal(enc.latents, enc.quantized)
    torch.testing.assert_close(from_quantized, from_latents)
    torch.testing.assert_close(from_indices, from_latents)
    torch.testing.assert_close(forward, from_latents)


def test_return_dict_false_gives_the_same_fields(tiny_model):
    x = random_images()
    with torch.no_grad():
        latents, quantized, indices = tiny_model.encode(x, return_dict=False)
        (sample,) = tiny_model.decode(latents, return_dict=False)
        assert torch.equal(tiny_model.decode(quantized, force_not_quantize=True, return_dict=False)[0], sample)
        out = tiny_model(x, return_dict=False)
    assert len(out) == 4 and torch.equal(out[1], indices)
    torch.testing.assert_close(out[0], sample)


def test_straight_through_gradients_reach_the_encoder(tiny_model):
    out = tiny_model(random_images())
    out.sample.pow(2).mean().backward()  # the reconstruction loss alone, no commitment term
    grads = [p.grad for p in tiny_model.encoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_fold_bridge_with_l2_normalised_codes_is_equivalent():
    # (every type x bridge folds in tests/quantizers/test_every_type.py; l2-norm only fits plain VQ without a VQBridge)
    model = make_tiny_model(bridge_type="mlp", codebook_l2_norm=True)
    perturb_bridge(model)
    model.eval()
    x = random_images(3)
    with torch.no_grad():
        a, b = model(x), model.fold_bridge()(x)
    assert torch.equal(a.indices, b.indices) and a.indices.unique().numel() > 8
    torch.testing.assert_close(b.sample, a.sample, rtol=1e-5, atol=1e-5)


def test_the_token_description_states_one_images_ids_of_each_type():
    assert make_tiny_model().token_description() == ("8, 8", "8 x 8 per 32 px image")
    residual = make_tiny_model(quantizer_type="residual", quantizer_config={"depth": 3})
    assert residual.token_description() == ("8, 8, 3", "8 x 8 positions x 3 residual codes per 32 px image")
    multiscale = make_tiny_model(quantizer_type="multiscale", quantizer_config={"scales": [1, 3, 8]})
    assert multiscale.token_description() == (
        "74", "74 per 32 px image: multi-scale (VAR), scales [1, 3, 8], coarsest first, each in raster order")


def test_frozen_table_stays_frozen_after_loading(tmp_path):
    make_tiny_model(bridge_type="linear").save_pretrained(tmp_path)
    assert not FVQModel.from_pretrained(tmp_path).quantizer.embedding.weight.requires_grad


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "match"),
    [((1, 3, 30, 32), "not divisible by the downsample factor 4"), ((1, 1, 32, 32), r"\(B, 3, H, W\)"),
     ((3, 32, 32), r"\(B, 3, H, W\)")],
)
def test_images_of_a_bad_shape_are_refused_naming_the_expected_one(tiny_model, shape, match):
    with pytest.raises(ValueError, match=match):
        tiny_model.encode(torch.zeros(shape))


def test_a_non_tensor_input_is_a_type_error_that_names_the_pipeline(tiny_model):
    with pytest.raises(TypeError, match="torch.Tensor"):
        tiny_model.tokenize([[0.0]])


def test_token_ids_outside_the_codebook_are_refused(tiny_model):
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        tiny_model.detokenize(torch.full((1, 8, 8), 256))


def test_decode_rejects_indices_with_a_hint(tiny_model):
    with pytest.raises(ValueError, match="detokenize"):
        tiny_model.decode(torch.zeros(1, 8, 8, dtype=torch.long))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (dict(block_out_channels=(32, 48)), "multiple of norm_num_groups"),
        (dict(block_out_channels=()), "at least one level"),
        (dict(sample_size=30), "multiple of the downsample factor"),
        (dict(bridge_type="simvq"), "Unknown bridge_type"),
        (dict(num_vq_embeddings=250), "multiple of patch_size"),
        (dict(dropout=1.5), "dropout"),
        (dict(latent_channels=0), ">= 1"),
        (dict(attention_levels=[3]), r"attention_levels \[3\] name levels \[3\] that do not exist: .* 0 \(full "
                                     r"resolution\) to 2"),
    ],
)
def test_impossible_configs_are_refused_naming_the_problem(override, match):
    with pytest.raises(ValueError, match=match):
        FVQModel(**{**TINY_CONFIG, **override})


def level_attention(model: FVQModel) -> tuple[list[int], list[int]]:
    """The encoder levels and decoder levels (in the order they run) that have self-attention."""
    return ([i for i, level in enumerate(model.encoder.conv_blocks) if len(level.attn)],
            [i for i, level in enumerate(model.decoder.conv_blocks) if len(level.attn)])


def test_attention_levels_place_self_attention_at_those_resolutions(tmp_path):
    """Default: the lowest level (LlamaGen, taming's f16), as before the key existed; `[]`: the middle blocks only
    (taming's f8, VQGAN-LC's f8 model); any levels, the decoder attending at the same resolutions."""
    default = make_tiny_model(bridge_type="none")
    assert default.config.attention_levels is None and level_attention(default) == ([2], [0])
    assert default.state_dict().keys() == make_tiny_model(bridge_type="none", attention_levels=[2]).state_dict().keys()
    middle = make_tiny_model(bridge_type="none", attention_levels=[])
    assert level_attention(middle) == ([], []) and len(middle.encoder.mid) == len(middle.decoder.mid) == 3
    both = make_tiny_model(bridge_type="none", attention_levels=[2, 0])
    assert both.config.attention_levels == (0, 2) and level_attention(both) == ([0, 2], [0, 2])
    with torch.no_grad():
        assert middle(random_images()).sample.shape == (2, 3, 32, 32)
    middle.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["attention_levels"] == []
    assert level_attention(FVQModel.from_pretrained(tmp_path)) == ([], [])


def test_missing_weights_are_an_error(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(bridge_type="linear", bridge_config={})  # expects bridge.linear.*, the file has the VQBridge
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match its config.json"):
        FVQModel.from_pretrained(tmp_path)


class TestFVQModelHub(ModelHubTests):
    model_class = FVQModel
    breaking_change = ("num_vq_embeddings", 512)

    def make_model(self):
        model = make_tiny_model()
        perturb_bridge(model)
        return model

    def output(self, model):
        return model(random_images()).sample

    def check_low_precision(self, model):
        # The distances to a large codebook need fp32: the quantizer stays there.
        assert model.encoder.conv_in.weight.dtype == torch.bfloat16
        assert model.quantizer.embedding.weight.dtype == torch.float32
        with torch.no_grad():
            assert model(random_images().bfloat16()).sample.dtype == torch.bfloat16

    def test_tuples_survive_the_json_round_trip(self, tmp_path):
        make_tiny_model().save_pretrained(tmp_path)
        assert FVQModel.from_pretrained(tmp_path).config.block_out_channels == (32, 32, 64)
