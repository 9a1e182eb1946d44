"""Images read once each, with a group and an identity (what a codebook build and a code extraction encode):
map-style data (builtin photos, image folders, `datasets` datasets) split over processes, or streamed data (tar
shards, `--streaming`) split by `datasets`.

An item is `(pixels (3, R, R) in [-1, 1], group, identity)`. The group is the image's class (`class_labels` of the
source, or a stream's label column) or 0 for one global group; the identity (a tuple of ints) names the view (image
index or stream key, and crop) so that its sample keys (`sampling.sample_keys`) do not depend on which process reads
it. A view is the encoder's centre crop (`prepare`, e.g. `FeatureEncoder.prepare`) or, with `random_crops`, one of that many random
multi-scale crops of the image (`data.sources.random_crop`, no flip), each drawn from (seed, identity).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from .image_io import ImageReadError
from .sources import random_crop, readable
from .streams import example_image

logger = logging.getLogger(__name__)

Prepare = Callable[[Image.Image], torch.Tensor]


def text_identity(text: str) -> int:
    """A stable 63-bit integer for an item named by text (a webdataset key): its part of an identity."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def view(image: Image.Image, crop: int | None, prepare: Prepare, resolution: int, seed: int,
         identity: tuple[int, ...]) -> torch.Tensor:
    """The centre crop of `image` (`crop` None) or its random crop number `crop`, `(3, R, R)` in [-1, 1]."""
    if crop is None:
        return prepare(image)
    return random_crop(image, resolution, np.random.default_rng((seed, *identity)), flip=False)


class SourceViews(torch.utils.data.Dataset):
    """Views of a map-style source: item j is image j % N (N images), crop j // N; identity `(image, crop)`. An
    unreadable image gives None (skipped, logged by name)."""

    def __init__(self, source, groups: list[int], prepare: Prepare, resolution: int,
                 random_crops: int | None = None, seed: int = 0) -> None:
        self.source, self.groups, self.prepare, self.resolution = source, groups, prepare, resolution
        self.random_crops, self.seed = random_crops, seed

    def __len__(self) -> int:
        return len(self.source) * (self.random_crops or 1)

    def __getitem__(self, index: int):
        image_index, crop = index % len(self.source), index // len(self.source)
        image = readable(self.source, image_index)
        if image is None:
            return None
        identity = (image_index, crop)
        pixels = view(image, crop if self.random_crops else None, self.prepare, self.resolution, self.seed, identity)
        return pixels, self.groups[image_index], identity


class StreamViews(torch.utils.data.IterableDataset):
    """Views of this process's share of a stream (`split_dataset_by_node`); the identity of an example is its
    `__url__` and `__key__` (webdataset shards), hashed, so that it does not depend on the process count. A stream
    without keys (a Hub dataset) names an example by (rank, DataLoader worker, position): its samples then depend
    on the number of processes and workers."""

    def __init__(self, stream, column: str, prepare: Prepare, resolution: int, label_column: str | None = None,
                 random_crops: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.stream, self.column, self.prepare, self.resolution = stream, column, prepare, resolution
        self.label_column, self.random_crops, self.seed = label_column, random_crops, seed
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int, tuple[int, ...]]]:
        from datasets.distributed import split_dataset_by_node

        worker = torch.utils.data.get_worker_info()
        stream = split_dataset_by_node(self.stream, rank=self.rank, world_size=self.world_size)
        for position, example in enumerate(stream):
            key = example.get("__key__")
            name = f"{example.get('__url__', '')}/{key}" if key is not None else None
            example_id = (text_identity(name),) if name else (self.rank, worker.id if worker else 0, position)
            try:
                image = example_image(example[self.column], name or str(position))
            except ImageReadError as error:
                logger.warning("Skipping unreadable image: %s", error)
                continue
            group = self.label(example)
            for crop in range(self.random_crops or 1):
                identity = (*example_id, crop)
                yield view(image, crop if self.random_crops else None, self.prepare, self.resolution, self.seed,
                           identity), group, identity

    def label(self, example: dict) -> int:
        if self.label_column is None:
            return 0
        if self.label_column not in example:
            raise ValueError(f"--label-column {self.label_column!r} is not a column of the stream ({list(example)}).")
        value = example[self.label_column]
        try:
            return int(value.decode() if isinstance(value, bytes) else value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"--label-column {self.label_column!r} holds {value!r}, not an integer class.") from error


def collate_views(items):
    """A batch of views -> `(pixels (n, 3, R, R), groups [n], identities [n])`, unreadable ones dropped; None if
    none is left."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    return torch.stack([pixels for pixels, _, _ in items]), [g for _, g, _ in items], [i for _, _, i in items]
