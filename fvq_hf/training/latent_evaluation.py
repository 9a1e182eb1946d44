"""What fvq-train-latent measures: the latents' statistics (scaling factor, the class-Gaussian baseline) and the
held-out denoising loss against its baselines, during and after training, on every process (each its share of the
batches, summed in batch order: the one-process figures to the bit)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch.utils.data import default_collate

from ..data.latents import LatentDataset
from ..diffusion.generators import check_fits, conditioning, predict
from ..diffusion.objectives import gaussian_denoiser, training_pair

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalOptions:
    """Held-out batches: `batch_size` latents, `draws` seeded (noise, timestep) pairs each."""

    batch_size: int = 64
    draws: int = 4


@torch.no_grad()
def latent_statistics(data: LatentDataset) -> dict:
    """Mean and std over every value of every training latent, and each class's per-position mean and variance
    `(C, d, h, w)`, in one pass over the files (bounded memory: `LatentDataset.chunks`)."""
    shape = (data.num_classes, *data.latent_shape)
    sums, squares = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    counts = torch.zeros(data.num_classes, dtype=torch.float64)
    for latents, labels in data.chunks():
        values = latents.double()
        sums.index_add_(0, labels, values)
        squares.index_add_(0, labels, values.square())
        counts += torch.bincount(labels, minlength=data.num_classes).double()
    total = counts.sum() * sums[0].numel()
    mean = (sums.sum() / total).item()
    std = max((squares.sum() / total).item() - mean * mean, 0.0) ** 0.5
    per_class = counts.clamp_min(1).reshape(-1, 1, 1, 1)
    class_means = sums / per_class
    class_variances = (squares / per_class - class_means.square()).clamp_min(0)
    return {"mean": mean, "std": std, "class_means": class_means.float(), "class_variances": class_variances.float()}


@torch.no_grad()
def held_out_loss(model: torch.nn.Module | None, scheduler: SchedulerMixin, folder: str | Path, scale: float,
                  batch_size: int, draws: int, device: torch.device | str, stats: dict | None = None, seed: int = 0,
                  class_names: list[str] | None = None, processes: PartialState | None = None) -> dict:
    """The denoising loss over every latent (and view) of `folder` at `draws` seeded (noise, timestep) pairs each:
    with the labels, with the null class, and (given `stats` of `latent_statistics`) the class-Gaussian denoiser's
    on the same draws (the optimal one if each class's latents were Gaussian with their per-position mean and
    variance). `model` None gives that baseline only. MSE over values. Draws come from a generator of their own: the
    training RNG (which checkpoints restore) is untouched.

    `processes` (accelerate's state; every process calls it): process r runs the model on batches r, r + world, ...
    and the per-batch sums are gathered and added in batch order, so the result is the one-process result to the bit
    (a process draws the pairs of every batch, reading only its own batches' latents: the draws of a batch depend on its
    shape alone)."""
    rank, world = (processes.process_index, processes.num_processes) if processes is not None else (0, 1)
    data = LatentDataset(folder, all_views=True)
    if class_names is not None and data.meta.class_names != class_names:
        raise ValueError(f"{folder} names other classes than the training latents ({data.meta.class_names[:5]} vs "
                         f"{class_names[:5]}): extract both from the same data.")
    generator = torch.Generator().manual_seed(seed)
    if model is not None:
        check_fits(model, data.latent_shape, f"The latents of {folder}")
        model.eval()
        num_classes, null = conditioning(model)
        if data.num_classes != num_classes:
            raise ValueError(f"{folder} has {data.num_classes} classes; the generator has {num_classes}.")
    keys = ([] if model is None else ["denoising_loss", "denoising_loss_unconditional"]) + \
        ([] if stats is None else ["denoising_loss_class_gaussian"])
    mine: list[tuple[int, list[dict[str, float]], int]] = []  # (batch, each draw's {key: loss x samples}, samples)
    for index, start in enumerate(range(0, len(data), batch_size)):
        size = min(batch_size, len(data) - start)
        if index % world != rank:  # another process's batch: its draws only (they depend on the shape alone)
            for _ in range(draws):
                training_pair(scheduler, torch.zeros(size, *data.latent_shape), generator)
            continue
        latents, labels = default_collate([data[i] for i in range(start, start + size)])
        clean = latents * scale
        pairs = [training_pair(scheduler, clean, generator) for _ in range(draws)]
        labels, terms = labels.to(device), []
        for pair in pairs:
            noisy, timesteps, target = (x.to(device) for x in pair)
            predictions = {}
            if model is not None:
                predictions["denoising_loss"] = predict(model, noisy, timesteps, labels)
                predictions["denoising_loss_unconditional"] = predict(model, noisy, timesteps,
                                                                      torch.full_like(labels, null))
            if stats is not None:
                mean = stats["class_means"].to(device)[labels] * scale
                variance = stats["class_variances"].to(device)[labels] * scale ** 2
                predictions["denoising_loss_class_gaussian"] = gaussian_denoiser(scheduler, noisy, timesteps, mean,
                                                                                 variance)
            terms.append({key: torch.mean((prediction.float() - target) ** 2).item() * len(labels)
                          for key, prediction in predictions.items()})
        mine.append((index, terms, len(labels)))
    batches = mine
    if world > 1:
        gathered: list = [None] * world
        torch.distributed.all_gather_object(gathered, mine)
        batches = sorted((part for parts in gathered for part in parts), key=lambda part: part[0])
    sums, count = dict.fromkeys(keys, 0.0), 0
    for _, terms, samples in batches:  # in batch order, as one process adds them
        for term in terms:
            for key in keys:
                sums[key] += term[key]
            count += samples
    h, w = data.token_grid_size
    return {**{k: v / count for k, v in sums.items()}, "num_samples": count // draws,
            "num_tokens": count // draws * h * w, "draws": draws}


def final_evaluation(model: torch.nn.Module, untrained: torch.nn.Module, scheduler: SchedulerMixin, folder: str,
                     options: EvalOptions, class_names: list[str], stats: dict, scale: float, device: torch.device | str,
                     autocast=contextlib.nullcontext, processes: PartialState | None = None) -> dict:
    """The held-out loss on `folder` of `model`, of the `untrained` (or initial) one and of the class-Gaussian
    denoiser, under the run's precision: `{folder: {...}}`. Every process of `processes` calls it and evaluates its
    share (`held_out_loss`)."""
    with autocast():
        held = held_out_loss(model, scheduler, folder, scale, options.batch_size, options.draws, device, stats,
                             class_names=class_names, processes=processes)
        base = held_out_loss(untrained.to(device), scheduler, folder, scale, options.batch_size, options.draws, device,
                             processes=processes)
    held["denoising_loss_untrained"] = base["denoising_loss"]
    if processes is None or processes.is_main_process:
        logger.info("held-out denoising loss %.4f (untrained %.4f, class-Gaussian denoiser %.4f) over %d samples",
                    held["denoising_loss"], held["denoising_loss_untrained"], held["denoising_loss_class_gaussian"],
                    held["num_samples"])
    return {folder: held}
