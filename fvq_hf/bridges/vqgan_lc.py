"""VQGAN-LC's projectors (Zhu et al., arXiv 2406.11837; code zh460045050/VQGAN-LC, `models_vq.py`): a frozen table
of its own width D (their 100,000 x 768 k-means table of CLIP features) mapped to codes of width d by a trained
projector, recomputed every step, so that every code moves with the projector.

- `"lc-linear"` (their `use_cblinear 1`, the released runs): one `Linear(D, d)`, weight N(0, d^-0.5), bias at
  PyTorch's default;
- `"lc-mlp"` (their `use_cblinear 2`): `Linear(D, hidden_size) -> ReLU -> Linear(hidden_size, d)`, hidden_size 256,
  PyTorch's default init.

The table is frozen by default (their `tuning_codebook 0`); `freeze_table=False` in the model config trains it too
(their mode 1). A table at random starts at uniform(-1/K, 1/K) (their modes -1 / -2); from a table file
(`fvq-train --init-table`, `FVQModel.load_table`) it is theirs (modes 0 / 1). The table's width is the model
config's `table_dim` (D); these bridges are the ones that map `(K, D)` to `(K, d)` with D != d.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import BRIDGES, CodebookBridge


class TableProjector(CodebookBridge):
    """A projector from a frozen `(K, table_dim)` table to `(K, code_dim)` codes (`table_dim` None: `code_dim`);
    `code_dim` is kept, as the quantizer's code width."""

    code_dim: int

    freezes_table = True
    maps_width = True


@BRIDGES.register
class LCLinearBridge(TableProjector):
    """VQGAN-LC's released projector: `Linear(D, d)` with weight N(0, d^-0.5) (`use_cblinear 1`)."""

    name = "lc-linear"
    display_name = "VQGAN-LC linear projector"

    def __init__(self, codebook_size: int, code_dim: int, *, table_dim: int | None = None) -> None:
        super().__init__()
        self.code_dim = code_dim
        self.projection = nn.Linear(table_dim or code_dim, code_dim)
        nn.init.normal_(self.projection.weight, std=code_dim ** -0.5)

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        """(K, D) -> (K, d)."""
        return self.projection(table)


@BRIDGES.register
class LCMLPBridge(TableProjector):
    """VQGAN-LC's two-layer projector: `Linear(D, hidden_size) -> ReLU -> Linear(hidden_size, d)` (`use_cblinear
    2`), PyTorch's default init."""

    name = "lc-mlp"
    display_name = "VQGAN-LC MLP projector"

    def __init__(self, codebook_size: int, code_dim: int, hidden_size: int = 256, *,
                 table_dim: int | None = None) -> None:
        super().__init__()
        self.code_dim = code_dim
        if hidden_size < 1:
            raise ValueError(f"The VQGAN-LC MLP projector needs hidden_size >= 1, got {hidden_size}.")
        self.projection = nn.Sequential(nn.Linear(table_dim or code_dim, hidden_size), nn.ReLU(),
                                        nn.Linear(hidden_size, code_dim))

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        """(K, D) -> (K, d)."""
        return self.projection(table)
