"""Exact nearest-code search with bounded memory: a fused C++ kernel on the CPU, tiled torch elsewhere.

Neither backend ever holds an N x K distance matrix, and both return argmin's ids, ties to the lowest index:
- `kernel` (CPU): `fvq_hf/csrc/nearest_code.cpp`, built by `torch.utils.cpp_extension` on first use (about
  30 s, once per machine and CPU type; torch caches it), reducing each distance where it is computed. Every
  copy of a code gets the same distance bit for bit, so duplicates resolve to the first copy.
- `torch` (any device): `chunk_size x chunk_size` blocks of `addmm` with a running minimum. BLAS may round a
  dot product differently at another position in a block, so between exact duplicates of non-integer codes
  the copy it returns is not always the first.

`backend="auto"` (the default, or the `FVQ_HF_SEARCH` environment variable) takes the kernel for CPU search
and the torch tiles on GPU; where the kernel cannot be built (no C++ compiler) it warns once and falls back.
Distances are computed in fp32 whatever the input dtype (fp64 inputs: in fp64, by the torch backend).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import warnings
from pathlib import Path
from types import ModuleType
from typing import Literal

import torch

Backend = Literal["auto", "kernel", "torch"]
BACKENDS = ("auto", "kernel", "torch")
SEARCH_ENV = "FVQ_HF_SEARCH"
KERNEL_SOURCE = Path(__file__).resolve().parents[1] / "csrc" / "nearest_code.cpp"
# On the 2-core development CPU, query blocks of 64-256 and chunks of 64-256 KiB were all within 4% of the best
# at K = 262144, d = 8 and 256.
KERNEL_QUERY_BLOCK = 128
KERNEL_CHUNK_BYTES = 128 * 1024


logger = logging.getLogger(__name__)


def _cpu_tag() -> str:
    """A short hash of this CPU's instruction sets: the kernel is built with -march=native, so a build cache
    shared between machines (a network home) must not hand one CPU's build to another."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return hashlib.sha1(f"{platform.machine()} {platform.processor()} {flags}".encode()).hexdigest()[:10]


@functools.cache
def load_kernel() -> ModuleType | None:
    """The compiled CPU kernel, built on first use and cached by torch; None (with one warning) if it cannot be."""
    from torch.utils import cpp_extension

    if shutil.which("ninja") is None:  # torch calls `ninja` by name: the one pip installed, if the venv is not on PATH
        try:
            import ninja

            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
        except ImportError:
            pass  # then the build fails, and the fallback warning says that ninja is missing
    name = f"fvq_hf_nearest_code_{_cpu_tag()}"
    logger.info("Loading the nearest-code search kernel %s (the first time, it is compiled: about 30 s).", name)
    try:
        return cpp_extension.load(name=name, sources=[str(KERNEL_SOURCE)], extra_cflags=["-O3", "-march=native",
                                  "-fopenmp"], extra_ldflags=["-fopenmp"])
    except Exception as error:  # no compiler, no ninja, a failed build: every one of them means "fall back"
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = next((line.strip() for line in lines if "error:" in line), lines[0])[:300]
        warnings.warn(f"fvq_hf could not build its nearest-code search kernel ({reason}); searching with tiled "
                      f"torch instead, which is slower on the CPU. Set {SEARCH_ENV}=torch to skip the build.",
                      RuntimeWarning, stacklevel=3)
        return None


def _backend(backend: str | None) -> str:
    backend = backend or os.environ.get(SEARCH_ENV) or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"Unknown nearest-code search backend {backend!r} (from the argument or ${SEARCH_ENV}); "
                         f"expected one of {', '.join(BACKENDS)}.")
    return backend


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
    vectors, codebook = vectors.to(dtype), codebook.to(dtype)
    backend = _backend(backend)
    if backend != "torch":
        unsuitable = ("the vectors are not on the CPU" if vectors.device.type != "cpu"
                      else "fp64 inputs" if dtype == torch.float64
                      else "K >= 2**31" if codebook.shape[0] >= 2**31 - 16 else None)
        kernel = None if unsuitable else load_kernel()
        if kernel is not None:
            return kernel.nearest_code(vectors.contiguous(), codebook.contiguous(), KERNEL_QUERY_BLOCK,
                                       KERNEL_CHUNK_BYTES)
        if backend == "kernel":
            raise ValueError(f"The nearest-code search kernel cannot serve this call: "
                             f"{unsuitable or 'it could not be built (see the warning above)'}. "
                             "Use backend='torch' or 'auto'.")
    return tiled_search(vectors, codebook, chunk_size)


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
