"""The torch backend of the nearest-code search: blocks of `addmm` with a running minimum, on any device."""

from __future__ import annotations

import torch


def tiled_search(vectors: torch.Tensor, codebook: torch.Tensor, chunk_size: int) -> torch.LongTensor:
    """The torch backend: `(N, d), (K, d)` of one dtype -> `(N,)`, in `chunk_size x chunk_size` blocks."""
    # ||z||^2 is the same for every code of a row, so it does not change the argmin.
    code_sq = codebook.pow(2).sum(dim=1)
    indices = torch.empty(vectors.shape[0], dtype=torch.long, device=vectors.device)
    for row in range(0, vectors.shape[0], chunk_size):
        block = vectors[row : row + chunk_size]
        best = torch.full((block.shape[0],), float("inf"), dtype=vectors.dtype, device=vectors.device)
        best_index = torch.zeros(block.shape[0], dtype=torch.long, device=vectors.device)
        for start in range(0, codebook.shape[0], chunk_size):
            codes = codebook[start : start + chunk_size]
            distance = torch.addmm(code_sq[start : start + chunk_size], block, codes.T, alpha=-2.0)
            value, index = distance.min(dim=1)
            closer = value < best
            best = torch.where(closer, value, best)
            best_index = torch.where(closer, index + start, best_index)
        indices[row : row + chunk_size] = best_index
    return indices
