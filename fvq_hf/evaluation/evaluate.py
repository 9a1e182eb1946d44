"""Measuring a tokenizer over all tokens of a data set (usage, perplexity, PSNR, SSIM, LPIPS / rFID where their
weights are given); its command is `fvq-eval` (`fvq_hf.cli.eval`)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data.sources import EvalImages
from ..hub.model_card import format_metric
from ..losses.lpips import LPIPS, find_lpips_weights
from ..tokenizer import FVQModel
from .metrics import CodeCounter, ImageQuality

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


def _fid_metric(inception_weights: str | None, device):
    """torchmetrics' FID with the FID Inception weights, or (None, why not)."""
    if not inception_weights or not Path(inception_weights).is_file():
        return None, ("rFID unavailable: pass --inception-weights PATH to the FID Inception weights "
                      "(pt_inception-2015-12-05-6726825d.pth); they cannot be downloaded here.")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        fid = FrechetInceptionDistance(feature=2048, normalize=True,
                                       feature_extractor_weights_path=inception_weights)
    except (ImportError, ModuleNotFoundError) as error:
        return None, f"rFID unavailable: torchmetrics' FID needs torch-fidelity ({error})."
    return fid.to(device), ""


@torch.no_grad()
def evaluate(model: FVQModel, images: torch.utils.data.Dataset, batch_size: int = 32, lpips: LPIPS | None = None,
             fid=None, progress: bool = False) -> tuple[dict, CodeCounter]:
    """Tokenize and reconstruct every image; returns the metrics and the per-code counts (over every depth or
    scale of a residual or multi-scale tokenizer, whose usage at each level is also given, as `usage_by_depth`
    or `usage_by_scale`: a list, in the order of its levels)."""
    device = model.device
    counter = CodeCounter(model.codebook_size, device)
    level_name = model.quantizer.level_name
    by_level: list[CodeCounter] = []
    quality = ImageQuality(device)
    lpips_sum, seen = 0.0, 0
    loader = DataLoader(images, batch_size=batch_size, shuffle=False)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="evaluating", unit="batch", file=sys.stderr)
    for batch in loader:
        batch = batch.to(device)
        encoded = model.encode(batch)
        reconstruction = model.decode(encoded.latents).sample.float().clamp(-1, 1)
        counter.update(encoded.indices)
        if level_name:
            maps = model.quantizer.level_maps(encoded.indices)
            by_level = by_level or [CodeCounter(model.codebook_size, device) for _ in maps]
            for level_counter, (_, ids) in zip(by_level, maps):
                level_counter.update(ids)
        quality.update(batch, reconstruction)
        if lpips is not None:
            lpips_sum += float(lpips(reconstruction, batch).sum())
        if fid is not None:
            fid.update((batch + 1) / 2, real=True)
            fid.update((reconstruction + 1) / 2, real=False)
        seen += batch.shape[0]
    metrics: dict = {**counter.summary(), **quality.compute(), "num_images": seen}
    if level_name:
        metrics[f"usage_by_{level_name}"] = [level_counter.usage for level_counter in by_level]
    if lpips is not None:
        metrics["lpips"] = lpips_sum / max(seen, 1)
    if fid is not None:
        metrics["rfid"] = float(fid.compute())
    return metrics, counter


def format_table(rows: dict[str, dict]) -> str:
    """A markdown table of metrics, one row per evaluated data set."""
    columns = ["usage", "perplexity", "num_tokens", "tokens_per_code", "psnr", "ssim", "lpips", "rfid"]
    lines = ["| data | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for name, metrics in rows.items():
        cells = ["n/a" if metrics.get(c) is None else format_metric(c, metrics[c]) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_usage(path: str | Path, counter: CodeCounter, model: str, data: str) -> None:
    """The per-code counts as JSON (read by the Space's usage heatmap)."""
    Path(path).write_text(json.dumps({"model": model, "data": data, "codebook_size": counter.codebook_size,
                                      "counts": counter.counts.tolist()}))


def run_evaluation(model: FVQModel, data: str, *, model_name: str, resolution: int | None = None,
                   batch_size: int = 32, split: str = "validation", image_column: str | None = None,
                   limit: int | None = None, lpips_vgg: str | None = None, lpips_linear: str | None = None,
                   inception_weights: str | None = None, progress: bool = True) -> tuple[dict, CodeCounter]:
    """Evaluate `model` on a `--data` source, with every note on what could not be measured."""
    notes = []
    images = EvalImages(data, resolution or model.config.sample_size, split, image_column, limit)
    if images.skipped:
        notes.append(f"skipped {len(images.skipped)} unreadable files: {images.skipped}")
    vgg, linear, lpips_note = find_lpips_weights(lpips_vgg, lpips_linear)
    lpips = LPIPS.from_files(vgg, linear).to(model.device) if vgg else None
    if lpips_note:
        notes.append(lpips_note)
    fid, fid_note = _fid_metric(inception_weights, model.device)
    if fid_note:
        notes.append(fid_note)
    metrics, counter = evaluate(model, images, batch_size, lpips, fid, progress)
    metrics.update(model=model_name, data=data, resolution=images[0].shape[-1], notes=notes)
    if metrics["tokens_per_code"] < 10:
        notes.append(f"only {metrics['tokens_per_code']:.1f} tokens per code: too few to show that every code is "
                     "used (aim for tens per code); usage here is a lower bound.")
    for note in notes:
        logger.warning(note)
    return metrics, counter
