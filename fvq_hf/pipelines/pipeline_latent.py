"""FVQLatentPipeline: class labels in, images out, through a diffusion or flow model on the tokenizer's continuous
latents (VQGAN-LC's DiT-LC / SiT-LC / LDM-LC): sample latents, quantize them with the codebook, decode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..diffusion.generators import check_fits, component_of, conditioning, grid_size, is_dit, predict
from ..diffusion.schedulers import objective_of, sampler_name, uses_learned_variance
from ..hub.evaluation_file import load_evaluation
from ..hub.model_card import latent_generator_card
from ..tokenizer import FVQModel
from .base import HubPipeline, check_output_type, format_images


@dataclass
class FVQLatentPipelineOutput(BaseOutput):
    """
    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` `(B, H, W, 3)` in [0, 1], or `torch.Tensor` `(B, 3, H, W)` in
            [-1, 1]): the generated images, as `output_type` asked.
        latents (`torch.Tensor` of shape `(B, d, h, w)`): the sampled latents in the tokenizer's units (divided by
            the scaling factor), before quantization.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    latents: torch.Tensor


def check_sampler(scheduler, denoiser: torch.nn.Module) -> None:
    """A ValueError unless the sampler fits the denoiser's outputs: DDPM with a learned variance needs DiT's 2d."""
    objective_of(scheduler)
    d, out = denoiser.config.in_channels, denoiser.config.out_channels
    if uses_learned_variance(scheduler) and out != 2 * d:
        raise ValueError(f"The sampler is DDPM with variance_type {scheduler.config.variance_type!r}, which reads a "
                         f"variance from the model's last {d} channels; this {type(denoiser).__name__} predicts "
                         f"{out}. Use make_sampler(scheduler, 'ddim') or a DDPM with a fixed variance.")


class FVQLatentPipeline(HubPipeline):
    r"""Class-conditional generation on an FVQ tokenizer's pre-quantization latents.

        pipe = FVQLatentPipeline(transformer=dit, scheduler=scheduler, vq=tokenizer)   # or unet=..., or .from_pretrained
        out = pipe(class_labels=[3, 7], guidance_scale=4.0, num_inference_steps=50,
                   generator=torch.Generator().manual_seed(0))
        out.images, out.latents

    The denoiser is a diffusers `DiTTransformer2DModel` (`transformer`) or `UNet2DModel` (`unet`); `scheduler` is
    a DDPM-family scheduler (noise prediction) or `FlowMatchEulerDiscreteScheduler` (velocity); swap the sampler
    with `pipe.scheduler = make_sampler(pipe.scheduler, "ddpm")` (it keeps the betas or shift, and gives DiT's
    learned variance to DDPM alone; diffusers' `from_config` would hand it to DPM-Solver too). The latents are
    divided by `vq.config.scaling_factor` and, as VQGAN-LC does, **quantized with the codebook** before decoding
    (`quantize=False` decodes them as they are). `class_names` name the classes (`get_label_ids`).
    """

    model_cpu_offload_seq = "transformer->unet->vq"
    _optional_components = ["transformer", "unet"]

    def __init__(self, scheduler: SchedulerMixin, vq: FVQModel, transformer: torch.nn.Module | None = None,
                 unet: torch.nn.Module | None = None, class_names: list[str] | None = None) -> None:
        super().__init__()
        denoiser = transformer if transformer is not None else unet
        if (transformer is None) == (unet is None):
            raise ValueError("Give one denoiser: transformer= (a DiTTransformer2DModel) or unet= (a UNet2DModel).")
        slot = component_of(denoiser)
        if (slot == "transformer") != (transformer is not None):
            raise ValueError(f"A {type(denoiser).__name__} goes in the pipeline's {slot}= slot.")
        objective_of(scheduler)
        vq.require_one_code_per_position("a latent generator")
        d = vq.config.vq_embed_dim
        size = grid_size(denoiser)
        check_fits(denoiser, (d, size, size), f"The tokenizer's latents (d = {d}) on the generator's grid")
        check_sampler(scheduler, denoiser)
        num_classes, _ = conditioning(denoiser)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names names {len(class_names)} classes; the generator has {num_classes}.")
        self.register_modules(transformer=transformer, unet=unet, scheduler=scheduler, vq=vq)
        self.register_to_config(class_names=list(class_names) if class_names is not None else None)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.transformer if self.transformer is not None else self.unet

    @property
    def labels(self) -> dict[str, int]:
        """Class name -> id (DiTPipeline's `labels`), when the pipeline names its classes."""
        return {name: i for i, name in enumerate(self.config.class_names or [])}

    def get_label_ids(self, class_labels: int | str | Sequence[int | str] | torch.Tensor) -> torch.LongTensor:
        """Ids or names (one or a list) -> `(B,)` ids; a ValueError for an unknown name or an id out of range."""
        if isinstance(class_labels, torch.Tensor):
            labels = class_labels.reshape(-1).tolist()
        else:
            labels = [class_labels] if isinstance(class_labels, int | str) else list(class_labels)
        if not labels:
            raise ValueError("class_labels is empty: give at least one class id or name.")
        unknown = [x for x in labels if isinstance(x, str) and x not in self.labels]
        if unknown:
            raise ValueError(f"Unknown class name(s) {unknown}; known names: {', '.join(self.labels) or 'none'}.")
        ids = [self.labels[x] if isinstance(x, str) else int(x) for x in labels]
        num_classes, _ = conditioning(self.denoiser)
        bad = [i for i in ids if not 0 <= i < num_classes]
        if bad:
            raise ValueError(f"Class label(s) {bad} out of range: this generator has {num_classes} classes "
                             f"(0..{num_classes - 1}).")
        return torch.tensor(ids, dtype=torch.long, device=self._execution_device)

    def card_facts(self) -> dict:
        """What the card states: the tokenizer, latents and scaling factor, the generator, objective and sampler."""
        model, vq, scheduler = self.denoiser, self.vq, self.scheduler
        config = model.config
        if is_dit(config):
            generator = (f"{type(model).__name__}: {config.num_layers} layers, {config.num_attention_heads} heads x "
                         f"{config.attention_head_dim}, patch {config.patch_size}")
        else:
            generator = (f"{type(model).__name__}: channels {list(config.block_out_channels)}, "
                         f"{config.layers_per_block} residual blocks per level")
        steps = scheduler.config.num_train_timesteps
        objective = (f"diffusion, {scheduler.config.prediction_type} prediction, {steps} training timesteps"
                     if objective_of(scheduler) == "diffusion" else
                     f"flow matching: linear path, velocity, {steps} training timesteps")
        num_classes, _ = conditioning(model)
        return {"tokenizer": vq.config.get("_name_or_path") or "the `vq/` folder", "codebook_size": vq.codebook_size,
                "downsample": vq.downsample_factor, "scaling_factor": vq.config.scaling_factor,
                "latent_shape": (config.in_channels, grid_size(model), grid_size(model)), "generator": generator,
                "objective": objective, "sampler": f"{type(scheduler).__name__} (`{sampler_name(scheduler)}`)",
                "num_classes": num_classes, "class_names": self.config.class_names}

    def model_card(self, repo_id: str | None = None, evaluations: dict | None = None, training: str | None = None):
        """A card stating the tokenizer, generator, scaling factor and sampler, with the evaluation saved beside the
        denoiser's weights (or `evaluations`, `training`)."""
        saved, saved_training = load_evaluation(self.denoiser.config.get("_name_or_path"))
        return latent_generator_card(self.card_facts(), repo_id, evaluations or saved, training or saved_training)

    @torch.no_grad()
    def __call__(self, class_labels: int | str | Sequence[int | str] | torch.Tensor, guidance_scale: float = 4.0,
                 num_inference_steps: int = 50, generator: torch.Generator | None = None, quantize: bool = True,
                 latents: torch.Tensor | None = None, guidance_channels: int | None = None,
                 output_type: str = "pil", return_dict: bool = True) -> FVQLatentPipelineOutput | tuple:
        """Generate one image per class label.

        Args:
            class_labels: ids or names, one per image.
            guidance_scale: classifier-free guidance `uncond + s * (cond - uncond)` on the prediction (its first d
                channels); 1 turns it off.
            num_inference_steps: sampler steps.
            generator: a `torch.Generator` for reproducible sampling (the same seed gives the same images).
            quantize: quantize the sampled latents with the codebook before decoding (VQGAN-LC's rule).
            latents: starting noise `(B, d, h, w)` instead of drawing it.
            guidance_channels: guide only the first this many latent channels, the rest taken from the conditional
                prediction (None: all d). VQGAN-LC's DiT-LC / SiT-LC sampling guides 3 (`forward_with_cfg`, written
                for SD-VAE's 4-channel latents): pass 3 to sample as they did.
        """
        check_output_type(output_type)
        if guidance_scale < 1:
            raise ValueError(f"guidance_scale must be >= 1 (1: no guidance), got {guidance_scale}.")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}.")
        labels = self.get_label_ids(class_labels)
        model, device = self.denoiser, self._execution_device
        d, size = model.config.in_channels, grid_size(model)
        check_sampler(self.scheduler, model)
        scale = self.vq.config.scaling_factor
        if not scale > 0:
            raise ValueError(f"The tokenizer's scaling_factor is {scale}: samples are divided by it; it must be > 0.")
        if guidance_channels is not None and not 1 <= guidance_channels <= d:
            raise ValueError(f"guidance_channels must lie in [1, {d}] (the latent channels), got {guidance_channels}.")
        g = d if guidance_channels is None else guidance_channels
        shape = (len(labels), d, size, size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=model.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}.")
        _, null = conditioning(model)
        guided = guidance_scale > 1
        both = torch.cat([labels, torch.full_like(labels, null)]) if guided else labels
        keep_variance = uses_learned_variance(self.scheduler)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        # Euler-type samplers start from noise of std init_noise_sigma (sqrt(1 + sigma_max^2)); DDIM / DDPM from 1.
        latents = latents.to(device, model.dtype) * getattr(self.scheduler, "init_noise_sigma", 1.0)
        for t in self.progress_bar(self.scheduler.timesteps):
            x = torch.cat([latents, latents]) if guided else latents
            x = self.scheduler.scale_model_input(x, t) if hasattr(self.scheduler, "scale_model_input") else x
            timesteps = t.reshape(1).to(device).expand(x.shape[0])
            out = predict(model, x, timesteps, both, keep_variance=keep_variance)
            if guided:
                cond, uncond = out.chunk(2)
                out = torch.cat([uncond[:, :g] + guidance_scale * (cond[:, :g] - uncond[:, :g]), cond[:, g:]], 1)
            latents = self.scheduler.step(out, t, latents, generator=generator).prev_sample
        latents = latents / scale
        images = self.vq.decode(latents.to(self.vq.dtype), force_not_quantize=not quantize).sample
        self.maybe_free_model_hooks()
        output = FVQLatentPipelineOutput(format_images(images, output_type), latents)
        return output if return_dict else output.to_tuple()


__all__ = ["FVQLatentPipeline", "FVQLatentPipelineOutput"]
