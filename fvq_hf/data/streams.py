"""Streamed training data, read as it is consumed, never loaded whole: a `datasets` dataset with
`streaming=True` (`--data hf:NAME --streaming`) or tar shards in the webdataset layout
(`--data 'shards/{000..099}.tar'`: one file per image, `KEY.jpg` / `KEY.png` ..., brace patterns expanded).

Both go through `datasets`' streaming `IterableDataset` (its `webdataset` builder for shards): the library this
package already reads datasets with, which shuffles shards and examples by epoch, splits shards over processes
(`split_dataset_by_node`) and over DataLoader workers by itself; the `webdataset` package would add a second
reader for the same job. Each process reads its own shards (disjoint when the shard count divides by the
number of processes; otherwise every process reads all shards and keeps every world-size-th example).
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .image_io import ImageReadError, read_image, to_rgb
from .sources import random_crop
from .spec import DataSpec

logger = logging.getLogger(__name__)
SHUFFLE_BUFFER = 1000  # examples; datasets' default


def expand_shards(pattern: str) -> list[str]:
    """`'shards/{000..099}.tar'` -> the shard files, in order; every one must exist."""
    from braceexpand import braceexpand

    files = list(braceexpand(pattern))
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"--data {pattern!r}: {len(missing)} of {len(files)} shards do not exist "
                                f"(first: {missing[0]}).")
    return files


def broken_shards(files: list[str]) -> list[str]:
    """The shards among `files` that tarfile cannot read through, each with the reason."""
    broken = []
    for file in files:
        try:
            with tarfile.open(file) as tar:
                tar.getmembers()
        except (tarfile.TarError, OSError) as error:
            broken.append(f"{file} ({error})")
    return broken


def open_stream(data: str | DataSpec, split: str = "train", image_column: str | None = None):
    """Streamed `--data` (tar shards, or `hf:NAME[:split]` read with streaming) -> `(datasets.IterableDataset, image
    column)`, the column's images left as bytes (decoded per example, so that a broken one is skipped by name)."""
    import datasets

    spec = DataSpec.parse(data, streaming=True)  # a text that cannot be streamed is refused here
    if spec.kind == "shards":
        stream = datasets.load_dataset("webdataset", data_files={"train": expand_shards(spec.name)}, split="train",
                                       streaming=True)
    else:
        stream = datasets.load_dataset(spec.name, split=spec.split or split, streaming=True)
    if stream.features is None:  # some streams do not declare their columns: take --image-column on trust
        if not image_column:
            raise ValueError(f"--data {data} does not declare its columns; pass --image-column.")
        return stream, image_column
    columns = [c for c, f in stream.features.items() if isinstance(f, datasets.Image)]
    column = image_column or (columns[0] if columns else None)
    if column is None or column not in stream.features:
        raise ValueError(f"--data {data}: no image column {image_column or ''} among {list(stream.features)}; pass "
                         "--image-column.")
    return stream.cast_column(column, datasets.Image(decode=False)), column


def example_image(value, key: str) -> Image.Image:
    """A stream's image value (`{"bytes", "path"}` undecoded, or a PIL image) -> RGB; `ImageReadError` if broken."""
    if isinstance(value, Image.Image):
        return to_rgb(value)
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        return read_image(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"], key)
    raise ImageReadError(f"{key}: {type(value).__name__} is not an image.")


class StreamedCrops(torch.utils.data.IterableDataset):
    """Random crops (as `RandomCrops`) of this process's share of a stream, epoch by epoch.

    Epoch e shuffles the shards and a `SHUFFLE_BUFFER` of examples with seed `seed + e`, then keeps the share of
    process `rank` of `world_size`. The crop of the i-th example a DataLoader worker reads is drawn from
    (seed, epoch, rank, worker, i), so a pass is a pure function of the epoch for a fixed number of workers:
    a resumed run skips the batches it already took and sees the same ones after them.
    """

    def __init__(self, stream, column: str, resolution: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 source: str | DataSpec | None = None) -> None:
        self.stream, self.column, self.resolution, self.seed = stream, column, resolution, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        # The --data the stream was opened from: to name a broken shard
        self.source = DataSpec.parse(source, streaming=True) if source is not None else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def examples(self) -> Iterator[tuple[str, dict]]:
        """`(key, example)` of this process's share of the epoch (in a worker: that worker's part of it)."""
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(self.stream, rank=self.rank, world_size=self.world_size)
        stream = stream.shuffle(seed=self.seed, buffer_size=SHUFFLE_BUFFER)
        stream.set_epoch(self.epoch)
        try:
            for position, example in enumerate(stream):
                yield str(example.get("__key__", position)), example
        except tarfile.TarError as error:
            shards = self.source is not None and self.source.kind == "shards"
            broken = broken_shards(expand_shards(self.source.name)) if shards else []
            raise ValueError(f"A tar shard of the training data cannot be read ({error}): "
                             f"{', '.join(broken) or 'see the traceback (--debug)'}. A truncated "
                             "or corrupt shard: write it again, or leave it out of --data.") from error

    def __iter__(self) -> Iterator[torch.Tensor]:
        worker = torch.utils.data.get_worker_info()
        worker_id = worker.id if worker else 0
        for i, (key, example) in enumerate(self.examples()):
            try:
                image = example_image(example[self.column], key)
            except ImageReadError as error:
                logger.warning("Skipping unreadable image: %s", error)
                continue
            rng = np.random.default_rng((self.seed, self.epoch, self.rank, worker_id, i))
            yield random_crop(image, self.resolution, rng)
