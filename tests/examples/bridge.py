"""An example bridge: a learnable per-dimension scale and shift of the table (one module; registered as "scale")."""

from __future__ import annotations

import torch
from torch import nn

from fvq_hf.bridges import CodebookBridge


class ScaleBridge(CodebookBridge):
    name = "scale"
    display_name = "per-dimension affine map (example)"

    def __init__(self, codebook_size: int, code_dim: int, init_scale: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((code_dim,), init_scale))
        self.shift = nn.Parameter(torch.zeros(code_dim))

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        """(K, d) -> (K, d)."""
        return table * self.scale + self.shift
