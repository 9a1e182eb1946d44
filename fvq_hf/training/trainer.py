"""Training an FVQ tokenizer (or a baseline) with accelerate: `train(TrainConfig(...))` runs the loop that `fvq-train`
(`fvq_hf.cli.train`) starts, from one CPU to many GPUs and nodes; it reads top to bottom: set-up, the loop (step,
periodic evaluation, log, checkpoint), then the final evaluation and the saved models.

Checkpoints are atomic (see `fvq_hf.training.runtime`). The final model is written with `save_pretrained`
to `<output-dir>/model` (as trained) and `<output-dir>/model-folded` (`fold_bridge()`), each with a model
card holding the evaluation measured at the end of training (by every process, `training.evaluation`). With
`ema_decay` those hold the weights' moving average (`training.ema`) and `<output-dir>/model-raw` the raw ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from ..data.sources import RandomCrops, open_source
from ..data.streams import StreamedCrops, open_stream
from ..evaluation.evaluate import format_table
from ..evaluation.usage import UsageWindow, save_usage_file, usage_file_name
from ..hub.evaluation_file import save_evaluation
from ..losses import LPIPS, PatchGANDiscriminator, TokenizerLoss, find_lpips_weights
from ..tokenizer import FVQModel
from . import runtime
from .config import BUILTIN_SAMPLES_PER_EPOCH, DISC_FAKES, LossConfig, TrainConfig
from .ema import averaged_weights, make_ema
from .evaluation import TrainingEvaluation

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run returns on every process: the steps taken, the final evaluation of `model/` (`eval`, empty when the
    run stopped early) and of `model-raw/` (`eval_raw`, with an EMA), the rolling usage, the trained model (EMA
    weights not swapped in) and its EMA, and this process's rank of `world_size`."""

    step: int
    eval: dict = field(default_factory=dict)
    eval_raw: dict | None = None
    usage_rolling: float = 0.0
    model: FVQModel | None = None
    ema: object | None = None
    rank: int = 0
    world_size: int = 1

    def table(self) -> str:
        """The printed result of `fvq-train`: the evaluation table (and the raw weights' beside an EMA)."""
        lines = [format_table(self.eval)] if self.eval else []
        if self.eval_raw:
            lines.append(f"\nRaw weights (model-raw; the table above is their EMA):\n{format_table(self.eval_raw)}")
        return "\n".join(lines)


def build_training_data(accelerator, config: TrainConfig, resolution: int) -> tuple[object, DataLoader, int | None]:
    """`(dataset, loader, optimizer steps per epoch)` of the run's data. A map-style source (builtin, folder, saved
    dataset) goes through `accelerator.prepare`; a stream (`streaming`, tar shards) is read by each process from its
    own shards, so its loader is not prepared and its epoch length is unknown (None)."""
    data, batch_size, workers = config.data, config.loop.batch_size, config.loop.num_workers
    if data.streaming:
        stream, column = open_stream(data, "train", config.image_column)
        dataset = StreamedCrops(stream, column, resolution, config.loop.seed, accelerator.process_index,
                                accelerator.num_processes, source=data)
        return dataset, DataLoader(dataset, batch_size=batch_size, drop_last=True, num_workers=workers), None
    source = open_source(data, "train", config.image_column)
    length = config.samples_per_epoch or (BUILTIN_SAMPLES_PER_EPOCH if data.is_builtin else len(source))
    dataset = RandomCrops(source, resolution, length, config.loop.seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                        persistent_workers=False)
    if len(loader) == 0:
        raise ValueError(f"{len(dataset)} training samples make no full batch of {batch_size}.")
    return dataset, accelerator.prepare(loader), max(1, len(loader) // config.loop.gradient_accumulation_steps)


def train(config: TrainConfig) -> TrainResult:
    """Run training (and the final evaluation) as `config` says; returns the last step and the evaluation."""
    loop, out = config.loop, Path(config.loop.output_dir)
    accelerator, mixed_precision = runtime.make_accelerator(loop)
    set_seed(loop.seed)

    # ---- model, losses, data --------------------------------------------------------------------------------
    model_config = runtime.load_config(config.config, FVQModel, "a tokenizer folder under hub_configs/, e.g. fvq-cpu-4k")
    model = FVQModel.from_pretrained(config.config) if config.init_weights else FVQModel.from_config(model_config)
    if config.add_bridge:
        model = model.add_bridge(config.add_bridge, config.bridge_config)
    if config.quantizer_precision:
        model.set_quantizer_precision(config.quantizer_precision)
    if config.init_table:
        table_meta = model.load_table(config.init_table)
        logger.info("The codebook table starts from %s (%s)", config.init_table,
                    ", ".join(f"{k} {v}" for k, v in table_meta.items()) or "no metadata")
    if loop.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    resolution = config.resolution or model.config.sample_size
    if resolution % model.downsample_factor:
        raise ValueError(f"--resolution {resolution} is not a multiple of the downsample factor "
                         f"{model.downsample_factor}.")
    discriminator = PatchGANDiscriminator(num_layers=config.loss.disc_layers)
    weights = config.evaluation.weights  # the LPIPS files serve the perceptual loss and the LPIPS metric
    vgg, linear, lpips_note = find_lpips_weights(weights.get("lpips_vgg"), weights.get("lpips_linear"))
    if lpips_note and config.loss.perceptual_weight > 0:
        logger.warning("%s. Training without the perceptual loss.", lpips_note)
    lpips = LPIPS.from_files(vgg, linear).to(accelerator.device) if vgg else None
    loss_fn = build_loss(config.loss, lpips)
    if loop.compile:
        runtime.compile_modules(accelerator.device, model, discriminator, lpips)
    optimizer, optimizer_d = build_optimizers(model, discriminator, loop.lr, (loop.beta1, loop.beta2), loop.adam_eps)
    model, discriminator, optimizer, optimizer_d = accelerator.prepare(model, discriminator, optimizer, optimizer_d)
    dataset, loader, steps_per_epoch = build_training_data(accelerator, config, resolution)
    schedule = runtime.LearningRate(loop, steps_per_epoch, [optimizer, optimizer_d])

    monitor = UsageWindow(model_config["num_vq_embeddings"], config.usage_window, accelerator.device)
    unwrapped = accelerator.unwrap_model(model)
    ema = make_ema(unwrapped, config.ema_decay, config.ema_warmup)
    state = runtime.start_run(accelerator, loop, "fvq", config.to_dict(), monitor, *([ema] if ema else []))
    if ema:
        ema.to(accelerator.device)  # a resumed average is loaded onto the CPU
    global_batch = loop.batch_size * accelerator.num_processes * loop.gradient_accumulation_steps
    logger.info("%s: %d steps (%s per epoch), global batch %d, %d processes, %s, warmup %d steps, %s schedule%s",
                config.config, schedule.total, steps_per_epoch or "streamed: ?", global_batch, accelerator.num_processes,
                mixed_precision, schedule.warmup, loop.schedule,
                f", EMA {config.ema_decay}{'' if config.ema_warmup else ' (constant)'}" if ema else "")

    tokenizer_step = TokenizerStep(accelerator, model, discriminator, loss_fn, optimizer, optimizer_d,
                                   loop.max_grad_norm, disc_fakes=config.loss.disc_fakes)
    evaluation = TrainingEvaluation(accelerator, config.eval_data, config.evaluation, resolution)

    def step(images: torch.Tensor, step_index: int) -> dict:
        logs, indices = tokenizer_step(images.to(accelerator.device), step_index)
        if ema and accelerator.sync_gradients:
            ema.step(unwrapped.parameters())
        monitor.update(accelerator.gather(indices), step_index)
        return logs

    # ---- the loop ---------------------------------------------------------------------------------------------
    run = runtime.Run(accelerator, loop, state, loader, dataset, schedule, (model, discriminator))
    for step_count, logs in run.steps(step):
        if config.eval_every and step_count % config.eval_every == 0 and step_count < run.total and evaluation.data:
            with run.paused(), averaged_weights(ema, unwrapped):  # on every process; not counted in s/step
                evaluation(unwrapped, step_count, f"{out / 'model'} at step {step_count}")
            model.train()
        if run.due(loop.log_every):
            usage, tokens = monitor.usage(step_count), monitor.tokens_per_code(step_count)
            run.log({**logs, "usage_rolling": usage}, f"loss {logs['loss/total']:.4f}  rec "
                    f"{logs['loss/reconstruction']:.4f}  usage(rolling {config.usage_window}) {usage:.1%} at "
                    f"{tokens:.0f} tokens/code")
        if run.due(loop.checkpoint_every):
            run.checkpoint()

    # ---- the final evaluation and the saved models ------------------------------------------------------------
    results: dict = {}
    if state.step == schedule.total:
        summary = training_summary(config, schedule.total, resolution, global_batch, schedule.warmup)
        results = evaluate_and_save(accelerator, out, unwrapped, ema, evaluation, schedule.total, summary, config)
    runtime.end_run(accelerator, out)
    return TrainResult(state.step, results.get("model", {}), results.get("model-raw"), monitor.usage(state.step),
                       unwrapped, ema, accelerator.process_index, accelerator.num_processes)


def build_loss(loss: LossConfig, lpips: LPIPS | None) -> TokenizerLoss:
    """The training objective of `loss` (with `lpips` as its perceptual network, None: no perceptual term)."""
    return TokenizerLoss(lpips, reconstruction_weight=loss.reconstruction_weight, perceptual_weight=loss.perceptual_weight,
                         disc_weight=loss.disc_weight, disc_start=loss.disc_start,
                         reconstruction_loss=loss.reconstruction_loss, disc_adaptive=loss.disc_adaptive,
                         perceptual_dropout=loss.perceptual_dropout)


def build_optimizers(model: torch.nn.Module, discriminator: torch.nn.Module, lr: float,
                     betas: tuple[float, float], eps: float = 1e-8) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """The released set-up (the FVQ authors', LlamaGen's and VQGAN-LC's scripts): Adam without weight decay for the
    tokenizer's trainable parameters and one for the discriminator, at the same peak learning rate (set each step by
    the schedule) and `eps` (VQGAN-LC's 1e-7). The FVQ authors scale their `--lr` by global batch / 128; pass the
    scaled value here."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return (torch.optim.Adam(trainable, lr=lr, betas=betas, eps=eps),
            torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas, eps=eps))


class TokenizerStep:
    """One training step of a tokenizer: the generator (reconstruction, perceptual, GAN once started, quantizer
    losses; backward, clip, Adam), then the discriminator once the GAN has started, on `disc_fakes` (`LossConfig`):
    the step's reconstructions ("step") or a second forward's after the generator's update ("updated", taming's and
    VQGAN-LC's). `fvq-train` runs it inside `accelerator.accumulate`; the parity tests run it against the authors'
    loops."""

    def __init__(self, accelerator, model, discriminator, loss_fn: TokenizerLoss, optimizer, optimizer_d,
                 max_grad_norm: float, disc_fakes: str = "step") -> None:
        self.accelerator, self.model, self.discriminator, self.loss_fn = accelerator, model, discriminator, loss_fn
        self.optimizer, self.optimizer_d, self.max_grad_norm = optimizer, optimizer_d, max_grad_norm
        if disc_fakes not in DISC_FAKES:
            raise ValueError(f"disc_fakes {disc_fakes!r}: choose one of {', '.join(DISC_FAKES)}.")
        self.disc_fakes = disc_fakes
        self.discriminator_module = accelerator.unwrap_model(discriminator)  # the generator's GAN term reads it

    def generator_loss(self, images: torch.Tensor, step_index: int):
        """`(B, C, H, W)` images -> (loss, logs, model output) of the generator at `step_index` (0-based)."""
        output = self.model(images)
        gan = self.loss_fn.gan_active(step_index)
        last_layer = self.accelerator.unwrap_model(self.model).decoder.conv_out.weight
        loss, logs = self.loss_fn.generator_loss(images, output.sample, output.codebook_loss, output.commitment_loss,
                                                 step_index, self.discriminator_module if gan else None, last_layer)
        return loss, logs, output

    def __call__(self, images: torch.Tensor, step_index: int) -> tuple[dict, torch.LongTensor]:
        """One step on `images`; returns the logs and the token ids the batch got."""
        accelerator = self.accelerator
        loss, logs, output = self.generator_loss(images, step_index)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            logs["grad_norm"] = float(accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.loss_fn.gan_active(step_index):
            d_loss, d_logs = self.loss_fn.discriminator_loss(images, self.fakes(images, output), self.discriminator)
            accelerator.backward(d_loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(self.discriminator.parameters(), self.max_grad_norm)
            self.optimizer_d.step()
            self.optimizer_d.zero_grad(set_to_none=True)
            logs.update(d_logs)
        return logs, output.indices

    def fakes(self, images: torch.Tensor, output) -> torch.Tensor:
        """The reconstructions the discriminator learns from: the generator step's `output.sample`, or ("updated")
        those of the model as its optimizer step left it, without gradients."""
        if self.disc_fakes == "step":
            return output.sample
        with torch.no_grad():
            return self.model(images).sample


def training_summary(config: TrainConfig, steps: int, resolution: int, global_batch: int, warmup: int) -> str:
    """How the model was trained, for its card."""
    start = "Trained"
    if config.init_weights:
        bridge = f" with a fresh {config.add_bridge} bridge" if config.add_bridge else ""
        start = f"Fine-tuned from `{config.config}`{bridge}"
    return (f"{start} with `fvq-train` for {steps} steps at {resolution} px, global batch {global_batch}, lr "
            f"{config.loop.lr} ({config.loop.schedule} annealing, {warmup} warmup steps), data `{config.data}`.")


WEIGHT_NOTES = {
    "model": "the exponential moving average of the training weights (decay {decay}{schedule}, diffusers' EMAModel); "
             "the raw weights of the last step are beside it in `model-raw`",
    "model-raw": "the raw training weights of the last step, not their average (which is in `model`)",
}


def evaluate_and_save(accelerator, out: Path, model: FVQModel, ema, evaluation: TrainingEvaluation, step: int,
                      summary: str, config: TrainConfig) -> dict:
    """Evaluate the trained model on every process, then (main process) save it as trained and folded, with a card
    holding the results. With an EMA, `model` / `model-folded` hold the averaged weights and `model-raw` the last
    step's own, each evaluated. Returns the results of each saved folder."""
    folders = {"model": ema, "model-raw": None} if ema else {"model": None}  # folder -> the average it holds
    results = {}
    for folder, average in folders.items():
        with averaged_weights(average, model):
            results[folder], counters = evaluation(model, step, str(out / folder), log=folder == "model")
            if accelerator.is_main_process:
                schedule = " with its warmup" if config.ema_warmup else " from the first step, without warmup"
                note = f" Weights: {WEIGHT_NOTES[folder].format(decay=config.ema_decay, schedule=schedule)}." \
                    if ema else ""
                save_model(out, folder, model, results[folder], summary + note, config)
                if folder == "model":
                    for data, counter in counters.items():
                        save_usage_file(out / usage_file_name(data), counter, str(out / "model"), data)
    if accelerator.is_main_process:
        (out / "eval.json").write_text(json.dumps(results["model"], indent=2))
        if ema:
            (out / "eval-raw.json").write_text(json.dumps(results["model-raw"], indent=2))
        folded = ["model-folded"] if model.quantizer.has_table else []
        logger.info("Saved %s.", ", ".join(str(out / folder) for folder in (*results, *folded)))
    return results


def save_model(out: Path, folder: str, model: FVQModel, results: dict, summary: str, config: TrainConfig) -> None:
    """`model` (and, for `model`, its fold in `model-folded`) saved with a card holding `results`."""
    # Not model.model_card: what was saved next to --init-weights (e.g. a converted original's provenance) is not
    # this model's any more.
    datasets = [config.data.hub_dataset] if config.data.hub_dataset else None
    card = model.model_card(evaluations=results or None, training=summary, datasets=datasets, saved=False)
    # A quantizer type without a table has no codebook to fold into: its model is saved once.
    folded = folder == "model" and model.quantizer.has_table
    saved = [(folder, model)] + ([("model-folded", model.fold_bridge())] if folded else [])
    for name, model_out in saved:
        model_out.save_pretrained(out / name)
        card.save(out / name / "README.md")
        save_evaluation(out / name, results, summary)
