"""The fused C++ nearest-code kernel for the CPU (`csrc/nearest_code.cpp`): which instruction set to build it for,
and the kernel of that set, built on first use (about half a minute, once per machine and source; `build.py` owns
the build and its cache, `fvq-build-kernels` builds ahead of time).

The kernel is built for an explicit target, never `-march=native`, and its register blocking is sized for that
target's vectors and register file (`csrc/nearest_code.cpp`):

| ISA         | flags                  | vector | for                                                     |
| ----------- | ---------------------- | ------ | ------------------------------------------------------- |
| `x86-64-v4` | `-march=x86-64-v4`     | 16 f32 | AVX-512 (F, BW, CD, DQ, VL)                             |
| `x86-64-v3` | `-march=x86-64-v3`     | 8 f32  | AVX2 + FMA                                              |
| `portable`  | the compiler's default | 4 f32  | any CPU: SSE2 on x86-64, NEON on ARM (128-bit vectors)  |

`FVQ_HF_SEARCH_ISA` picks one (default `auto`: the widest this CPU runs). Where the kernel cannot be had (an ISA
this CPU cannot run or an unknown name, no compiler, an unwritable cache, a failed build), `load_kernel` warns once
with the reason and the search falls back to tiled torch, or with `required` raises a ValueError that says why:
never an illegal-instruction crash.
"""

from __future__ import annotations

import functools
import os
import platform
import warnings
from pathlib import Path
from types import ModuleType

from . import build

SEARCH_ENV = "FVQ_HF_SEARCH"
ISA_ENV = "FVQ_HF_SEARCH_ISA"
KERNEL_SOURCE = Path(__file__).resolve().parent / "csrc" / "nearest_code.cpp"
# On the 2-core development CPU, query blocks of 64-256 and chunks of 64-256 KiB were all within 4% of the best
# at K = 262144, d = 8 and 256.
KERNEL_QUERY_BLOCK = 128
KERNEL_CHUNK_BYTES = 128 * 1024
# Per ISA: compiler flags, vector width in floats, and the /proc/cpuinfo flags the CPU must have to run it.
ISAS = {
    "x86-64-v4": (["-march=x86-64-v4"], 16, {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma"}),
    "x86-64-v3": (["-march=x86-64-v3"], 8, {"avx2", "fma", "bmi2", "f16c", "movbe"}),
    "portable": ([], 4, set()),
}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this CPU (Linux /proc/cpuinfo; empty elsewhere), read once: every CPU search
    asks which kernel to use."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def supported_isas() -> list[str]:
    """The ISAs of `ISAS` this CPU runs, widest first."""
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    flags = cpu_flags()
    return [name for name, (_, _, needs) in ISAS.items() if name == "portable" or (x86 and needs <= flags)]


def choose_isa(isa: str | None = None) -> str:
    """`isa`, else `FVQ_HF_SEARCH_ISA`, else the widest this CPU runs; a ValueError for one it cannot run."""
    isa = isa or os.environ.get(ISA_ENV) or "auto"
    supported = supported_isas()
    if isa == "auto":
        return supported[0]
    if isa not in ISAS:
        raise ValueError(f"Unknown search kernel ISA {isa!r} (from the argument or ${ISA_ENV}); expected auto or one "
                         f"of {', '.join(ISAS)}.")
    if isa not in supported:
        raise ValueError(f"This CPU cannot run the {isa} search kernel (it runs {', '.join(supported)}); unset "
                         f"${ISA_ENV} or choose one of those.")
    return isa


def kernel_flags(isa: str) -> tuple[list[str], list[str]]:
    """The compiler and linker flags of the `isa` build."""
    flags, lanes, _ = ISAS[isa]
    return ["-O3", *flags, "-fopenmp", f"-DFVQ_LANES={lanes}", f"-DFVQ_ISA={isa}"], ["-fopenmp"]


def kernel_folder(isa: str) -> Path:
    """Where the `isa` build of the kernel lives (or will live) in the cache."""
    return build.build_folder(KERNEL_SOURCE, isa, *kernel_flags(isa))


@functools.cache
def _built(isa: str) -> ModuleType | str:
    """The kernel of `isa`, loaded (or built) once per process; or why it cannot be had."""
    try:
        return build.load_or_build(KERNEL_SOURCE, isa, *kernel_flags(isa))
    except build.KernelBuildError as error:
        return str(error)


_WARNED: set[str] = set()  # the reasons already warned about: a failing kernel warns once, not at every search


def load_kernel(isa: str | None = None, *, required: bool = False) -> ModuleType | None:
    """The kernel for `isa` (default: `choose_isa()`); where it cannot be had, None with one RuntimeWarning that
    says why, or with `required`, a ValueError that says why."""
    try:
        found = _built(choose_isa(isa))
    except ValueError as error:  # an unknown ISA or one this CPU cannot run
        found = str(error)
    if not isinstance(found, str):
        return found
    if required:
        raise ValueError(found)
    if found not in _WARNED:
        _WARNED.add(found)
        warnings.warn(f"{found.rstrip('.')}. Searching with tiled torch instead, which is slower on the CPU; set "
                      f"{SEARCH_ENV}=torch to skip the kernel.", RuntimeWarning, stacklevel=2)
    return None


def build_kernel(isa: str) -> ModuleType | None:
    """The kernel built for `isa`, one of `supported_isas()` (the tests and the benchmark build each); None with one
    warning where it cannot be built."""
    return load_kernel(isa)
