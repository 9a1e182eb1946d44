"""What the training tests share: a tiny run (as a `TrainConfig`, and as fvq-train flags for runs in other
processes), a saved model's weights, and a two-process launch."""

import dataclasses
from pathlib import Path

from fvq_hf import FVQModel
from fvq_hf.training import LoopConfig, LossConfig, TrainConfig

from ..helpers import run_in_two_processes, write_config, write_images


def tiny_config(tmp_path: Path, **changes) -> TrainConfig:
    """A seconds-long run: a tiny config on 8 small images, 3 batches an epoch, no evaluation, into tmp_path/run.
    `changes` set fields of the TrainConfig or of its LoopConfig / LossConfig, by name (`max_steps=4`)."""
    config = TrainConfig(config=str(write_config(tmp_path / "config")), data=str(write_images(tmp_path / "images", count=8)),
                         resolution=32, samples_per_epoch=12, eval_data=[],
                         loop=LoopConfig(output_dir=str(tmp_path / "run"), batch_size=4, lr=1e-3, num_workers=0,
                                         report_to="none", log_every=1))
    return with_changes(config, **changes)


def with_changes(run: TrainConfig, /, **changes) -> TrainConfig:
    """`run` with `changes` to its own fields or its loop's or loss's (each name belongs to one of them)."""
    parts = {"loop": LoopConfig, "loss": LossConfig}
    nested = {part: {k: changes.pop(k) for k in list(changes) if k in {f.name for f in dataclasses.fields(cls)}}
              for part, cls in parts.items()}
    return dataclasses.replace(run, **changes, **{part: dataclasses.replace(getattr(run, part), **values)
                                                  for part, values in nested.items()})


def train_args(tmp_path: Path, *extra: str) -> list[str]:
    """The fvq-train flags of `tiny_config`, for runs in other processes."""
    config = write_config(tmp_path / "config")
    data = write_images(tmp_path / "images", count=8)
    return ["--config", str(config), "--data", str(data), "--resolution", "32", "--batch-size", "4",
            "--samples-per-epoch", "12", "--lr", "1e-3", "--num-workers", "0", "--report-to", "none",
            "--log-every", "1", *extra]


def saved_weights(folder: Path) -> dict:
    return FVQModel.from_pretrained(folder).state_dict()


def run_two_processes(args: list[str]) -> list[list[str]]:
    """`ddp_worker.py` with `args` in two real processes over gloo; its `RANK ...` lines, split, by rank."""
    return run_in_two_processes(Path(__file__).with_name("ddp_worker.py"), args)
