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


def autocast_search(vectors: torch.Tensor, codebook: torch.Tensor, chunk_size: int) -> torch.LongTensor:
    """`(N, d), (K, d) -> (N,)`: the FVQ authors' search, for a quantizer that runs under the caller's autocast.

    Their distance `sum(z**2) + sum(e**2) - 2 z.e` is computed op for op in the dtypes the active autocast gives
    each op (on a GPU: the squared norms in fp32 and the cross term in bf16; on a CPU all three in bf16), a block of
    `chunk_size` codes at a time with a running minimum, so that every distance, and so every id, is the one
    their full `(N, K)` matrix and `argmin` give, ties to the lowest index. The ids are the nearest code only up to
    the rounding of that dtype.
    """
    with torch.no_grad():
        vector_sq = torch.sum(vectors ** 2, dim=1, keepdim=True)
        best = best_index = None
        for start in range(0, codebook.shape[0], chunk_size):
            codes = codebook[start : start + chunk_size]
            distance = vector_sq + torch.sum(codes ** 2, dim=1) - 2 * torch.einsum("bd,dn->bn", vectors, codes.T)
            value, index = distance.min(dim=1)
            if best is None:
                best, best_index = value, index
            else:
                closer = value < best
                best, best_index = torch.where(closer, value, best), torch.where(closer, index + start, best_index)
        return best_index
