"""Codes folders (written by `fvq-extract-codes`) read back as a data set of token grids for transformer training.

A codes folder holds, per process R, `codes-R.npy` `(N_R, A, h, w)` token ids with A views per sample and
`labels-R.npy` `(N_R,)`, then `meta.json` (tokenizer, codebook size, grid, classes, shards), written last.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

META_FILE = "meta.json"


class TokenDataset(Dataset):
    """The token grids of a codes folder, for transformer training: item i -> `(tokens (h*w,) long, label long)`.

    By default one view of sample i is drawn per (seed, epoch, i) (so resumed runs see the same data); with
    `all_views` every view is its own item (for evaluation). Ids, labels and shapes are checked on load.
    """

    def __init__(self, folder: str | Path, seed: int = 0, all_views: bool = False) -> None:
        self.folder, self.seed, self.epoch, self.all_views = Path(folder), seed, 0, all_views
        meta_path = self.folder / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.folder} has no {META_FILE}: it is not a codes folder, or its extraction was "
                                    "interrupted. Run fvq-extract-codes (again) to write it.")
        self.meta = json.loads(meta_path.read_text())
        h, w = self.meta["token_grid_size"]
        self.num_views = len(self.meta["views"])
        self.codes, self.labels = [], []
        for shard in self.meta["shards"]:
            try:
                codes = np.load(self.folder / f"codes-{shard}.npy", mmap_mode="r")
                labels = np.load(self.folder / f"labels-{shard}.npy", mmap_mode="r")
            except (OSError, ValueError) as error:
                raise ValueError(f"Shard {shard} of {self.folder} is missing or corrupt ({error}); extract again.") \
                    from error
            if codes.shape[1:] != (self.num_views, h, w) or len(labels) != len(codes):
                raise ValueError(f"Shard {shard} of {self.folder} holds codes {codes.shape} and {len(labels)} labels; "
                                 f"meta.json expects (N, {self.num_views}, {h}, {w}) and N labels. Extract again.")
            if len(codes) and (int(codes.max()) >= self.meta["codebook_size"] or int(labels.max()) >= self.num_classes
                               or int(labels.min()) < 0):
                raise ValueError(f"Shard {shard} of {self.folder} holds token ids or labels out of range (codebook "
                                 f"{self.meta['codebook_size']}, {self.num_classes} classes). Extract again.")
            self.codes.append(codes)
            self.labels.append(labels)
        self.offsets = np.cumsum([0] + [len(c) for c in self.codes])
        if self.offsets[-1] == 0:
            raise ValueError(f"{self.folder} holds no samples.")

    @property
    def num_classes(self) -> int:
        return self.meta["num_classes"]

    @property
    def codebook_size(self) -> int:
        return self.meta["codebook_size"]

    @property
    def token_grid_size(self) -> tuple[int, int]:
        return tuple(self.meta["token_grid_size"])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return int(self.offsets[-1]) * (self.num_views if self.all_views else 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.all_views:
            index, view = divmod(index, self.num_views)
        else:
            view = int(np.random.default_rng((self.seed, self.epoch, index)).integers(self.num_views))
        shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
        row = index - self.offsets[shard]
        tokens = torch.from_numpy(self.codes[shard][row, view].astype(np.int64)).reshape(-1)
        return tokens, torch.tensor(int(self.labels[shard][row]))
