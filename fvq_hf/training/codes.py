"""Encoding a data set with a trained FVQModel into a codes folder (read by `data.tokens.TokenDataset`); its
command is `fvq-extract-codes` (`fvq_hf.cli.extract_codes`)."""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..bridges import NO_BRIDGE
from ..data.codes_folder import CodesMeta, is_codes_folder, read_meta, shard_name, write_meta, write_shard
from ..data.image_io import pil_to_tensor, resize_center_crop
from ..data.sources import RandomCrops, class_labels, open_source, readable
from ..data.spec import DataSpec
from ..data.streams import open_stream
from ..data.views import StreamViews, collate_views
from ..tokenizer import FVQModel

logger = logging.getLogger(__name__)


class ExtractionImages(Dataset):
    """Item i: `(image (3, R, R) in [-1, 1], label)`, or None for an unreadable file (skipped, not relabelled).

    Without `random_crops`: one centre crop per image. With it: that many random multi-scale crops per image
    (`RandomCrops` without its flip; the flip is added explicitly as a second view).
    """

    def __init__(self, source, labels: list[int], resolution: int, random_crops: int | None, seed: int) -> None:
        self.source, self.labels, self.resolution = source, labels, resolution
        self.crops = RandomCrops(source, resolution, random_crops * len(source), seed, flip=False) if random_crops \
            else None

    def __len__(self) -> int:
        return len(self.crops) if self.crops else len(self.source)

    def __getitem__(self, index: int):
        image = readable(self.source, index % len(self.source))
        if image is None:
            return None
        tensor = self.crops.crop(image, index) if self.crops else centre_crop(image, self.resolution)
        return tensor, self.labels[index % len(self.source)]


def collate_readable(items):
    items = [item for item in items if item is not None]
    if not items:
        return None
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


def collate_streamed(items):
    """`StreamViews` items -> `(images, labels)` as `collate_readable` gives them."""
    batch = collate_views(items)
    return None if batch is None else (batch[0], torch.tensor(batch[1]))


def centre_crop(image, resolution: int) -> torch.Tensor:
    """The view of an image without `--random-crops`: its centre crop, `(3, R, R)` in [-1, 1]."""
    return pil_to_tensor(resize_center_crop(image, resolution))


def stream_classes(stream, label_column: str | None, num_classes: int | None,
                   main_process: bool = True) -> tuple[str | None, list[str]]:
    """A stream's `(label column, class names)`: `label_column` or the first `ClassLabel` the stream declares, with
    its names; a column of bare integers takes `num_classes` ("0".."C-1"; required, since a split need not hold
    every class); without a column, one class."""
    import datasets

    features = stream.features or {}
    column = label_column or next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
    if column is None:
        if main_process:
            logger.warning("A stream without a label column: every image gets class 0 (unconditional).")
        return None, ["image"]
    if features and column not in features:
        raise ValueError(f"--label-column {column!r} is not a column of the stream ({list(features)}).")
    feature = features.get(column)
    if isinstance(feature, datasets.ClassLabel):
        if num_classes is not None and num_classes != feature.num_classes:
            raise ValueError(f"--num-classes {num_classes}, but --label-column {column!r} is a ClassLabel of "
                             f"{feature.num_classes} classes.")
        return column, list(feature.names)
    if num_classes is None:
        raise ValueError(f"--label-column {column!r} of a stream holds integers: pass --num-classes (the number of "
                         "classes; a split need not hold every one, so it cannot be read off the data).")
    if num_classes < 1:
        raise ValueError(f"--num-classes must be >= 1, got {num_classes}.")
    return column, [str(i) for i in range(num_classes)]


@torch.no_grad()
def extract_codes(tokenizer: str, data: str | DataSpec, output_dir: str | Path, *, split: str = "train",
                  resolution: int | None = None, random_crops: int | None = None, flip: bool = True,
                  batch_size: int = 64, num_workers: int = 2, seed: int = 0, image_column: str | None = None,
                  label_column: str | None = None, overwrite: bool = False, latents: bool = False,
                  streaming: bool = False, num_classes: int | None = None) -> CodesMeta:
    """Encode `data` with the tokenizer into a codes folder (`data.codes_folder`); returns its meta. With `latents`
    the folder also holds each view's pre-quantization latents (`FVQModel.encode(x).latents`), for
    `fvq-train-latent`. Streamed data (tar shards, or `streaming` with `hf:<name>`) is read once, each process its
    share; its classes are `stream_classes`'."""
    from accelerate import Accelerator

    accelerator = Accelerator()
    out = Path(output_dir)
    if is_codes_folder(out) and not overwrite:
        raise FileExistsError(f"{out} already holds extracted codes; choose another --output-dir or pass --overwrite.")
    if random_crops is not None and random_crops < 1:
        raise ValueError("--random-crops must be >= 1.")
    model = FVQModel.from_pretrained(tokenizer)
    model.require_one_code_per_position("code files and the generator")
    if model.config.bridge_type != NO_BRIDGE:
        model = model.fold_bridge()  # the same indices, without the bridge's cost
    model = model.eval().to(accelerator.device)
    resolution = resolution or model.config.sample_size
    if resolution % model.downsample_factor:
        raise ValueError(f"--resolution {resolution} is not a multiple of the downsample factor {model.downsample_factor}.")
    data = DataSpec.parse(data, streaming)
    if data.streaming:  # tar shards or a streamed Hub dataset: each process reads its share (datasets' split)
        stream, column = open_stream(data, split, image_column)
        label_column, class_names = stream_classes(stream, label_column, num_classes, accelerator.is_main_process)
        views = StreamViews(stream, column, functools.partial(centre_crop, resolution=resolution), resolution,
                            label_column, random_crops, seed, accelerator.process_index, accelerator.num_processes)
        loader = DataLoader(views, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_streamed)
    else:
        source = open_source(data, split, image_column)
        labels, class_names = class_labels(source, label_column)
        images = ExtractionImages(source, labels, resolution, random_crops, seed)
        share = torch.utils.data.Subset(images, range(accelerator.process_index, len(images),
                                                      accelerator.num_processes))
        loader = DataLoader(share, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_readable)
    if accelerator.is_main_process:
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    h, w = model.token_grid_size(resolution, resolution)
    meta = CodesMeta(
        tokenizer=str(Path(tokenizer).resolve()) if Path(tokenizer).is_dir() else str(tokenizer),
        codebook_size=model.codebook_size, token_grid_size=[h, w], resolution=resolution,
        num_classes=len(class_names), class_names=class_names, views=["image", "hflip"] if flip else ["image"],
        data=str(data), split=split, random_crops=random_crops, seed=seed,
        shards=[shard_name(i) for i in range(accelerator.num_processes)],
        latent_channels=model.config.vq_embed_dim if latents else None)
    codes, sample_labels, sample_latents = [], [], []
    from tqdm.auto import tqdm

    failure = None
    try:
        for batch in tqdm(loader, desc="extracting codes", disable=not accelerator.is_local_main_process):
            if batch is None:
                continue
            pixels, batch_labels = batch
            if batch_labels.numel() and not 0 <= int(batch_labels.min()) <= int(batch_labels.max()) < meta.num_classes:
                raise ValueError(f"Class labels {int(batch_labels.min())}..{int(batch_labels.max())} of --label-column "
                                 f"{label_column!r} lie outside [0, {meta.num_classes}) (the classes: "
                                 f"{', '.join(meta.class_names[:5])}{'...' if meta.num_classes > 5 else ''}).")
            pixels = pixels.to(accelerator.device)
            views = [pixels, pixels.flip(-1)] if flip else [pixels]
            encoded = [model.encode(v) for v in views]
            codes.append(torch.stack([e.indices for e in encoded], dim=1).cpu().numpy().astype(meta.id_dtype))
            if latents:
                sample_latents.append(torch.stack([e.latents for e in encoded], dim=1).float().cpu().numpy())
            sample_labels.append(batch_labels.numpy())
    except ValueError as error:  # bad data: every process stops (the others would wait for this one forever)
        failure = error
    stopped = accelerator.gather(torch.tensor([failure is not None], device=accelerator.device))
    if failure is not None:
        raise failure
    if bool(stopped.any()):
        raise ValueError("Another process stopped the extraction on bad data (its error is above).")
    empty_latents = np.zeros((0, len(meta.views), meta.latent_channels or 0, h, w), np.float32)
    write_shard(out, accelerator.process_index,
                np.concatenate(codes) if codes else np.zeros((0, len(meta.views), h, w), meta.id_dtype),
                np.concatenate(sample_labels) if sample_labels else np.zeros(0, np.int64),
                (np.concatenate(sample_latents) if sample_latents else empty_latents) if latents else None)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_meta(out, meta)
        logger.info("Wrote %d samples x %d views of %dx%d tokens (%d classes) to %s.", meta.num_samples,
                    len(meta.views), h, w, meta.num_classes, out)
    accelerator.wait_for_everyone()
    return read_meta(out)
