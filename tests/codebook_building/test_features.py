"""The encoders of fvq-build-codebook: a transformers CLIP vision tower gives VQGAN-LC's features (projected,
layer-normed patch tokens), this package's tokenizer its pre-quant_conv features; the pooling of their grids."""

import numpy as np
import pytest
import torch
from PIL import Image

from fvq_hf.codebook_building.features import (
    OPENAI_CLIP_MEAN,
    ClipFeatures,
    TokenizerFeatures,
    check_pooling,
    load_encoder,
    pooled_vectors,
)

from ..helpers import clip_image_processor, fill_cache, make_tiny_model, random_images, write_tiny_clip


def photo(size=(53, 41), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)).resize(size)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


def by_hand(folder, pixel_values: torch.Tensor) -> torch.Tensor:
    """VQGAN-LC's features written out: the last layer's tokens without CLS, post_layernorm, visual_projection."""
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(folder).eval()
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=pixel_values).last_hidden_state
        return model.visual_projection(model.vision_model.post_layernorm(hidden[:, 1:]))


def test_clip_features_are_the_projected_layer_normed_patch_tokens(clip):
    encoder = load_encoder(str(clip))
    assert isinstance(encoder, ClipFeatures)
    assert (encoder.resolution, encoder.grid, encoder.dim) == (32, (4, 4), 16)
    images = [photo(), photo((40, 70), seed=1)]
    # the checkpoint's own image processor (shorter side 40, bicubic, centre crop 32, CLIP mean / std)
    pixel_values = clip_image_processor().from_pretrained(clip)(images, return_tensors="pt").pixel_values
    with torch.no_grad():
        features = encoder(torch.stack([encoder.prepare(image) for image in images]))
    assert features.shape == (2, 16, 4, 4)
    expected = by_hand(clip, pixel_values)  # (2, 16 patches, 16)
    torch.testing.assert_close(features.flatten(2).transpose(1, 2), expected, rtol=1e-4, atol=1e-4)
    # and not the un-normed tokens, nor any with the CLS token
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(clip).eval()
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=pixel_values).last_hidden_state
        unnormed = model.visual_projection(hidden[:, 1:])
        shifted = model.visual_projection(model.vision_model.post_layernorm(hidden[:, :-1]))
    assert not torch.allclose(features.flatten(2).transpose(1, 2), unnormed, atol=1e-2)
    assert not torch.allclose(features.flatten(2).transpose(1, 2), shifted, atol=1e-2)


def test_a_whole_clip_model_and_one_without_a_processor_config_load(tmp_path):
    from transformers import CLIPModel

    full = load_encoder(str(write_tiny_clip(tmp_path / "full", full=True)))
    assert isinstance(full, ClipFeatures) and full.dim == 16 and full.resize == 40
    images = random_images(2, 32)
    whole = CLIPModel.from_pretrained(tmp_path / "full").eval()
    with torch.no_grad():  # the vision tower's weights, loaded out of the whole model's checkpoint
        hidden = whole.vision_model(pixel_values=((images + 1) / 2 - full.mean) / full.std).last_hidden_state
        expected = whole.visual_projection(whole.vision_model.post_layernorm(hidden[:, 1:]))
        torch.testing.assert_close(full(images).flatten(2).transpose(1, 2), expected, rtol=1e-4, atol=1e-4)
    bare = load_encoder(str(write_tiny_clip(tmp_path / "bare", processor=False)))
    assert (bare.resize, bare.resolution) == (32, 32)  # OpenAI's transform at the tower's image_size
    assert torch.allclose(bare.mean.flatten(), torch.tensor(OPENAI_CLIP_MEAN))
    pixel_values = ((images + 1) / 2 - bare.mean) / bare.std
    with torch.no_grad():
        torch.testing.assert_close(bare(images).flatten(2).transpose(1, 2), by_hand(tmp_path / "bare", pixel_values),
                                   rtol=1e-4, atol=1e-4)


def test_a_hub_id_loads_from_the_offline_cache_and_a_missing_one_says_so(clip, tmp_path, monkeypatch):
    import huggingface_hub.constants

    fill_cache(tmp_path / "cache", "org/tiny-clip", clip)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    assert isinstance(load_encoder("org/tiny-clip"), ClipFeatures)
    with pytest.raises(FileNotFoundError, match="--encoder org/not-there: .*not in the local Hub cache"):
        load_encoder("org/not-there")


def test_the_tokenizer_encoder_gives_its_features_before_quant_conv(tmp_path):
    model = make_tiny_model().eval()
    model.save_pretrained(tmp_path / "tok")
    encoder = load_encoder(str(tmp_path / "tok"))
    assert isinstance(encoder, TokenizerFeatures)
    assert (encoder.resolution, encoder.grid, encoder.dim) == (32, (8, 8), 32)
    images = random_images(2, 32)
    with torch.no_grad():
        assert torch.equal(encoder(images), model.encoder(images))


def test_other_models_and_pipeline_folders_are_refused(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="is a 'bert' model; fvq-build-codebook reads fvq, clip encoders"):
        load_encoder(str(tmp_path / "bert"))
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="pass its tokenizer subfolder"):
        load_encoder(str(tmp_path / "pipe"))
    with pytest.raises(FileNotFoundError, match="No encoder folder at"):
        load_encoder(str(tmp_path / "missing" / "model"))


def test_pooling_averages_cells_in_row_major_order():
    features = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    pooled = pooled_vectors(features, 2)
    assert pooled.shape == (2, 4, 3)
    assert torch.equal(pooled[1, 2], features[1, :, 2:4, 0:2].mean((1, 2)))  # cell (1, 0)
    assert torch.equal(pooled_vectors(features, 1), features.flatten(2).transpose(1, 2))
    assert check_pooling((16, 16), 4, "clip") == (4, 4)
    with pytest.raises(ValueError, match="--pool 3 does not divide the 8x8 feature grid of tok: use one of 1, 2, 4, 8"):
        check_pooling((8, 8), 3, "tok")
