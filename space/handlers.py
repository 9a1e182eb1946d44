"""What the Space computes, as plain functions (tested without a browser): reconstructions, token maps,
codebook-usage heatmaps, histograms and per-level usage tables. `app.py` only lays them out."""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fvq_hf import FVQModel, FVQPipeline
from fvq_hf.data.image_io import ImageReadError, load_image, prepare_images, tensor_to_pil
from fvq_hf.evaluation.evaluate import format_level_table
from fvq_hf.evaluation.metrics import ImageQuality
from fvq_hf.evaluation.usage import CodeCounter, UsageFileError, find_usage_files
from fvq_hf.evaluation.usage import load_usage_file as read_usage_file

HERE = Path(__file__).resolve().parent
EXAMPLES = sorted((HERE / "examples").glob("*.jpg"))
# Where the README's main job leaves its model, relative to the repository root or the working directory.
DEFAULT_MODELS = (HERE.parent / "outputs" / "fvq-cpu-4k" / "model", Path("outputs/fvq-cpu-4k/model"))
ORIGINAL_SUFFIXES = (".pt", ".pth", ".safetensors")  # checkpoints of the original FVQ / LlamaGen code
NO_MODEL = ("**No model loaded.** Set `FVQ_MODEL` to a hub id or folder (or an original FVQ / LlamaGen `.pt` file), "
            "type one above, or train the small model "
            "first: `fvq-train --config hub_configs/fvq-cpu-4k --data builtin --output-dir outputs/fvq-cpu-4k "
            "--max-steps 600 --lr 3e-4`.")


class SpaceError(ValueError):
    """A problem to show in the page (not a traceback)."""


def default_model() -> str | None:
    """`FVQ_MODEL`, else the main job's output if it exists, else None."""
    if os.environ.get("FVQ_MODEL"):
        return os.environ["FVQ_MODEL"]
    return next((str(p) for p in DEFAULT_MODELS if (p / "config.json").exists()), None)


def get_pipeline(name: str | None) -> FVQPipeline:
    """Load the model named by a hub id, a folder, or an original checkpoint file (converted on the fly);
    a SpaceError that says how to get one otherwise. The last few models stay loaded."""
    if not name:
        raise SpaceError(NO_MODEL)
    return _load_pipeline(name)


@functools.lru_cache(maxsize=2)
def _load_pipeline(name: str) -> FVQPipeline:
    try:
        original = name.endswith(ORIGINAL_SUFFIXES) and Path(name).is_file()
        model = FVQModel.from_original_checkpoint(name) if original else FVQModel.from_pretrained(name)
    except (OSError, ValueError) as error:
        raise SpaceError(f"Cannot load model `{name}`: {error}") from error
    return FVQPipeline(vq=model.eval())


def read_images(paths: Sequence[str | Path] | None) -> tuple[list[tuple[str, Image.Image]], list[str]]:
    """Readable images (any mode: converted to RGB) and a message for each file that is not one."""
    images, problems = [], []
    for path in paths or []:
        try:
            images.append((Path(path).name, load_image(path)))
        except (ImageReadError, FileNotFoundError) as error:
            problems.append(f"`{Path(path).name}`: {error}")
    return images, problems


def code_colors(indices: np.ndarray, codebook_size: int) -> np.ndarray:
    """`(h, w)` code ids -> `(h, w, 3)` uint8, a fixed colour per id (golden-ratio hues, so neighbours differ)."""
    hue = (indices.astype(np.float64) * 0.6180339887) % 1.0
    value = 0.55 + 0.45 * (indices.astype(np.float64) / max(codebook_size - 1, 1))
    return _hsv_to_rgb(hue, np.full_like(hue, 0.85), value)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(table):
        mask = i == k
        rgb[mask] = np.stack([r[mask], g[mask], b[mask]], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def heat(values: np.ndarray, dead: np.ndarray | None = None) -> np.ndarray:
    """Values in [0, 1] -> a dark-blue-to-yellow ramp; `dead` cells in red."""
    v = np.clip(values, 0, 1)[..., None]
    low, mid, high = np.array([20, 24, 82]), np.array([33, 145, 140]), np.array([253, 231, 37])
    rgb = np.where(v < 0.5, low + (mid - low) * (v / 0.5), mid + (high - mid) * ((v - 0.5) / 0.5))
    if dead is not None:
        rgb[dead] = (220, 30, 30)
    return rgb.round().astype(np.uint8)


def upscale(array: np.ndarray, size: int) -> Image.Image:
    """A small map shown at `size` px on its longer side, with crisp cells."""
    image = Image.fromarray(array)
    scale = max(1, size // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


MAX_SIDE = 512  # the default reconstruction size is the image's short side, capped here (CPU time grows with it)


def reconstruction_size(image: Image.Image, factor: int, requested: int | None = None) -> int:
    """The square size an image is reconstructed at: `requested`, else its short side capped at `MAX_SIDE`,
    rounded down to a multiple of the model's downsample factor (at least one token)."""
    size = int(requested) if requested else min(image.width, image.height, MAX_SIDE)
    return max(factor, size // factor * factor)


def side_by_side(original: Image.Image, reconstruction: Image.Image, gap: int = 8) -> Image.Image:
    """Original and reconstruction next to each other at their own size (small ones enlarged to 256 px, nearest)."""
    scale = max(1, 256 // original.height)
    original, reconstruction = (im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
                                for im in (original, reconstruction))
    canvas = Image.new("RGB", (original.width * 2 + gap, original.height), (255, 255, 255))
    canvas.paste(original, (0, 0))
    canvas.paste(reconstruction, (original.width + gap, 0))
    return canvas


def contact_sheet(rows: Sequence[Image.Image], gap: int = 8) -> Image.Image:
    """Side-by-side rows stacked top to bottom on white, each at its own size: one image the page shows whole."""
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + gap * (len(rows) - 1)),
                      (255, 255, 255))
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height + gap
    return sheet


def saved_usage(model_name: str | None, codebook_size: int) -> tuple[CodeCounter | None, str]:
    """The model's saved usage counts (`fvq-eval --save-usage`, or fvq-train's `usage-*.json`) from its folder or the
    training run around it, and a sentence saying where they come from (or that there are none)."""
    folder = Path(model_name) if model_name and Path(model_name).is_dir() else None
    candidates = find_usage_files(folder) + find_usage_files(folder.parent) if folder else []
    for path in candidates:
        try:
            counter = load_usage_file(path, codebook_size)
        except SpaceError:
            continue
        return counter, (f"Rarity is measured against the model's saved usage counts (`{path.name}`, "
                         f"{counter.num_tokens:,} tokens, {counter.num_tokens / codebook_size:.1f} per code).")
    return None, ("No saved usage counts next to this model (write them with `fvq-eval --model M --data D "
                  "--save-usage M/usage.json`): rarity is measured within these images only.")


def reconstruct(paths: Sequence[str | Path] | None, model_name: str | None, resolution: int | None = None):
    """Uploaded files -> (contact sheet of every original | reconstruction, the first original, its reconstruction,
    per-image metrics rows, token maps, rarity maps, summary markdown). Each image is reconstructed at
    `reconstruction_size`."""
    pipe = get_pipeline(model_name)
    images, problems = read_images(paths)
    if not images:
        raise SpaceError("No readable image. " + " ".join(problems) if problems else "Upload at least one image.")
    codebook_size, factor = pipe.vq.codebook_size, pipe.vq.downsample_factor
    outputs = []
    for name, image in images:
        size = pipe.vq.fixed_image_size or reconstruction_size(image, factor, resolution)
        inputs = prepare_images(image, size)
        with torch.no_grad():
            outputs.append((name, size, inputs, pipe(inputs, output_type="pt", resolution=size)))
    counter = CodeCounter(codebook_size)
    for *_, output in outputs:
        counter.update(output.indices)
    reference, reference_note = saved_usage(model_name, codebook_size)
    reference = reference or counter
    frequency = reference.counts.double() / max(reference.num_tokens, 1)
    sides, pairs, rows, token_maps, rarity_maps = [], [], [], [], []
    for name, size, inputs, output in outputs:
        quality = ImageQuality()
        quality.update(inputs, output.images)
        metrics = quality.compute()
        original, recon = tensor_to_pil(torch.cat([inputs, output.images]))
        pairs.append((original, recon))
        sides.append(side_by_side(original, recon))
        usage = output.usage[0]
        rows.append([name, size, round(metrics["psnr"], 2), round(metrics["ssim"], 4), usage["distinct_codes"],
                     round(usage["perplexity"], 1)])
        # A residual (multi-scale) tokenizer has one map per depth (scale).
        for label, batch_map in pipe.vq.quantizer.level_maps(output.indices[:1]):
            level, label = batch_map[0], f", {label}" if label else ""
            token_maps.append((upscale(code_colors(level.numpy(), codebook_size), 256), f"{name}: code ids{label}"))
            # Never-seen codes are as rare as a code seen once.
            rarity = -np.log(frequency[level].clamp_min(1 / max(reference.num_tokens, 1)).numpy())
            rarity_maps.append((upscale(heat(rarity / max(math.log(max(reference.num_tokens, 2)), 1e-9)), 256),
                                f"{name}: rarity of each code{label} (bright = rare)"))
    summary = (f"**{counter.usage * codebook_size:,.0f}** distinct codes of {codebook_size:,} "
               f"({counter.usage:.2%}) over {counter.num_tokens:,} tokens ({counter.num_tokens / codebook_size:.2f} "
               f"per code); perplexity **{counter.perplexity:,.1f}**.\n\n{reference_note}")
    if problems:
        summary += "\n\nSkipped: " + "; ".join(problems)
    return contact_sheet(sides), pairs[0][0], pairs[0][1], rows, token_maps, rarity_maps, summary


def load_usage_file(path: str | Path, codebook_size: int) -> CodeCounter:
    """Per-code counts written by `fvq-eval --save-usage` or `fvq-train` (checked against the model's K)."""
    try:
        return read_usage_file(path, codebook_size)
    except UsageFileError as error:
        raise SpaceError(str(error)) from error


def count_codes(pipe: FVQPipeline, images: Iterable[Image.Image], progress=None) -> CodeCounter:
    """Encode images one by one (with a progress callback) and count every token (and each level's, for a residual
    or multi-scale tokenizer)."""
    quantizer = pipe.vq.quantizer
    counter = CodeCounter.for_ids(quantizer.ids, pipe.vq.codebook_size)
    images = list(images)
    iterator = progress.tqdm(images, desc="encoding") if progress is not None else images
    for image in iterator:
        with torch.no_grad():
            indices = pipe(image, output_type="pt").indices
        counter.update(indices, quantizer.split_levels(indices))
    return counter


def usage_heatmap(counter: CodeCounter, grid: tuple[int, int]) -> Image.Image:
    """The codebook as its `(h, w)` code grid (`FVQModel.codebook_grid`): log-scaled use per code, dead codes in red."""
    h, w = grid
    counts = counter.counts.numpy().reshape(h, w).astype(np.float64)
    scaled = np.log1p(counts) / max(np.log1p(counts.max()), 1e-9)
    return upscale(heat(scaled, dead=counts == 0), 512)


def frequency_histogram(counter: CodeCounter) -> Image.Image:
    """Histogram of how many codes were used how often (log x), as a PNG image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = counter.counts.numpy()
    used = counts[counts > 0]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    if used.size:
        bins = np.unique(np.logspace(0, np.log10(max(used.max(), 1)) + 1e-9, 30).astype(int))
        ax.hist(used, bins=bins if bins.size > 1 else 10, color="#21918c")
        ax.set_xscale("log")
    ax.set_xlabel("uses of a code")
    ax.set_ylabel("codes")
    ax.set_title(f"{int((counts == 0).sum()):,} dead codes of {counts.size:,}")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def codebook_usage(source: str, paths: Sequence[str | Path] | None, usage_file: str | Path | None,
                   model_name: str | None, progress=None):
    """(heatmap, histogram, summary) for the uploaded images, the bundled examples, or a usage file. The heatmap and
    histogram are of the pooled counts; where there are counts per level (a residual or multi-scale tokenizer, or a
    usage file that holds them), the summary adds a table of each level's usage, perplexity and tokens per code."""
    pipe = get_pipeline(model_name)
    problems: list[str] = []
    if source == "usage file":
        if not usage_file:
            raise SpaceError("Choose a usage file written by `fvq-eval --save-usage`.")
        counter = load_usage_file(usage_file, pipe.vq.codebook_size)
    else:
        chosen = EXAMPLES if source == "examples" else paths
        images, problems = read_images(chosen)
        if not images:
            raise SpaceError("No readable image. " + " ".join(problems) if problems else "Upload at least one image.")
        counter = count_codes(pipe, (image for _, image in images), progress)
    summary = (f"{counter.usage:.2%} of {counter.codebook_size:,} codes used ({int((counter.counts > 0).sum()):,}), "
               f"perplexity {counter.perplexity:,.1f}, {counter.num_tokens:,} tokens "
               f"({counter.num_tokens / counter.codebook_size:.2f} per code"
               f"{': too few to judge dead codes' if counter.num_tokens < 10 * counter.codebook_size else ''}).")
    levels = format_level_table({source: counter.summary()})  # "" without levels
    if levels:
        summary += f"\n\nPer {counter.level_name or 'level'}:\n\n{levels}"
    if problems:
        summary += "\n\nSkipped: " + "; ".join(problems)
    return usage_heatmap(counter, pipe.vq.codebook_grid), frequency_histogram(counter), summary
