"""Training a class-conditional latent generator (diffusion or flow) on a tokenizer's continuous latents with
accelerate: `train(LatentTrainConfig(...))` runs the loop that `fvq-train-latent` (`fvq_hf.cli.train_latent`) starts.

The latents come from a codes folder extracted once with `fvq-extract-codes --latents` (memory-mapped `.npy`
files): the tokenizer runs once per crop instead of once per step, every process reads only its batches, and
resumed runs see exactly the same data. The preset fixes the denoiser and the objective (its scheduler); the data
fixes the latent shape and the classes. At the end `<output-dir>/pipeline` holds an `FVQLatentPipeline` (the
denoiser, the sampler, the tokenizer with the scaling factor in its config) and its card, `eval.json` the held-out
loss against its baselines, and `samples.png` `samples_per_class` samples of each class (one row per class, the
first 16 classes).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list, set_seed
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..data.latents import LatentDataset
from ..diffusion.generators import (
    check_fits,
    component_of,
    conditioning,
    data_config,
    disable_label_dropout,
    find_generator,
    load_scheduler,
    predict,
)
from ..diffusion.objectives import training_pair
from ..diffusion.schedulers import make_sampler, objective_of
from ..hub.evaluation_file import save_evaluation
from ..hub.paths import refuse_missing_folder
from ..tokenizer import FVQModel
from . import runtime
from .config import LatentTrainConfig
from .ema import averaged_weights, make_ema
from .latent_evaluation import EvalOptions, final_evaluation, held_out_loss, latent_statistics

logger = logging.getLogger(__name__)


def resolve_preset(name: str) -> Path:
    """`--config` (a folder, or a hub id in the local cache or reachable) -> a local folder."""
    refuse_missing_folder(name, "--config")
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name))
    except Exception as error:
        raise FileNotFoundError(f"--config {name}: not a folder, and not a hub id in reach ({error}); choose a "
                                "latent generator preset, hub_configs/latent-*.") from error


def build_generator(config: LatentTrainConfig, data: LatentDataset, folder: Path
                    ) -> tuple[torch.nn.Module, SchedulerMixin]:
    """The preset's denoiser with the data's latent shape and classes (its weights with `init_weights`, which must
    already fit), and its training scheduler."""
    component, cls = find_generator(folder)
    scheduler = load_scheduler(folder)
    objective_of(scheduler)
    if config.init_weights:
        model = cls.from_pretrained(folder, subfolder=component)
        check_fits(model, data.latent_shape, f"The latents of {config.latents}")
        num_classes, _ = conditioning(model)
        if num_classes != data.num_classes:
            raise ValueError(f"--init-weights: the generator of {config.config} has {num_classes} classes; the "
                             f"latents {config.latents} have {data.num_classes}.")
        if model.config.out_channels != model.config.in_channels:
            raise ValueError("--init-weights: this generator also predicts its variance (out_channels = 2 x "
                             "in_channels, DiT's learned sigma), whose loss fvq-train-latent does not train; "
                             "fine-tune a generator that predicts d channels.")
        return model, scheduler
    saved = dict(cls.load_config(folder, subfolder=component))
    facts = data_config(cls, data.latent_shape, data.num_classes)
    for key, value in facts.items():
        if key in saved and saved[key] != value:
            logger.info("%s = %s from the latents (the preset says %s).", key, value, saved[key])
    model = cls.from_config({**saved, **facts})
    check_fits(model, data.latent_shape, f"The latents of {config.latents}")
    return model, scheduler


@dataclass
class LatentTrainResult:
    """What a run returns on every process: the steps taken, the last training loss (mean over processes), the
    held-out evaluation (every process, when the run finished), the denoiser (raw weights), the scaling factor."""

    step: int
    loss: float
    eval: dict
    model: torch.nn.Module
    scaling_factor: float
    rank: int = 0
    world_size: int = 1


def scaling_factor(config: LatentTrainConfig, stats: dict, folder: Path) -> tuple[float, str]:
    """`(factor, where it comes from)`: `--scaling-factor`; with `--init-weights` from a pipeline folder, the one its
    weights were trained with (its `vq/config.json`); else 1 / the latents' std."""
    if config.scaling_factor:
        return config.scaling_factor, "given"
    saved = folder / "vq" / "config.json" if config.init_weights else None
    if saved is not None and saved.is_file():
        return float(json.loads(saved.read_text()).get("scaling_factor", 1.0)), f"{config.config}'s tokenizer"
    if not stats["std"] > 0:
        raise ValueError(f"The latents of {config.latents} are constant (std 0): no scaling factor can be measured.")
    return 1.0 / stats["std"], "1 / the latents' std"


def load_tokenizer(config: LatentTrainConfig, data: LatentDataset) -> FVQModel | None:
    """The pipeline's tokenizer, checked against the latents (None, with a warning, if it cannot be loaded)."""
    name = config.tokenizer or data.meta.tokenizer
    try:
        vq = FVQModel.from_pretrained(name)
    except (OSError, ValueError) as error:
        logger.warning("Tokenizer %s cannot be loaded (%s): the generator is saved without a pipeline.", name, error)
        return None
    if vq.config.vq_embed_dim != data.meta.latent_channels:
        raise ValueError(f"--tokenizer {name} has latents of d = {vq.config.vq_embed_dim} channels; the latents "
                         f"{config.latents} have {data.meta.latent_channels}: a generator decodes only with the "
                         "tokenizer its latents came from.")
    return vq


def train(config: LatentTrainConfig) -> LatentTrainResult:
    """Run training (and the final evaluation) as `config` says; returns the last step, losses and the model."""
    loop, out = config.loop, Path(config.loop.output_dir)
    accelerator, mixed_precision = runtime.make_accelerator(loop)
    set_seed(loop.seed)

    # ---- data, tokenizer, scaling factor, model, optimizer ----------------------------------------------------
    data = LatentDataset(config.latents, seed=loop.seed)
    vq = load_tokenizer(config, data)
    folder = resolve_preset(config.config)  # once: a hub id is a download
    # One pass over every training latent, on the main process; the others receive its result.
    stats = latent_statistics(data) if accelerator.is_main_process else None
    if accelerator.num_processes > 1:
        stats = broadcast_object_list([stats])[0]
    scale, source = scaling_factor(config, stats, folder)
    logger.info("Latents %s: mean %.4f, std %.4f; scaling factor %.6g (%s).", data.latent_shape, stats["mean"],
                stats["std"], scale, source)
    model, scheduler = build_generator(config, data, folder)
    make_sampler(scheduler, config.sampler)  # a sampler of the other objective is refused before training
    if config.class_dropout == 0 and config.sample_guidance > 1:
        logger.warning("--class-dropout 0 leaves the null class untrained: samples.png guided at %s mixes in an "
                       "untrained prediction (use --sample-guidance 1).", config.sample_guidance)
    # Every process starts from the same weights (built above), then draws its own noise, timesteps and label
    # dropout (DiT's seed * world + rank); accelerate saves each process's RNG in checkpoints.
    torch.manual_seed(loop.seed * accelerator.num_processes + accelerator.process_index)
    disable_label_dropout(model)
    _, null = conditioning(model)
    if loop.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=loop.lr,
                                  betas=(loop.beta1, loop.beta2), eps=loop.adam_eps, weight_decay=config.weight_decay)
    model, optimizer, loader, unwrapped, schedule = runtime.prepare_loop(accelerator, loop, data, model, optimizer)
    ema = make_ema(unwrapped, config.ema_decay, config.ema_warmup)
    state = runtime.start_run(accelerator, loop, "fvq-latent", {**config.to_dict(), "measured_scaling_factor": scale},
                              *([ema] if ema else []))
    if ema:
        ema.to(accelerator.device)
    options = EvalOptions(config.eval_batch_size, config.eval_draws)
    global_batch = loop.batch_size * accelerator.num_processes * loop.gradient_accumulation_steps
    logger.info("%s (%s, %s): %.1fM parameters, %d samples, %d steps (%d per epoch), global batch %d, %d processes, "
                "%s", config.config, type(unwrapped).__name__, objective_of(scheduler),
                sum(p.numel() for p in unwrapped.parameters()) / 1e6, len(data), schedule.total,
                schedule.steps_per_epoch, global_batch, accelerator.num_processes, mixed_precision)

    # ---- one step: the objective's target at a random timestep, some labels dropped to the null class --------
    def step(batch: tuple[torch.Tensor, torch.Tensor], step_index: int) -> dict:
        latents, labels = batch
        noisy, timesteps, target = training_pair(scheduler, latents * scale)
        dropped = torch.rand(labels.shape, device=labels.device) < config.class_dropout
        with accelerator.autocast():
            pred = predict(model, noisy, timesteps, labels.masked_fill(dropped, null))
        loss = torch.mean((pred.float() - target.float()) ** 2)
        accelerator.backward(loss)
        logs = {"loss": loss.detach()}
        if accelerator.sync_gradients:
            logs["grad_norm"] = float(accelerator.clip_grad_norm_(model.parameters(), loop.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema and accelerator.sync_gradients:
            ema.step(unwrapped.parameters())
        return logs

    # ---- the loop ---------------------------------------------------------------------------------------------
    run = runtime.Run(accelerator, loop, state, loader, data, schedule, (model,))
    logs: dict = {}
    for _, logs in run.steps(step):
        if config.eval_every and state.step % config.eval_every == 0 and state.step < schedule.total:
            with run.paused(), averaged_weights(ema, unwrapped), accelerator.autocast():
                held = held_out_loss(unwrapped, scheduler, config.eval_latents, scale, options.batch_size,
                                     options.draws, accelerator.device, class_names=data.meta.class_names,
                                     processes=accelerator.state)
                accelerator.log({f"eval/{k}": v for k, v in held.items()}, step=state.step)
                if accelerator.is_main_process:
                    logger.info("step %d: held-out denoising loss %.4f", state.step, held["denoising_loss"])
                unwrapped.train()
        if run.due(loop.log_every):
            mean_loss = accelerator.reduce(logs["loss"], reduction="mean").item()
            run.log({"loss": mean_loss, "grad_norm": logs["grad_norm"]}, f"loss {mean_loss:.4f}")
        if run.due(loop.checkpoint_every):
            run.checkpoint()

    # ---- the held-out loss and baselines, the saved pipeline and samples --------------------------------------
    final_loss = accelerator.reduce(logs.get("loss", torch.zeros((), device=accelerator.device)),
                                    reduction="mean").item()
    results: dict = {}
    if state.step == schedule.total:
        summary = (f"Trained with `fvq-train-latent` for {schedule.total} steps on `{config.latents}` ({len(data):,} "
                   f"samples), {objective_of(scheduler)} objective, global batch {global_batch}, AdamW lr {loop.lr} "
                   f"({loop.schedule}), weight decay {config.weight_decay}, class dropout {config.class_dropout}, "
                   f"scaling factor {scale:.6g}" + (f", EMA {config.ema_decay} (saved weights)" if ema else "")
                   + f"; last training loss {final_loss:.4f}.")
        with averaged_weights(ema, unwrapped):
            # every process evaluates its share of the held-out latents; the main process saves
            if config.eval_latents:
                cuda = list(range(torch.cuda.device_count()))
                with torch.random.fork_rng(devices=cuda):  # the untrained model: this run's init (RNGs kept)
                    torch.manual_seed(loop.seed)
                    untrained, _ = build_generator(config, data, folder)
                disable_label_dropout(untrained)
                results = final_evaluation(unwrapped, untrained, scheduler, config.eval_latents, options,
                                           data.meta.class_names, stats, scale, accelerator.device,
                                           accelerator.autocast, accelerator.state)
            if accelerator.is_main_process:
                save_outputs(config, out, unwrapped, scheduler, vq, data, results, scale, summary, accelerator.device)
    runtime.end_run(accelerator, out)
    return LatentTrainResult(state.step, final_loss, results, unwrapped, scale, accelerator.process_index,
                             accelerator.num_processes)


def save_outputs(config: LatentTrainConfig, out: Path, model: torch.nn.Module, scheduler: SchedulerMixin,
                 vq: FVQModel | None, data: LatentDataset, results: dict, scale: float, summary: str,
                 device: torch.device | str) -> None:
    """Write `eval.json` (`final_evaluation`'s results); save the pipeline with its card and `samples.png` (one row
    per class, the first 16 classes)."""
    from ..pipelines import FVQLatentPipeline

    (out / "eval.json").write_text(json.dumps(results, indent=2))
    component = component_of(model)
    model.eval()
    if vq is None:
        model.save_pretrained(out / component)
        save_evaluation(out / component, results, summary)
        return
    vq.register_to_config(scaling_factor=scale)
    pipe = FVQLatentPipeline(**{component: model}, scheduler=make_sampler(scheduler, config.sampler),
                             vq=vq.to(device).eval(), class_names=data.meta.class_names)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(out / "pipeline")
    save_evaluation(out / "pipeline" / component, results, summary)
    pipe.model_card(evaluations=results or None, training=summary).save(out / "pipeline" / "README.md")
    from diffusers.utils import make_image_grid

    classes = list(range(min(data.num_classes, 16)))
    labels = [c for c in classes for _ in range(config.samples_per_class)]
    images = pipe(labels, guidance_scale=config.sample_guidance, num_inference_steps=config.sample_steps,
                  quantize=config.quantize_samples, generator=torch.Generator(device).manual_seed(config.loop.seed)
                  ).images
    make_image_grid(images, rows=len(classes), cols=config.samples_per_class).save(out / "samples.png")
    logger.info("Saved %s and %s (one row per class).", out / "pipeline", out / "samples.png")
