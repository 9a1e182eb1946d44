"""The FVQ paper's baseline bridges, both over a frozen random table: SimVQ's linear map (`Qbridge-lin/1`) and an
MLP projector (`Qbridge-lin/5`). VQGAN-LC's own projectors, over a table of its own width made from data, are
`vqgan_lc.py`'s."""

from __future__ import annotations

import torch
from torch import nn

from .base import BRIDGES, CodebookBridge


class FrozenTableBridge(CodebookBridge):
    """A projector over a table that stays as initialised; a frozen table needs spread-out codes: N(0, 1/d)."""

    freezes_table = True

    def init_table(self, weight: torch.Tensor) -> None:
        nn.init.normal_(weight, std=weight.shape[1] ** -0.5)


@BRIDGES.register
class LinearBridge(FrozenTableBridge):
    """SimVQ's re-parameterisation (arXiv 2411.02038): one Linear(d, d) applied to every code of a frozen table."""

    name = "linear"
    display_name = "linear projector (SimVQ)"

    def __init__(self, codebook_size: int, code_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(code_dim, code_dim)

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        """(K, d) -> (K, d)."""
        return self.linear(table)


@BRIDGES.register
class MLPBridge(FrozenTableBridge):
    """The FVQ paper's MLP projector baseline: `depth` hidden Linear+ReLU layers of width `hidden_size`, then
    Linear(., d), over a frozen N(0, 1/d) table. Their released "lin/5" is depth 4 with hidden_size = d. It is not
    VQGAN-LC (whose table is a k-means table of pretrained features, of its own width: `"lc-linear"`, `"lc-mlp"`)."""

    name = "mlp"
    display_name = "MLP projector (the FVQ paper's lin/5 baseline)"

    def __init__(self, codebook_size: int, code_dim: int, hidden_size: int = 256, depth: int = 2) -> None:
        super().__init__()
        if depth < 1 or hidden_size < 1:
            raise ValueError(f"MLPBridge needs depth >= 1 and hidden_size >= 1, got {depth}, {hidden_size}.")
        widths = [code_dim] + [hidden_size] * depth
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        layers.append(nn.Linear(hidden_size, code_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        """(K, d) -> (K, d)."""
        return self.layers(table)
