"""Codes folders (`codes_folder`, written by `fvq-extract-codes`) read back as a data set of token grids for
transformer training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .codes_folder import read_meta, read_shard


class TokenDataset(Dataset):
    """The token grids of a codes folder, for transformer training: item i -> `(tokens (h*w,) long, label long)`.

    By default one view of sample i is drawn per (seed, epoch, i) (so resumed runs see the same data); with
    `all_views` every view is its own item (for evaluation). Ids, labels and shapes are checked on load; `meta` is
    the folder's `CodesMeta`.
    """

    def __init__(self, folder: str | Path, seed: int = 0, all_views: bool = False) -> None:
        self.folder, self.seed, self.epoch, self.all_views = Path(folder), seed, 0, all_views
        self.meta = read_meta(self.folder)
        self.num_views = len(self.meta.views)
        shards = [read_shard(self.folder, self.meta, shard) for shard in self.meta.shards]
        self.codes, self.labels = [codes for codes, _ in shards], [labels for _, labels in shards]
        self.offsets = np.cumsum([0] + [len(c) for c in self.codes])
        if self.offsets[-1] == 0:
            raise ValueError(f"{self.folder} holds no samples.")

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    @property
    def codebook_size(self) -> int:
        return self.meta.codebook_size

    @property
    def token_grid_size(self) -> tuple[int, int]:
        return tuple(self.meta.token_grid_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.offsets[-1]) * (self.num_views if self.all_views else 1)

    def locate(self, index: int) -> tuple[int, int, int]:
        """Item `index` -> `(shard, row, view)`: every view its own item with `all_views`, else one view drawn per
        (seed, epoch, sample)."""
        if self.all_views:
            index, view = divmod(index, self.num_views)
        else:
            view = int(np.random.default_rng((self.seed, self.epoch, index)).integers(self.num_views))
        shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return shard, int(index - self.offsets[shard]), view

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        shard, row, view = self.locate(index)
        tokens = torch.from_numpy(self.codes[shard][row, view].astype(np.int64)).reshape(-1)
        return tokens, torch.tensor(int(self.labels[shard][row]))
