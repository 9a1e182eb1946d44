"""The codebook table updated by exponential moving averages instead of gradients (VQ-VAE-2's rule; VQGAN-LC's
"VQGAN-EMA" baseline, `--quantizer_type ema` in zh460045050/VQGAN-LC `models_vq.py`): `table_update="ema"`.

Every training forward, with the ids `i` of the vectors `z` it quantized (every level's residual vectors, for a
residual type), summed over every process:

    cluster_size <- decay * cluster_size + (1 - decay) * counts(i)            (K,)
    embed_sum    <- decay * embed_sum    + (1 - decay) * sum of z per code     (K, d)
    table        <- embed_sum / ((cluster_size + eps) / (n + K eps) * n)     n = sum(cluster_size)  (Laplace smoothing)

with their decay 0.99 and eps 1e-5, `cluster_size` starting at 0 and `embed_sum` at the initial table (theirs:
`embed_avg = tok_embeddings.weight.clone()`). The update follows the quantization, so a forward quantizes with the
table as it was. Their code updates on every forward, evaluation included, and each process its own table (the
statistics are never reduced: under DDP the processes' tables drift apart); here only training forwards update,
and the counts and sums are all-reduced first, so every process holds the one table that all the batch gives.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

EPS = 1e-5


class EMATable(nn.Module):
    """The running statistics of an EMA-updated `(K, d)` table: `cluster_size` `(K,)` and `embed_sum` `(K, d)`
    (persistent buffers: saved with the model and in every checkpoint, so a resumed run continues exactly)."""

    def __init__(self, table: torch.Tensor, decay: float) -> None:
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"table_ema_decay must lie in (0, 1) (theirs: 0.99), got {decay}.")
        self.decay = decay
        self.register_buffer("cluster_size", torch.zeros(table.shape[0], dtype=torch.float32))
        self.register_buffer("embed_sum", table.detach().float().clone())
        self.counts: torch.Tensor | None = None
        self.sums: torch.Tensor | None = None

    def restart(self, table: torch.Tensor) -> None:
        """Start the averages again from `table` (after the table is loaded or re-initialised)."""
        self.cluster_size.zero_()
        self.embed_sum.copy_(table.detach().float())

    def accumulate(self, vectors: torch.Tensor, ids: torch.LongTensor) -> None:
        """Add `(N, d)` vectors quantized to `(N,)` ids to this forward's counts and sums."""
        vectors, ids = vectors.detach().float(), ids.reshape(-1)
        if self.counts is None:
            self.counts, self.sums = torch.zeros_like(self.cluster_size), torch.zeros_like(self.embed_sum)
        self.counts.index_add_(0, ids, torch.ones_like(ids, dtype=self.counts.dtype))
        self.sums.index_add_(0, ids, vectors)

    @torch.no_grad()
    def update(self, table: torch.Tensor) -> None:
        """Fold this forward's counts and sums (summed over processes) into the averages and write the `(K, d)`
        table from them, in place."""
        if self.counts is None:
            return
        counts, sums, self.counts, self.sums = self.counts, self.sums, None, None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + EPS) / (n + self.cluster_size.numel() * EPS) * n
        table.copy_(self.embed_sum / smoothed.unsqueeze(1))
