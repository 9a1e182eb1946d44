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


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm", "euler"])
def test_guidance_and_a_learned_variance_dit_with_every_sampler(sampler):
    """DiT-LC's 2d outputs (noise and variance range): DDPM reads the variance, the other samplers the noise alone."""
    trained = DDPMScheduler(variance_type="learned_range", clip_sample=False)
    pipe = make_pipe(scheduler=make_sampler(trained, sampler), out_channels=16)
    guided, plain = run(pipe, guidance_scale=4.0), run(pipe, guidance_scale=1.0)
    assert guided.images.shape == (2, 3, 32, 32) and not torch.allclose(guided.latents, plain.latents)
    assert torch.isfinite(guided.latents).all()


class ExactDenoiser(DiTTransformer2DModel):
    """The optimal prediction for N(0, 1) latents, whatever the class: E[noise | x_t] = b x_t / (a^2 + b^2) for
    diffusion, E[n - x_0 | x_t] = (s - (1 - s)) x_t / ((1 - s)^2 + s^2) for flow. Sampling with it must end with
    latents of std 1."""

    objective_scheduler = None

    def forward(self, hidden_states, timestep=None, class_labels=None, **kwargs):
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        from fvq_hf.diffusion.objectives import path_coefficients

        scheduler = self.objective_scheduler
        if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
            s = (timestep.float() / 1000).reshape(-1, 1, 1, 1)
            return Transformer2DModelOutput(sample=(2 * s - 1) / ((1 - s) ** 2 + s ** 2) * hidden_states)
        a, b = path_coefficients(scheduler, timestep.float().round().long(), hidden_states)
        return Transformer2DModelOutput(sample=b * hidden_states / (a * a + b * b))


@pytest.mark.parametrize("objective, sampler", [("diffusion", "ddim"), ("diffusion", "ddpm"), ("diffusion", "dpm"),
                                                ("diffusion", "euler"), ("flow", "euler"), ("flow", "heun")])
def test_every_sampler_starts_from_its_noise_scale_and_ends_at_the_data_scale(objective, sampler):
    from fvq_hf.diffusion import register_generator
    from fvq_hf.diffusion.generators import GENERATORS

    trained = DDPMScheduler(clip_sample=False, timestep_spacing="linspace") if objective == "diffusion" \
        else FlowMatchEulerDiscreteScheduler()
    register_generator(ExactDenoiser, "transformer")
    try:
        model = ExactDenoiser(**DIT).eval()
        model.objective_scheduler = trained
        vq = tokenizer()
        vq.register_to_config(scaling_factor=1.0)
        pipe = FVQLatentPipeline(transformer=model, scheduler=make_sampler(trained, sampler), vq=vq)
        pipe.set_progress_bar_config(disable=True)
        out = pipe([0] * 16, guidance_scale=1.0, num_inference_steps=25, quantize=False, output_type="pt",
                   generator=torch.Generator().manual_seed(0))
    finally:
        GENERATORS.pop("ExactDenoiser")
    assert 0.85 < out.latents.std().item() < 1.15, out.latents.std().item()


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
    with pytest.raises(ValueError, match="DDPM with variance_type 'learned_range'.* predicts 8"):
        FVQLatentPipeline(transformer=dit, scheduler=DDPMScheduler(variance_type="learned_range"), vq=tokenizer())
    pipe.vq.register_to_config(scaling_factor=0.0)
    with pytest.raises(ValueError, match="scaling_factor is 0.0"):
        run(pipe)
    with pytest.raises(ValueError, match="one code per position|multi-scale"):
        FVQLatentPipeline(transformer=dit, scheduler=DDPMScheduler(), vq=typed_model("multiscale"))


@pytest.mark.parametrize("kind", ["dit", "sit"])
def test_vqgan_lc_converted_generators_sample_as_they_were_trained(kind, tmp_path):
    """Their DiT-LC with its learned-variance DDPM (all 2d channels reach the step), their SiT-LC with flow matching;
    guidance on their 3 channels only is a choice."""
    from fvq_hf.diffusion import convert_latent_generator

    from ..diffusion.test_dit_lc_conversion import their_file

    transformer, scheduler = convert_latent_generator(their_file(kind, tmp_path)[0], num_heads=4)
    vq = make_tiny_model(sample_size=64).eval()  # 16 x 16 latents of d = 8
    pipe = FVQLatentPipeline(transformer=transformer, scheduler=scheduler, vq=vq)
    pipe.set_progress_bar_config(disable=True)
    theirs, ours = run(pipe, [1, 999], guidance_channels=3), run(pipe, [1, 999])
    assert theirs.images.shape == (2, 3, 64, 64) and torch.isfinite(theirs.latents).all()
    assert not torch.allclose(theirs.latents, ours.latents)
    with pytest.raises(ValueError, match=r"guidance_channels must lie in \[1, 8\]"):
        run(pipe, guidance_channels=9)
