"""The denoisers a latent generator is made of: diffusers' `DiTTransformer2DModel` (DiT-LC, SiT-LC) or
`UNet2DModel` (LDM-LC), class-conditional with a null class for guidance. This module owns what differs between
them: the pipeline component each fills, the config keys the data fixes, the class count and null class, and one
`predict` that calls either.

A preset (`hub_configs/latent-*`) or a trained pipeline folder holds `transformer/` or `unet/` (the model config,
with weights when trained) and `scheduler/` (the training scheduler, which names the objective).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers import DiTTransformer2DModel, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .dit import TimeMappedDiTTransformer2DModel

# class name -> (pipeline component, class). A variant is a class here and an entry.
GENERATORS: dict[str, tuple[str, type]] = {
    "DiTTransformer2DModel": ("transformer", DiTTransformer2DModel),
    "TimeMappedDiTTransformer2DModel": ("transformer", TimeMappedDiTTransformer2DModel),  # converted DiT-LC / SiT-LC
    "UNet2DModel": ("unet", UNet2DModel),
}
COMPONENTS = ("transformer", "unet")


def register_generator(cls: type, component: str) -> type:
    """Add a denoiser class (e.g. a `DiTTransformer2DModel` subclass) under its pipeline component."""
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}.")
    GENERATORS[cls.__name__] = (component, cls)
    return cls


def component_of(model: torch.nn.Module) -> str:
    """"transformer" or "unet": the pipeline slot of a denoiser."""
    for component, cls in GENERATORS.values():
        if isinstance(model, cls):
            return component
    raise TypeError(f"{type(model).__name__} is not a latent generator here: use one of {', '.join(GENERATORS)}.")


def is_dit(model_or_config: torch.nn.Module | Mapping) -> bool:
    """Whether a denoiser (or its config) is a DiT (class labels through adaLN) rather than a UNet."""
    config = getattr(model_or_config, "config", model_or_config)
    return "num_embeds_ada_norm" in config


def grid_size(model: torch.nn.Module) -> int:
    """The side of the square latent grid a denoiser takes (`sample_size`, an int or a square pair)."""
    size = model.config.sample_size
    if isinstance(size, int):
        return size
    h, w = tuple(size)
    if h != w:
        raise ValueError(f"The {type(model).__name__} takes {h} x {w} latents: the generators here take square grids.")
    return h


def conditioning(model: torch.nn.Module) -> tuple[int, int]:
    """`(num_classes, null_class)`: labels in [0, num_classes) and the null class of guidance (= num_classes).

    DiT: `num_embeds_ada_norm` classes, its label table has one more row (the null one); UNet: `num_class_embeds`
    rows, the last the null class.
    """
    config = model.config
    if is_dit(config):
        if config.num_embeds_ada_norm is None:
            raise ValueError("This DiT has no class embedding (num_embeds_ada_norm is None): it is not "
                             "class-conditional.")
        return config.num_embeds_ada_norm, config.num_embeds_ada_norm
    if config.get("num_class_embeds") is None or config.get("class_embed_type") is not None:
        raise ValueError("This UNet2DModel has no class embedding table (set num_class_embeds to classes + 1, "
                         "class_embed_type None): it is not class-conditional.")
    return config.num_class_embeds - 1, config.num_class_embeds - 1


def data_config(cls: type, latent_shape: tuple[int, int, int], num_classes: int) -> dict:
    """The config keys that the latents `(d, h, w)` and the class count fix for a denoiser of class `cls`."""
    d, h, w = latent_shape
    if h != w:
        raise ValueError(f"The latent grid is {h} x {w}: the DiT and UNet generators here take square grids.")
    if issubclass(cls, DiTTransformer2DModel):
        return {"in_channels": d, "out_channels": d, "sample_size": h, "num_embeds_ada_norm": num_classes}
    return {"in_channels": d, "out_channels": d, "sample_size": h, "num_class_embeds": num_classes + 1}


def check_fits(model: torch.nn.Module, latent_shape: tuple[int, ...], what: str = "The latents") -> None:
    """A ValueError unless the denoiser takes `(d, h, w)` latents: channels, grid, and a DiT's patch size."""
    d, h, w = latent_shape
    config = model.config
    size = grid_size(model)
    if config.in_channels != d or (size, size) != (h, w):
        raise ValueError(f"{what} are {d} x {h} x {w} (channels x grid); the {type(model).__name__} takes "
                         f"{config.in_channels} x {size} x {size}.")
    if is_dit(config) and size % config.patch_size:
        raise ValueError(f"The DiT's patch size {config.patch_size} does not divide the latent grid {size}.")
    if config.out_channels not in (d, 2 * d):
        raise ValueError(f"The {type(model).__name__} outputs {config.out_channels} channels: it must predict d = {d} "
                         f"(or 2d with DiT's learned variance).")


def disable_label_dropout(model: torch.nn.Module) -> None:
    """Turn off diffusers' label dropout inside a DiT: each of its blocks has its own label embedder that, in train
    mode, draws its own dropout mask, so one image is conditional in some blocks and null in others. Trainers drop
    labels once per image instead (to the null class, which the model then sees in every block)."""
    for module in model.modules():
        if hasattr(module, "dropout_prob") and hasattr(module, "embedding_table"):
            module.dropout_prob = 0.0


def predict(model: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor,
            keep_variance: bool = False) -> torch.Tensor:
    """The denoiser's prediction `(B, d, h, w)` at `noisy` `(B, d, h, w)`, `timesteps` `(B,)`, `labels` `(B,)`; a DiT
    with learned variance also gives its `d` variance channels when `keep_variance` (DDPM's learned_range)."""
    output = model(noisy, timesteps, class_labels=labels).sample
    return output if keep_variance else output[:, : noisy.shape[1]]


def load_scheduler(folder: str | Path) -> SchedulerMixin:
    """The scheduler saved in `<folder>/scheduler` (its class named in scheduler_config.json): a training preset's,
    or a saved pipeline's sampler (the same betas or shift)."""
    import diffusers

    from .schedulers import SAMPLERS, objective_of

    path = Path(folder) / "scheduler"
    try:
        config = diffusers.DDPMScheduler.load_config(path)
    except OSError as error:
        raise FileNotFoundError(f"{folder}: no scheduler/scheduler_config.json ({error}); a latent generator preset "
                                "holds one (hub_configs/latent-dit-cpu/scheduler).") from error
    known = sorted({cls.__name__ for classes in SAMPLERS.values() for cls in classes.values()})
    name = config.get("_class_name")
    cls = getattr(diffusers, str(name), None)
    if name not in known or cls is None:
        raise ValueError(f"{path}/scheduler_config.json names {name!r}; a latent generator trains and samples with "
                         f"one of {', '.join(known)}.")
    scheduler = cls.from_config(config)
    objective_of(scheduler)
    return scheduler


def find_generator(folder: str | Path) -> tuple[str, type]:
    """`(component, class)` of the denoiser config in `folder/transformer` or `folder/unet`."""
    found = [(c, Path(folder) / c / "config.json") for c in COMPONENTS if (Path(folder) / c / "config.json").is_file()]
    if len(found) != 1:
        raise FileNotFoundError(f"{folder} holds {'no' if not found else 'both a'} transformer/config.json "
                                f"{'or' if not found else 'and a'} unet/config.json: a latent generator preset or "
                                "pipeline folder holds exactly one (hub_configs/latent-*).")
    component, path = found[0]
    import json

    name = json.loads(path.read_text()).get("_class_name")
    if name not in GENERATORS or GENERATORS[name][0] != component:
        raise ValueError(f"{path} configures a {name}; {component}/ takes one of "
                         f"{', '.join(n for n, (c, _) in GENERATORS.items() if c == component)}.")
    return component, GENERATORS[name][1]
