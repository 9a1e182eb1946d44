"""Exact nearest-code search with bounded memory: a fused C++ kernel on the CPU, tiled torch elsewhere.

Neither backend ever holds an N x K distance matrix, and both return argmin's ids, ties to the lowest index:
- `kernel` (CPU): `kernel.py`, `csrc/nearest_code.cpp`, built on first use for the widest instruction set the CPU
  runs (x86-64-v4, x86-64-v3 or portable) and cached per machine (`build.py`), reducing each distance where it is
  computed. Every copy of a code gets the same distance bit for bit, so duplicates resolve to the first copy.
- `torch` (any device, `tiled.py`): `chunk_size x chunk_size` blocks of `addmm` with a running minimum. BLAS may
  round a dot product differently at another position in a block, so between exact duplicates of non-integer
  codes the copy it returns is not always the first.

`backend="auto"` (the default, or the `FVQ_HF_SEARCH` environment variable) takes the kernel for CPU search and the
torch tiles on GPU; where the kernel cannot be had (no C++ compiler, an ISA the CPU cannot run, an unwritable
cache) it warns once and falls back. The rule is the benchmark's (`benchmarks/nearest_code_search.py`,
benchmarks/RESULTS.md, issue 22): on the CPU the kernel of the widest ISA beat the torch tiles in every row of the
grid (K = 16k / 262k, d = 8 / 256, N = 1k-16k), by 12-27x at d = 8 and 1.4-2.1x at d = 256; even the AVX2 kernel,
on a machine whose BLAS runs AVX-512, gave 0.89-1.25x the tiles' speed at d = 256 and 6-13x at d = 8. Within the
kernel, the micro-kernel shape follows the code dimension and the codes per task (`csrc/nearest_code.cpp`:
"screen" up to d = 16 where each query passes enough codes, else by `kTileFromDim`).
Distances are computed in fp32 whatever the input dtype (fp64 inputs: in fp64, by the torch backend).

The search is the torch custom op `fvq_hf::nearest_code` (`eager_search` is its body, with a fake that gives the
`(N,)` shape), so that `torch.compile` traces through a quantizer without a graph break; the backend is chosen, and
the kernel built, when the op runs.
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from .kernel import KERNEL_CHUNK_BYTES, KERNEL_QUERY_BLOCK, SEARCH_ENV, load_kernel
from .tiled import tiled_search

Backend = Literal["auto", "kernel", "torch"]
BACKENDS = ("auto", "kernel", "torch")


def _backend(backend: str | None) -> str:
    backend = backend or os.environ.get(SEARCH_ENV) or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"Unknown nearest-code search backend {backend!r} (from the argument or ${SEARCH_ENV}); "
                         f"expected one of {', '.join(BACKENDS)}.")
    return backend


def eager_search(vectors: torch.Tensor, codebook: torch.Tensor, chunk_size: int, backend: str | None
                 ) -> torch.Tensor:
    """The body of the op: checked `(N, d), (K, d)` of one dtype (fp32 or fp64) -> `(N,)` ids, by `backend`."""
    backend = _backend(backend)
    if backend != "torch":
        unsuitable = ("the vectors are not on the CPU" if vectors.device.type != "cpu"
                      else "fp64 inputs" if vectors.dtype == torch.float64
                      else "K >= 2**31" if codebook.shape[0] >= 2**31 - 16 else None)
        kernel = None
        if unsuitable is None:
            try:
                kernel = load_kernel(required=backend == "kernel")
            except ValueError as error:  # only with backend "kernel": why it cannot be had
                unsuitable = str(error).rstrip(".")
        if kernel is not None:
            return kernel.nearest_code(vectors.contiguous(), codebook.contiguous(), KERNEL_QUERY_BLOCK,
                                       KERNEL_CHUNK_BYTES)
        if backend == "kernel":
            raise ValueError(f"The nearest-code search kernel cannot serve this call: "
                             f"{unsuitable or 'it could not be built'}. Use backend='torch' or 'auto'.")
    return tiled_search(vectors, codebook, chunk_size)


search_op = torch.library.custom_op("fvq_hf::nearest_code", eager_search, mutates_args=())


@search_op.register_fake
def _(vectors: torch.Tensor, codebook: torch.Tensor, chunk_size: int, backend: str | None) -> torch.Tensor:
    return vectors.new_empty(vectors.shape[0], dtype=torch.long)


@torch.no_grad()
def nearest_code(
    vectors: torch.Tensor, codebook: torch.Tensor, chunk_size: int = 4096, *, backend: Backend | None = None
) -> torch.LongTensor:
    """Index of the nearest code by squared L2 distance, `(N, d), (K, d) -> (N,)`, ties to the lowest index.

    `chunk_size` is the block of the torch backend (extra memory: one `chunk_size x chunk_size` block);
    `backend` is "auto", "kernel" or "torch" (see the module docstring), None reads `FVQ_HF_SEARCH`.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    if vectors.ndim != 2 or codebook.ndim != 2 or vectors.shape[1] != codebook.shape[1]:
        raise ValueError(f"Expected (N, d) vectors and a (K, d) codebook, got {tuple(vectors.shape)} and "
                         f"{tuple(codebook.shape)}.")
    if codebook.shape[0] == 0:
        raise ValueError("The codebook has no codes (K = 0).")
    if vectors.device != codebook.device:
        raise ValueError(f"The vectors are on {vectors.device} and the codebook on {codebook.device}.")
    dtype = torch.float64 if torch.float64 in (vectors.dtype, codebook.dtype) else torch.float32
    return search_op(vectors.to(dtype), codebook.to(dtype), chunk_size, backend)
