"""What every training loop shares: the accelerator, learning annealing, atomic checkpoints, resume, and the steps
of a run (`Run.steps`), which each trainer's loop body consumes:

    for step, logs in run.steps(step_fn):       # step_fn(batch, step_index) -> logs, inside accelerate's accumulate
        ...                                     # periodic evaluation (inside `run.paused()`), then
        if run.due(loop.log_every): run.log(metrics, message)
        if run.due(loop.checkpoint_every): run.checkpoint()

Checkpoints (accelerate `save_state`) are written to `<output-dir>/checkpoints/.tmp-step-N` and renamed to
`step-N` only when every process has written its part, so a crash mid-write never leaves a corrupt latest
checkpoint; `--resume` continues from the newest one that loads. One live run per output folder (`OutputLock`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import ProjectConfiguration, broadcast_object_list

from ..hub.paths import refuse_missing_folder
from .config import LoopConfig, flat_scalars
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


def make_accelerator(loop: LoopConfig) -> tuple[Accelerator, str]:
    """The accelerator of a run (seedable sampler: resumed runs see the same batches) and its precision."""
    out = Path(loop.output_dir)
    mixed_precision = loop.mixed_precision or ("bf16" if torch.cuda.is_available() else "no")
    accelerator = Accelerator(
        gradient_accumulation_steps=loop.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=None if loop.report_to == "none" else loop.report_to,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return accelerator, mixed_precision


def compile_modules(device: torch.device, *modules: torch.nn.Module | None) -> None:
    """`--compile`: `torch.compile` each module in place (`nn.Module.compile`: its state-dict keys, hence checkpoints
    and saved models, stay as they are). A probe compiles first, so that a machine where compiling cannot work
    (no C++ compiler for inductor on CPU, no Triton on GPU) says so before training starts."""
    try:
        torch.compile(lambda x: torch.sin(x) * 2 + 1)(torch.ones(8, device=device))
    except Exception as error:  # inductor fails in many ways (missing compiler, headers, Triton)
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1][:300]
        raise ValueError(f"--compile: torch.compile does not work on this machine ({reason}). On CPU it needs a C++ "
                         "compiler (g++) and Python headers; on GPU, Triton. Run without --compile.") from error
    for module in modules:
        if module is not None:
            module.compile()


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
        if hasattr(loader, "set_epoch"):  # a prepared loader's sampler (a stream's own loader has none)
            loader.set_epoch(state.epoch)
        batches = accelerator.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
        for batch in batches:
            state.batches_in_epoch += 1
            yield batch
        state.epoch += 1
        state.batches_in_epoch = 0


class LearningRate:
    """Learning annealing over a run: warmup, constant, then the `schedule` decay (see `annealing_factor`).
    `steps_per_epoch` is None for streamed data (then the loop gives `max_steps` and no warmup in epochs)."""

    def __init__(self, loop: LoopConfig, steps_per_epoch: int | None, optimizers: list) -> None:
        self.peak, self.schedule, self.constant_fraction = loop.lr, loop.schedule, loop.constant_fraction
        self.steps_per_epoch = steps_per_epoch
        self.total = loop.max_steps or loop.epochs * steps_per_epoch
        self.warmup = min(self.total, round(loop.warmup_epochs * steps_per_epoch) if loop.warmup_epochs is not None
                          else round(loop.warmup_fraction * self.total))
        self.optimizers = optimizers

    def set(self, step: int) -> float:
        """Set every optimizer's learning rate for `step`; returns it."""
        lr = self.peak * annealing_factor(step, self.total, self.warmup, self.schedule,
                                          constant_fraction=self.constant_fraction)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr


def prepare_loop(accelerator: Accelerator, loop: LoopConfig, data: torch.utils.data.Dataset, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer) -> tuple:
    """A map-style data set's shuffled loader, `--compile`, `accelerator.prepare` and the learning-rate schedule, as
    the generators' trainers share them; returns `(model, optimizer, loader, unwrapped model, schedule)`.

    The loader has its own generator: creating an iterator then draws nothing from the global RNG, whose state
    checkpoints restore, so label dropout, dropout and noise draws stay exact across --resume.
    """
    generator = torch.Generator().manual_seed(loop.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=loop.batch_size, shuffle=True, drop_last=True,
                                         num_workers=loop.num_workers, generator=generator)
    if len(loader) == 0:
        raise ValueError(f"{len(data)} training samples make no full batch of {loop.batch_size}.")
    if loop.compile:
        compile_modules(accelerator.device, model)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = max(1, len(loader) // loop.gradient_accumulation_steps)
    return model, optimizer, loader, accelerator.unwrap_model(model), LearningRate(loop, steps_per_epoch, [optimizer])


def complete_checkpoints(root: Path) -> list[Path]:
    """The complete `step-N` checkpoints under `root`, oldest first; `.tmp-*` folders (interrupted writes) are
    ignored."""
    return sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if root.is_dir() else []


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete `step-N` checkpoint, or None."""
    done = complete_checkpoints(root)
    return done[-1] if done else None


def data_position_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"data_position_{rank}.json"


def save_data_position(accelerator: Accelerator, checkpoint: Path, state: TrainState) -> None:
    """Each process's place in its data (epoch, batches taken in it) beside the checkpoint: accelerate saves the
    registered `TrainState` of the main process only, and with streamed data each process reads its own shards,
    whose epochs end at different steps."""
    data_position_file(checkpoint, accelerator.process_index).write_text(
        json.dumps({"epoch": state.epoch, "batches_in_epoch": state.batches_in_epoch}))


def load_data_position(accelerator: Accelerator, checkpoint: Path, state: TrainState) -> None:
    """This process's data position from `checkpoint` (as the main process's when it was saved without one: a run
    resumed on more processes, or a checkpoint older than these files)."""
    path = data_position_file(checkpoint, accelerator.process_index)
    if path.is_file():
        state.load_state_dict(json.loads(path.read_text()))
    elif accelerator.process_index:
        logger.warning("--resume: %s holds no data position of process %d; it continues from the main process's.",
                       checkpoint, accelerator.process_index)


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int, state: TrainState) -> Path:
    """accelerate `save_state` into a temporary folder, renamed when every process has written its part."""
    final, tmp = root / f"step-{step:08d}", root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    save_data_position(accelerator, tmp, state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resume_latest(accelerator: Accelerator, root: Path, state: TrainState) -> None:
    """Load the newest checkpoint under `root` that loads into everything registered with the accelerator; a
    damaged one (truncated, overwritten) is skipped with a warning that says why, and the one before is tried."""
    checkpoints = complete_checkpoints(root)
    if not checkpoints:
        logger.warning("--resume: no complete checkpoint under %s; starting from scratch.", root)
        return
    skipped = []
    for checkpoint in reversed(checkpoints):
        try:
            accelerator.load_state(str(checkpoint))
            load_data_position(accelerator, checkpoint, state)
        except Exception as error:  # a damaged file fails in many ways (safetensors, pickle, zip, shapes)
            reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
            logger.warning("--resume: skipping %s, which cannot be loaded (%s).", checkpoint, reason)
            skipped.append(f"{checkpoint.name} ({reason})")
            continue
        logger.info("Resumed from %s at step %d%s.", checkpoint, state.step,
                    f" (skipped {len(skipped)} newer damaged checkpoint(s))" if skipped else "")
        return
    raise ValueError(f"--resume: no checkpoint under {root} can be loaded: {'; '.join(skipped)}. Delete them, "
                     "or start without --resume.")


class OutputLock:
    """`<output-dir>/.fvq-train.lock`: one live run per output folder. The lock names its process (pid, host,
    start); a lock whose process is gone (a killed run) is stale and taken over, so it never blocks `--resume`."""

    NAME = ".fvq-train.lock"

    def __init__(self, out: Path) -> None:
        self.out, self.path = out, out / self.NAME

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def alive(holder: dict) -> bool:
        """Whether the process that wrote the lock still runs (one on another host is taken to)."""
        if holder.get("host") != socket.gethostname():
            return True
        if holder.get("pid") == os.getpid():  # a run of this process that ended without releasing (it raised)
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, KeyError, ValueError, TypeError):
            return True
        return True

    def acquire(self) -> None:
        """Take the lock, or raise a ValueError naming the live run that holds it."""
        self.out.mkdir(parents=True, exist_ok=True)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        while True:
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self.holder() or {}
                if holder and self.alive(holder):
                    raise ValueError(
                        f"--output-dir {self.out} is in use by another live run (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('started')}): two runs would write into the same "
                        f"checkpoints. Wait for it to end or choose another --output-dir (if that run is gone, "
                        f"delete {self.path}).") from None
                logger.warning("Taking over the stale lock %s (%s).", self.path,
                               f"pid {holder.get('pid')} is gone" if holder else "unreadable")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as file:
                json.dump(mine, file)
            return

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        holder = self.holder()
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)


def lock_output_dir(accelerator: Accelerator, out: Path) -> None:
    """The main process takes the output folder's lock; every process raises the same error when it cannot."""
    lock, problem = OutputLock(out), None
    if accelerator.is_main_process:
        try:
            lock.acquire()
            atexit.register(lock.release)
        except ValueError as error:
            problem = str(error)
    if accelerator.num_processes > 1:
        problem = broadcast_object_list([problem])[0]
    if problem:
        raise ValueError(problem)


def end_run(accelerator: Accelerator, out: Path) -> None:
    """Wait for every process, end the trackers and release the output folder."""
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if accelerator.is_main_process:
        OutputLock(out).release()


def start_run(accelerator: Accelerator, loop: LoopConfig, project: str, record: dict, *states) -> TrainState:
    """Take the output folder, register the run's progress (and `states`, e.g. a usage monitor) for checkpoints,
    resume if asked, write `record` (the run's config) to `train_config.json` and start the trackers; returns the
    progress."""
    out = Path(loop.output_dir)
    lock_output_dir(accelerator, out)
    state = TrainState()
    accelerator.register_for_checkpointing(state, *states)
    if loop.resume:
        resume_latest(accelerator, out / "checkpoints", state)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(record, indent=2))
    accelerator.init_trackers(project, config=flat_scalars(record))
    return state


@dataclass
class Run:
    """A run in progress: the accelerator, the loop's config, progress, data, schedule and the models trained
    together (`accelerate.accumulate` takes them). `steps` is the loop; the trainer's loop body logs, evaluates and
    checkpoints with `due`, `log`, `paused` and `checkpoint`."""

    accelerator: Accelerator
    loop: LoopConfig
    state: TrainState
    loader: torch.utils.data.DataLoader
    dataset: object  # has set_epoch(epoch)
    schedule: LearningRate
    models: tuple

    def __post_init__(self) -> None:
        self.checkpoints = Path(self.loop.output_dir) / "checkpoints"
        self.start_step = self.state.step
        stop_after = self.loop.stop_after
        self.stop_at = self.schedule.total if stop_after is None else min(self.schedule.total, self.start_step + stop_after)
        self.lr = self.schedule.set(self.state.step)
        self._tick = time.perf_counter()
        self._bar = None

    @property
    def total(self) -> int:
        """Optimizer steps of the whole run (`max_steps`, or the epochs')."""
        return self.schedule.total

    def steps(self, step: Callable[[object, int], dict]) -> Iterator[tuple[int, dict]]:
        """The run's optimizer steps, from where `state` stands to `max_steps` / `stop_after`: runs
        `step(batch, step_index)` on each micro-batch inside `accelerator.accumulate(*models)` (forward, backward,
        optimizer steps; it returns its logs) and, once gradients sync, counts the step, moves the learning rate on
        and yields `(steps taken, logs)`. After the last step every process waits for the others."""
        from tqdm.auto import tqdm

        accelerator, state = self.accelerator, self.state
        self._bar = tqdm(total=self.total, initial=state.step, disable=not accelerator.is_main_process, desc="training")
        self._tick = time.perf_counter()
        for model in self.models:
            model.train()
        try:
            for batch in training_batches(accelerator, self.loader, self.dataset, state, self.stop_at):
                with accelerator.accumulate(*self.models):
                    logs = step(batch, state.step)
                if not accelerator.sync_gradients:
                    continue
                state.step += 1
                self.lr = self.schedule.set(state.step)
                self._bar.update(1)
                yield state.step, logs
                if state.step >= self.stop_at:
                    break
        finally:  # the bar's line ends before any error message
            self._bar.close()
        accelerator.wait_for_everyone()
        if state.step < self.total:
            logger.info("Stopped at step %d of %d; continue with --resume.", state.step, self.total)

    def due(self, every: int) -> bool:
        """Whether the step just taken is a multiple of `every` or the last of this run (log, checkpoint)."""
        return self.state.step % every == 0 or self.state.step == self.stop_at

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time of the block (an evaluation) out of the logged s/step."""
        paused = time.perf_counter()
        try:
            yield
        finally:
            self._tick += time.perf_counter() - paused

    def log(self, metrics: dict, message: str) -> None:
        """Log `metrics` (with the learning rate, s/step and epoch) to the trackers, and `message` to the bar and
        the log."""
        step_time = (time.perf_counter() - self._tick) / max(1, self.state.step - self.start_step)
        self.accelerator.log({**metrics, "lr": self.lr, "step_time": step_time, "epoch": self.state.epoch},
                             step=self.state.step)
        if self._bar is not None:
            self._bar.set_postfix_str(message)
        logger.info("step %d  %s  lr %.2e  %.3f s/step", self.state.step, message, self.lr, step_time)

    def checkpoint(self) -> Path:
        """An atomic checkpoint of everything registered with the accelerator, at the current step."""
        return save_checkpoint(self.accelerator, self.checkpoints, self.state.step, self.loop.checkpoints_total_limit,
                               self.state)
