"""An FVQModel in the VQ slot of diffusers' own pipelines (tiny random parts): each runs and gives images of the
right shape, and where diffusers' `VQModel.decode` quantizes, FVQ quantizes with its bridged codebook, as its
quantizer type does."""

import json

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    KandinskyV22Pipeline,
    LDMPipeline,
    UNet2DConditionModel,
    UNet2DModel,
)

from fvq_hf import FVQModel
from fvq_hf.quantizers import quantizer_class
from fvq_hf.tokenizer.quantize_view import QuantizeView

from ..helpers import make_tiny_model, perturb_bridge, quantizer_types, random_images, typed_model

NEW_KEYS = {"scaling_factor": 1.0, "force_upcast": False, "lookup_from_codebook": False}


def any_type_model(quantizer_type: str) -> FVQModel:
    """The tiny model of `quantizer_type` (bridged where the type has a table), in eval mode."""
    return typed_model(quantizer_type, "vqbridge" if quantizer_class(quantizer_type).has_table else "none").eval()


def record_decode(model: FVQModel) -> list:
    """Record what a pipeline passes to `model.decode`: `[(h, kwargs)]`."""
    calls, decode = [], model.decode

    def spy(h, **kwargs):
        calls.append((h.clone(), kwargs))
        return decode(h, **kwargs)

    model.decode = spy
    return calls


def as_numpy_images(sample: torch.Tensor) -> np.ndarray:
    """What LDMPipeline and DiTPipeline make of `decode(...).sample`."""
    return (sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()


def assert_decode_quantizes(model: FVQModel, h: torch.Tensor) -> torch.Tensor:
    """`decode(h)` is the decoding of `h` quantized by the model's quantizer (VQModel's meaning), which is not `h`
    decoded as it is; returns that decoding."""
    with torch.no_grad():
        decoded = model.decode(h).sample
        quantized, _, (_, _, indices) = model.quantize(h)
        torch.testing.assert_close(decoded, model.decode(quantized, force_not_quantize=True).sample)
        torch.testing.assert_close(decoded, model.detokenize(indices), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(decoded, model.decode(h, force_not_quantize=True).sample, atol=1e-3)
    return decoded


@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_ldm_pipeline_decodes_through_the_quantizer(quantizer_type):
    model = any_type_model(quantizer_type)
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=8, out_channels=8, block_out_channels=(32, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    pipe = LDMPipeline(vqvae=model, unet=unet, scheduler=DDIMScheduler(num_train_timesteps=10))
    calls = record_decode(model)
    images = pipe(batch_size=2, num_inference_steps=2, generator=torch.manual_seed(0), output_type="np").images
    assert images.shape == (2, 32, 32, 3)
    (h, kwargs), = calls
    assert kwargs == {} and h.shape == (2, 8, 8, 8)
    np.testing.assert_allclose(images, as_numpy_images(assert_decode_quantizes(model, h)), atol=1e-5)


def test_dit_pipeline_takes_the_model_as_its_vae():
    model = make_tiny_model(scaling_factor=0.5)
    perturb_bridge(model.eval())
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=16,
                                        num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=1000)
    pipe = DiTPipeline(transformer=transformer, vae=model, scheduler=DDIMScheduler(num_train_timesteps=10))
    calls = record_decode(model)
    images = pipe(class_labels=[1, 3], num_inference_steps=2, generator=torch.manual_seed(0), output_type="np").images
    assert images.shape == (2, 32, 32, 3)
    (h, kwargs), = calls
    assert kwargs == {} and h.shape == (2, 8, 8, 8)
    np.testing.assert_allclose(images, as_numpy_images(assert_decode_quantizes(model, h)), atol=1e-5)


def tiny_clip(folder):
    """A random CLIP text encoder and a tokenizer of the letters, built offline."""
    transformers = pytest.importorskip("transformers", reason="VQ-Diffusion's text encoder is a transformers CLIP")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter], vocab[letter + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                           model_max_length=8, pad_token="<|endoftext|>")
    torch.manual_seed(0)
    config = transformers.CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                                         num_attention_heads=4, num_hidden_layers=1, max_position_embeddings=8,
                                         bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return transformers.CLIPTextModel(config).eval(), tokenizer


def vq_diffusion_pipeline(model: FVQModel, tmp_path):
    from diffusers import Transformer2DModel, VQDiffusionPipeline, VQDiffusionScheduler
    from diffusers.pipelines.deprecated.vq_diffusion import LearnedClassifierFreeSamplingEmbeddings

    text_encoder, tokenizer = tiny_clip(tmp_path)
    torch.manual_seed(0)
    # VQ-Diffusion's vocabulary is the K codes and a mask token.
    transformer = Transformer2DModel(num_vector_embeds=model.codebook_size + 1, sample_size=8, num_attention_heads=1,
                                     attention_head_dim=16, cross_attention_dim=32, num_embeds_ada_norm=4,
                                     attention_bias=True, activation_fn="geglu-approximate", norm_num_groups=32)
    scheduler = VQDiffusionScheduler(num_vec_classes=model.codebook_size + 1, num_train_timesteps=4)
    return VQDiffusionPipeline(vqvae=model, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                               scheduler=scheduler,
                               learned_classifier_free_sampling_embeddings=LearnedClassifierFreeSamplingEmbeddings(False))


def test_vq_diffusion_pipeline_decodes_its_token_ids(tmp_path, monkeypatch):
    model = make_tiny_model()
    perturb_bridge(model.eval())
    pipe = vq_diffusion_pipeline(model, tmp_path)
    looked_up, entry = [], QuantizeView.get_codebook_entry

    def spy(view, indices, shape=None):
        looked_up.append((indices.clone(), shape))
        return entry(view, indices, shape)

    monkeypatch.setattr(QuantizeView, "get_codebook_entry", spy)
    calls = record_decode(model)
    images = pipe("a cat", num_inference_steps=2, generator=torch.manual_seed(0), output_type="np").images
    assert images.shape == (1, 32, 32, 3)
    (ids, shape), = looked_up
    assert ids.shape == (1, 64) and shape == (1, 8, 8, 8)
    (_, kwargs), = calls
    assert kwargs == {"force_not_quantize": True}
    with torch.no_grad():
        expected = (model.detokenize(ids.view(1, 8, 8)) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(images, expected, atol=1e-5)


@pytest.mark.parametrize("quantizer_type", ["residual", "multiscale"])
def test_vq_diffusion_refuses_several_codes_per_position_by_name(quantizer_type, tmp_path):
    model = any_type_model(quantizer_type)
    pipe = vq_diffusion_pipeline(model, tmp_path)
    with pytest.raises(ValueError, match="one token per position needs a quantizer_type 'vq' tokenizer"):
        pipe("a cat", num_inference_steps=1, generator=torch.manual_seed(0), output_type="np")


def test_kandinsky_2_2_decoder_runs_with_the_model_as_movq():
    model = make_tiny_model()
    perturb_bridge(model.eval())
    torch.manual_seed(0)
    # diffusers' own tiny Kandinsky 2.2 UNet (tests/pipelines/kandinsky2_2), over the 8 code channels.
    unet = UNet2DConditionModel(
        in_channels=8, out_channels=16, addition_embed_type="image", block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", encoder_hid_dim=32, encoder_hid_dim_type="image_proj",
        cross_attention_dim=32, attention_head_dim=4, resnet_time_scale_shift="scale_shift", class_embed_type=None)
    scheduler = DDPMScheduler(num_train_timesteps=10, variance_type="learned_range")
    pipe = KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=model)
    calls = record_decode(model)
    embeds = torch.randn(2, 1, 32, generator=torch.manual_seed(1))
    images = pipe(image_embeds=embeds[0], negative_image_embeds=embeds[1], height=32, width=32,
                  num_inference_steps=2, generator=torch.manual_seed(0), output_type="np").images
    assert images.shape == (1, 32, 32, 3)
    (h, kwargs), = calls
    assert kwargs == {"force_not_quantize": True} and h.shape == (1, 8, 8, 8)
    with torch.no_grad():
        expected = (model.decode(h, force_not_quantize=True)["sample"] * 0.5 + 0.5).clamp(0, 1)
    np.testing.assert_allclose(images, expected.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_movq_calls_of_kandinsky_img2img_have_vq_model_meaning():
    """KandinskyV22Img2ImgPipeline: `movq.encode(image)["latents"]` (noised, denoised), then
    `movq.decode(latents, force_not_quantize=True)["sample"]`."""
    model = make_tiny_model()
    perturb_bridge(model.eval())
    x = random_images()
    with torch.no_grad():
        encoded = model.encode(x)
        latents = encoded["latents"]
        torch.testing.assert_close(latents, model.quant_conv(model.encoder(x)))  # before quantization
        quantized, _, (_, _, indices) = model.quantize(latents)
        assert torch.equal(quantized, encoded.quantized) and torch.equal(indices, encoded.indices)
        image = model.decode(latents, force_not_quantize=True)["sample"]
        assert image.shape == x.shape
        torch.testing.assert_close(model.decode(encoded.quantized, force_not_quantize=True)["sample"], model(x).sample)


def test_amused_calls_lookup_token_ids_and_read_ids_of_quantize():
    """aMUSEd: `decode(ids, force_not_quantize=True, shape=(B, h, w, latent_channels))` with
    `lookup_from_codebook`, and `quantize(latents)[2][2]` for the ids of an image."""
    model = make_tiny_model(lookup_from_codebook=True)
    perturb_bridge(model.eval())
    x = random_images()
    with torch.no_grad():
        ids = model.quantize(model.encode(x).latents)[2][2].reshape(2, 8, 8)
        assert torch.equal(ids, model.tokenize(x))
        shape = (2, 8, 8, model.config.latent_channels)
        decoded = model.decode(ids, force_not_quantize=True, shape=shape).sample
        torch.testing.assert_close(decoded, model.detokenize(ids))
        torch.testing.assert_close(model.decode(model.encode(x).latents).sample, decoded)  # not forced: latents
    assert model.config.force_upcast is False


def test_quantize_adds_no_state_dict_keys_and_old_configs_load_with_the_defaults(tmp_path):
    model = make_tiny_model()
    assert isinstance(model.quantize, QuantizeView)
    assert not any(key.startswith("quantize.") for key in model.state_dict())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert {key: config[key] for key in NEW_KEYS} == NEW_KEYS
    # a model saved before the keys existed
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in NEW_KEYS}))
    loaded = FVQModel.from_pretrained(tmp_path)
    assert {key: loaded.config[key] for key in NEW_KEYS} == NEW_KEYS
    reference, again = model.state_dict(), loaded.state_dict()
    assert reference.keys() == again.keys() and all(torch.equal(reference[k], again[k]) for k in reference)


def test_bad_scaling_factor_and_shape_are_refused():
    with pytest.raises(ValueError, match="scaling_factor"):
        make_tiny_model(scaling_factor=0.0)
    with pytest.raises(ValueError, match=r"\(B, h, w, C\)"):
        make_tiny_model().quantize.get_codebook_entry(torch.zeros(1, 64, dtype=torch.long), (1, 8, 8))


@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_slicing_runs_one_image_at_a_time_with_the_same_outputs(quantizer_type):
    """`AutoencoderMixin.enable_slicing` (what `pipe.enable_vae_slicing()` calls): encode, decode, tokenize and
    detokenize see one image at a time, and give what the whole batch gives."""
    from diffusers.models.autoencoders.vae import AutoencoderMixin

    model = any_type_model(quantizer_type)
    assert isinstance(model, AutoencoderMixin) and model.use_slicing is False
    x = random_images(3, model.config.sample_size)
    with torch.no_grad():
        whole = model.encode(x), model.decode(model.encode(x).latents).sample, model.tokenize(x)
        model.enable_slicing()
        seen, decoded = [], []
        hooks = [model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0])),
                 model.decoder.register_forward_pre_hook(lambda module, args: decoded.append(args[0].shape[0]))]
        sliced = model.encode(x), model.decode(model.encode(x).latents).sample, model.tokenize(x)
        again = model.detokenize(whole[2])
        for hook in hooks:
            hook.remove()
        assert seen == [1] * 9  # three calls of encode, three images each, one at a time
        assert decoded == [1] * 6  # decode and detokenize
        # below: batched and one-image convolutions differ by fp32 rounding (up to 1.1e-5 seen)
        for name in ("latents", "quantized"):
            torch.testing.assert_close(sliced[0][name], whole[0][name], rtol=0, atol=1e-4)
        assert torch.equal(sliced[0].indices, whole[0].indices) and torch.equal(sliced[2], whole[2])
        torch.testing.assert_close(sliced[1], whole[1], rtol=0, atol=1e-4)
        torch.testing.assert_close(again, whole[1], rtol=0, atol=1e-4)
        assert isinstance(model.encode(x[:1], return_dict=False), tuple)  # one image, the tuple form
        model.disable_slicing()
        torch.testing.assert_close(model.detokenize(whole[2]), whole[1], rtol=0, atol=1e-4)


def test_slicing_decodes_token_ids_with_their_shape_and_tiling_is_refused_by_name():
    model = make_tiny_model(lookup_from_codebook=True).eval()
    x = random_images(3)
    with torch.no_grad():
        ids = model.tokenize(x)
        whole = model.decode(ids, force_not_quantize=True, shape=(3, 8, 8, 64)).sample
        model.enable_slicing()
        torch.testing.assert_close(model.decode(ids, force_not_quantize=True, shape=(3, 8, 8, 64)).sample, whole,
                                   rtol=0, atol=1e-4)
        flat = model.decode(ids.reshape(3, 64), force_not_quantize=True, shape=(3, 8, 8, 64)).sample  # VQ-Diffusion's
        torch.testing.assert_close(flat, whole, rtol=0, atol=1e-4)
    with pytest.raises(NotImplementedError, match="no tiled encode/decode.*seams.*enable_slicing"):
        model.enable_tiling()
