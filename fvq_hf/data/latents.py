"""Codes folders extracted with `fvq-extract-codes --latents` read back as a data set of continuous latents, for
the latent diffusion and flow generators (`fvq-train-latent`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .codes_folder import read_latent_shard
from .tokens import TokenDataset


class LatentDataset(TokenDataset):
    """The pre-quantization latents of a codes folder: item i -> `(latents (d, h, w) float32, label long)`.

    Views, epochs and seeds as `TokenDataset` (one view of sample i per (seed, epoch, i); `all_views` for
    evaluation); a folder extracted without `--latents` is refused with the command that makes one.
    """

    def __init__(self, folder: str | Path, seed: int = 0, all_views: bool = False) -> None:
        super().__init__(folder, seed, all_views)
        self.latents = [read_latent_shard(self.folder, self.meta, shard) for shard in self.meta.shards]

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """`(d, h, w)` of one item."""
        return (self.meta.latent_channels, *self.token_grid_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        shard, row, view = self.locate(index)
        latents = torch.from_numpy(np.array(self.latents[shard][row, view], dtype=np.float32))
        return latents, torch.tensor(int(self.labels[shard][row]))

    def chunks(self, rows: int = 4096) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every view of every sample in order, as `(latents (n, d, h, w), labels (n,))` of at most `rows` samples'
        views: statistics over a whole folder (scaling factor, class means) with bounded memory."""
        for latents, labels in zip(self.latents, self.labels, strict=True):
            for start in range(0, len(labels), rows):
                block = np.array(latents[start:start + rows], dtype=np.float32)
                yield (torch.from_numpy(block.reshape(-1, *self.latent_shape)),
                       torch.from_numpy(np.repeat(np.asarray(labels[start:start + rows]), self.num_views)))
