"""Measuring a tokenizer over all tokens of a data set: every registered metric (`metrics.METRICS`: usage,
perplexity, PSNR, SSIM, and LPIPS / rFID where their weights are given), with the options of `options.py`; its
command is `fvq-eval` (`fvq_hf.cli.eval`), and `fvq-train` evaluates with it too."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from ..data.sources import EvalImages
from ..data.spec import DataSpec
from ..hub.reports import format_metric
from ..tokenizer import FVQModel
from .metrics import METRICS, CodebookUsage, ImageQuality, Metric, sum_over_processes
from .options import EvaluationOptions
from .usage import CodeCounter

logger = logging.getLogger(__name__)


def load_model(name_or_path: str, device: torch.device | str = "cpu") -> FVQModel:
    """A model folder, a training output folder (its `model/`), or a hub id."""
    path = Path(name_or_path)
    if path.is_dir() and not (path / "config.json").exists() and (path / "model" / "config.json").exists():
        path = path / "model"
    if path.exists():
        return FVQModel.from_pretrained(path).to(device).eval()
    try:
        return FVQModel.from_pretrained(name_or_path).to(device).eval()
    except OSError as error:
        raise FileNotFoundError(f"--model {name_or_path} is neither a local model folder nor a hub id that can be "
                                f"loaded ({error}).") from error


def build_metrics(model: FVQModel, options: EvaluationOptions) -> tuple[list[Metric], list[str]]:
    """Every registered metric that can be measured with `options` (its weight files), and a note for each that
    cannot."""
    metrics, notes = [], []
    for cls in METRICS.values():
        metric, note = cls.create(model, model.device, options)
        if metric is not None:
            metrics.append(metric)
        if note:
            notes.append(note)
    return metrics, notes


def process_shard(count: int) -> range:
    """The indices of `count` items that this process evaluates: every `world`-th one from its rank, so that the
    processes of a distributed run cover each item once (all of them without one)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return range(torch.distributed.get_rank(), count, torch.distributed.get_world_size())
    return range(count)


@torch.no_grad()
def evaluate(model: FVQModel, images: torch.utils.data.Dataset, batch_size: int = 32,
             metrics: list[Metric] | None = None, progress: bool = False) -> tuple[dict, CodeCounter]:
    """Tokenize and reconstruct every image; returns the values of `metrics` (default: usage, PSNR and SSIM) and
    the per-code counts: pooled over every token and, for a residual or multi-scale tokenizer, per level
    (`CodeCounter.levels`), as the usage file holds them.

    In a distributed run every process must call it: each measures its shard of the images (`process_shard`) and
    the metrics are combined over all of them (code counts summed), so every process returns the same results.
    """
    device = model.device
    metrics = metrics if metrics is not None else [CodebookUsage(model, device), ImageQuality(model, device)]
    usage = next((m for m in metrics if isinstance(m, CodebookUsage)), None)
    if usage is None:
        raise ValueError("The metrics must include CodebookUsage: the per-code counts are returned.")
    loader = DataLoader(Subset(images, process_shard(len(images))), batch_size=batch_size, shuffle=False)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="evaluating", unit="batch", file=sys.stderr)
    seen = 0
    for batch in loader:
        batch = batch.to(device)
        encoded = model.encode(batch)
        reconstruction = model.decode(encoded.quantized, force_not_quantize=True).sample.float().clamp(-1, 1)
        for metric in metrics:
            metric.update(batch, reconstruction, encoded.indices)
        seen += batch.shape[0]
    results: dict = {"num_images": int(sum_over_processes(torch.tensor(seen, device=device)))}
    for metric in metrics:
        metric.sync()
        results.update(metric.compute())
    return results, usage.counter


def format_table(rows: dict[str, dict]) -> str:
    """A markdown table of metrics, one row per evaluated data set (the columns: every report shown in tables)."""
    columns = [report.key for cls in METRICS.values() for report in cls.reports if report.table]
    return markdown_table(["data", *columns], [[name, *(_cell(metrics, c) for c in columns)]
                                               for name, metrics in rows.items()])


def format_level_table(rows: dict[str, dict]) -> str:
    """The usage figures per level (residual depth, scale) as a markdown table: one row per level of each evaluated
    data set whose results have `levels`; "" when none has."""
    rows = {name: metrics for name, metrics in rows.items() if metrics.get("levels")}
    if not rows:
        return ""
    columns = [report.key for report in CodebookUsage.reports if report.table]
    level_name = next(iter(rows.values())).get("level_name") or "level"
    return markdown_table(["data", level_name, *columns], [[name, level["label"], *(_cell(level, c) for c in columns)]
                                                           for name, metrics in rows.items()
                                                           for level in metrics["levels"]])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Cells as a markdown table under `header`."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _cell(metrics: dict, key: str) -> str:
    return "n/a" if metrics.get(key) is None else format_metric(key, metrics[key])


def run_evaluation(model: FVQModel, data: str | DataSpec, options: EvaluationOptions, *, model_name: str,
                   progress: bool = True, images: EvalImages | None = None) -> tuple[dict, CodeCounter]:
    """Evaluate `model` on a `--data` source with every registered metric, with a note on each that could not be
    measured. `images`: that source's `EvalImages`, when they are already built (a run evaluating it again)."""
    notes = []
    if images is None:
        images = EvalImages(data, options.resolution or model.config.sample_size, options.split, options.image_column,
                            options.limit)
    if images.skipped:
        notes.append(f"skipped {len(images.skipped)} unreadable files: {images.skipped}")
    metrics, missing = build_metrics(model, options)
    notes += missing
    results, counter = evaluate(model, images, options.batch_size, metrics, progress)
    results.update(model=model_name, data=str(data), resolution=images[0].shape[-1], notes=notes)
    if results["tokens_per_code"] < 10:
        notes.append(f"only {results['tokens_per_code']:.1f} tokens per code: too few to show that every code is "
                     "used (aim for tens per code); usage here is a lower bound.")
    for note in notes:
        logger.warning(note)
    return results, counter
