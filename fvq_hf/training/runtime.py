"""What every training loop shares: the accelerator, learning annealing, atomic checkpoints, resume.

Checkpoints (accelerate `save_state`) are written to `<output-dir>/checkpoints/.tmp-step-N` and renamed to
`step-N` only when every process has written its part, so a crash mid-write never leaves a corrupt latest
checkpoint; `--resume` continues from the newest complete one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration

from ..hub.paths import refuse_missing_folder
from .schedule import annealing_factor

logger = logging.getLogger(__name__)


def load_config(name: str, cls, choose: str) -> dict:
    """`--config` (a folder or hub id) -> the config of `cls`; a clear error if it is missing or another model's.

    diffusers would only warn about another model's keys and build a default `cls`: refused here.
    """
    refuse_missing_folder(name, "--config")
    try:
        config = dict(cls.load_config(name))
    except OSError as error:
        raise FileNotFoundError(f"--config {name}: no config.json there, and not a hub id in reach "
                                f"(choose {choose}). {error}") from error
    found = config.get("_class_name", cls.__name__)
    if found != cls.__name__:
        raise ValueError(f"--config {name} is an {found} config, not an {cls.__name__} one (choose {choose}).")
    return config


def make_accelerator(args: argparse.Namespace, out: Path) -> tuple[Accelerator, str]:
    """The accelerator of a run (seedable sampler: resumed runs see the same batches) and its precision."""
    mixed_precision = args.mixed_precision or ("bf16" if torch.cuda.is_available() else "no")
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return accelerator, mixed_precision


@dataclass
class TrainState:
    """Progress that checkpoints carry besides weights and optimizer states."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batches_in_epoch: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


def training_batches(accelerator: Accelerator, loader, dataset, state: TrainState, stop_at: int) -> Iterator:
    """The run's batches, epoch after epoch, from where `state` stands, while `state.step < stop_at`.

    A resumed run skips the batches of its epoch that it already took; `dataset.set_epoch` and
    `loader.set_epoch` make each epoch's items and order a function of the epoch. The caller counts steps
    and breaks when it reaches `stop_at`.
    """
    while state.step < stop_at:
        dataset.set_epoch(state.epoch)
        loader.set_epoch(state.epoch)
        batches = accelerator.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
        for batch in batches:
            state.batches_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batches_in_epoch = 0


class LearningRate:
    """Learning annealing over a run: warmup, constant, then the `--schedule` decay (see `annealing_factor`)."""

    def __init__(self, args: argparse.Namespace, steps_per_epoch: int, optimizers: list) -> None:
        self.peak, self.schedule, self.constant_fraction = args.lr, args.schedule, args.constant_fraction
        self.total = args.max_steps or args.epochs * steps_per_epoch
        self.warmup = min(self.total, round(args.warmup_epochs * steps_per_epoch) if args.warmup_epochs is not None
                          else round(args.warmup_fraction * self.total))
        self.optimizers = optimizers

    def set(self, step: int) -> float:
        """Set every optimizer's learning rate for `step`; returns it."""
        lr = self.peak * annealing_factor(step, self.total, self.warmup, self.schedule,
                                          constant_fraction=self.constant_fraction)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete `step-N` checkpoint; `.tmp-*` folders (interrupted writes) are ignored."""
    done = sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if root.is_dir() else []
    return done[-1] if done else None


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int) -> Path:
    """accelerate `save_state` into a temporary folder, renamed when every process has written its part."""
    final, tmp = root / f"step-{step:08d}", root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resume_latest(accelerator: Accelerator, root: Path, state: TrainState) -> None:
    """Load the newest complete checkpoint under `root` into everything registered with the accelerator."""
    latest = latest_checkpoint(root)
    if latest is None:
        logger.warning("--resume: no complete checkpoint under %s; starting from scratch.", root)
        return
    try:
        accelerator.load_state(str(latest))
    except Exception as error:
        raise RuntimeError(f"Checkpoint {latest} cannot be loaded ({error}). Delete it to resume from the "
                           "one before, or start without --resume.") from error
    logger.info("Resumed from %s at step %d.", latest, state.step)


def start_run(accelerator: Accelerator, args: argparse.Namespace, out: Path, project: str, *states) -> TrainState:
    """Register the run's progress (and `states`, e.g. a usage monitor) for checkpoints, resume if asked, record
    the arguments and start the trackers; returns the progress."""
    state = TrainState()
    accelerator.register_for_checkpointing(state, *states)
    if args.resume:
        resume_latest(accelerator, out / "checkpoints", state)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_args.json").write_text(json.dumps(vars(args), indent=2))
    accelerator.init_trackers(project, config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str))})
    return state


@dataclass
class Run:
    """What the loop needs besides the per-model step: the accelerator, the flags, progress, data and schedule."""

    accelerator: Accelerator
    args: argparse.Namespace
    state: TrainState
    loader: torch.utils.data.DataLoader
    dataset: object  # has set_epoch(epoch)
    schedule: LearningRate
    checkpoints: Path


def run_loop(run: Run, models: tuple, step: Callable[[object, int], dict],
             describe: Callable[[dict], tuple[dict, str]]) -> dict:
    """The training loop every command shares, from where `run.state` stands to `--max-steps` / `--stop-after`.

    `step(batch, step_index)` runs one micro-batch inside `accelerator.accumulate(*models)` (forward, backward,
    optimizer steps) and returns its logs. An optimizer step is counted when gradients sync; then the learning
    rate moves on, every `--log-every` steps `describe(logs) -> (metrics, message)` is logged, and every
    `--checkpoint-every` steps (and at the end) an atomic checkpoint is written. Returns the last step's logs.
    """
    from tqdm.auto import tqdm

    accelerator, args, state, schedule = run.accelerator, run.args, run.state, run.schedule
    bar = tqdm(total=schedule.total, initial=state.step, disable=not accelerator.is_main_process, desc="training")
    start_step, tick = state.step, time.perf_counter()
    stop_at = schedule.total if args.stop_after is None else min(schedule.total, start_step + args.stop_after)
    for model in models:
        model.train()
    lr = schedule.set(state.step)
    logs: dict = {}
    try:
        for batch in training_batches(accelerator, run.loader, run.dataset, state, stop_at):
            with accelerator.accumulate(*models):
                logs = step(batch, state.step)
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            lr = schedule.set(state.step)
            bar.update(1)
            if state.step % args.log_every == 0 or state.step == stop_at:
                step_time = (time.perf_counter() - tick) / max(1, state.step - start_step)
                metrics, message = describe(logs)
                accelerator.log({**metrics, "lr": lr, "step_time": step_time, "epoch": state.epoch}, step=state.step)
                bar.set_postfix_str(message)
                logger.info("step %d  %s  lr %.2e  %.3f s/step", state.step, message, lr, step_time)
            if state.step % args.checkpoint_every == 0 or state.step == stop_at:
                save_checkpoint(accelerator, run.checkpoints, state.step, args.checkpoints_total_limit)
            if state.step >= stop_at:
                break
    finally:  # the bar's line ends before any error message
        bar.close()
    accelerator.wait_for_everyone()
    if state.step < schedule.total:
        logger.info("Stopped at step %d of %d; continue with --resume.", state.step, schedule.total)
    return logs
