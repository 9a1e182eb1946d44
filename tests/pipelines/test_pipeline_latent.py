import pytest
import torch
from diffusers import DDPMScheduler, DiTTransformer2DModel, FlowMatchEulerDiscreteScheduler, UNet2DModel

from fvq_hf import FVQLatentPipeline
from fvq_hf.diffusion import make_sampler

from ..helpers import make_tiny_model, perturb_bridge, typed_model

DIT = dict(num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=8, num_layers=2, sample_size=8,
           patch_size=2, num_embeds_ada_norm=3)
UNET = dict(sample_size=8, in_channels=8, out_channels=8, block_out_channels=(32, 32), layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=16, norm_num_groups=8, num_class_embeds=4)


def perturbed(model):
    """DiT's adaLN and output layers start at zero (a zero prediction): random weights everywhere instead."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def tokenizer(**overrides):
    vq = make_tiny_model(**overrides).eval()
    perturb_bridge(vq)
    vq.register_to_config(scaling_factor=2.0)
    return vq


def make_pipe(denoiser="dit", scheduler=None, **dit):
    scheduler = scheduler or make_sampler(DDPMScheduler(clip_sample=False))
    model = perturbed(DiTTransformer2DModel(**{**DIT, **dit}) if denoiser == "dit" else UNet2DModel(**UNET))
    pipe = FVQLatentPipeline(**{"transformer" if denoiser == "dit" else "unet": model}, scheduler=scheduler,
                             vq=tokenizer(), class_names=["x", "y", "z"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, labels=(0, 2), **kw):
    return pipe(list(labels), num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt", **kw)


def test_samples_are_unscaled_then_quantized_with_the_codebook_before_decoding():
    pipe = make_pipe()
    quantized, raw = run(pipe), run(pipe, quantize=False)
    assert torch.equal(quantized.latents, raw.latents)  # the same sampled latents, divided by the scaling factor
    with torch.no_grad():
        codes = pipe.vq.quantizer(quantized.latents).latents
        assert torch.allclose(quantized.images, pipe.vq.decode(codes, force_not_quantize=True).sample.clamp(-1, 1))
        assert torch.allclose(raw.images, pipe.vq.decode(raw.latents, force_not_quantize=True).sample.clamp(-1, 1))
    assert not torch.allclose(quantized.images, raw.images)
    # the scaling factor divides the samples: twice the factor, half the latents
    pipe.vq.register_to_config(scaling_factor=4.0)
    assert torch.allclose(run(pipe).latents * 2, quantized.latents)


@pytest.mark.parametrize("denoiser, scheduler", [("unet", None), ("dit", FlowMatchEulerDiscreteScheduler())])
def test_a_saved_pipeline_loads_and_samples_the_same_images(tmp_path, denoiser, scheduler):
    pipe = make_pipe(denoiser, scheduler)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = FVQLatentPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is type(pipe.scheduler) and loaded.config.class_names == ["x", "y", "z"]
    assert torch.equal(run(pipe, ["x", "z"]).images, run(loaded, [0, 2]).images)


def test_guidance_and_a_learned_variance_dit_with_ddpm():
    scheduler = DDPMScheduler(variance_type="learned_range", clip_sample=False)
    pipe = make_pipe(scheduler=scheduler, out_channels=16)  # DiT-LC's 2d outputs: noise and variance range
    guided, plain = run(pipe, guidance_scale=4.0), run(pipe, guidance_scale=1.0)
    assert guided.images.shape == (2, 3, 32, 32) and not torch.allclose(guided.latents, plain.latents)


def test_bad_input_is_refused_with_the_reason():
    pipe = make_pipe()
    with pytest.raises(ValueError, match=r"Class label\(s\) \[3\] out of range: this generator has 3 classes"):
        run(pipe, [0, 3])
    with pytest.raises(ValueError, match="Unknown class name"):
        run(pipe, ["w"])
    with pytest.raises(ValueError, match=r"latents must have shape \(2, 8, 8, 8\)"):
        run(pipe, latents=torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match="guidance_scale must be >= 1"):
        run(pipe, guidance_scale=0.5)
    dit = DiTTransformer2DModel(**DIT)
    with pytest.raises(ValueError, match="Give one denoiser"):
        FVQLatentPipeline(scheduler=DDPMScheduler(), vq=tokenizer())
    with pytest.raises(ValueError, match="goes in the pipeline's transformer= slot"):
        FVQLatentPipeline(unet=dit, scheduler=DDPMScheduler(), vq=tokenizer())
    with pytest.raises(ValueError, match=r"The tokenizer's latents \(d = 4\) .* are 4 x 8 x 8 .* takes 8 x 8 x 8"):
        FVQLatentPipeline(transformer=dit, scheduler=DDPMScheduler(), vq=tokenizer(vq_embed_dim=4))
    with pytest.raises(ValueError, match="class_names names 2 classes; the generator has 3"):
        FVQLatentPipeline(transformer=dit, scheduler=DDPMScheduler(), vq=tokenizer(), class_names=["a", "b"])
    with pytest.raises(ValueError, match="one code per position|multi-scale"):
        FVQLatentPipeline(transformer=dit, scheduler=DDPMScheduler(), vq=typed_model("multiscale"))


@pytest.mark.parametrize("kind", ["dit", "sit"])
def test_vqgan_lc_converted_generators_sample_as_they_were_trained(kind, tmp_path):
    """Their DiT-LC with its learned-variance DDPM (all 2d channels reach the step), their SiT-LC with flow matching;
    guidance on their 3 channels only is a choice."""
    from ..diffusion.test_dit_lc_conversion import their_file
    from fvq_hf.diffusion import convert_latent_generator

    transformer, scheduler = convert_latent_generator(their_file(kind, tmp_path)[0], num_heads=4)
    vq = make_tiny_model(sample_size=64).eval()  # 16 x 16 latents of d = 8
    pipe = FVQLatentPipeline(transformer=transformer, scheduler=scheduler, vq=vq)
    pipe.set_progress_bar_config(disable=True)
    theirs, ours = run(pipe, [1, 999], guidance_channels=3), run(pipe, [1, 999])
    assert theirs.images.shape == (2, 3, 64, 64) and torch.isfinite(theirs.latents).all()
    assert not torch.allclose(theirs.latents, ours.latents)
    with pytest.raises(ValueError, match=r"guidance_channels must lie in \[1, 8\]"):
        run(pipe, guidance_channels=9)
