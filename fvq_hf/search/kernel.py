"""The fused C++ nearest-code kernel for the CPU (`csrc/nearest_code.cpp`), built by `torch.utils.cpp_extension` on
first use (about 30 s per instruction set, once per machine; torch caches it).

The kernel is built for an explicit target, never `-march=native`, and its register blocking is sized for that
target's vectors and register file (`csrc/nearest_code.cpp`):

| ISA         | flags                  | vector | for                                                     |
| ----------- | ---------------------- | ------ | ------------------------------------------------------- |
| `x86-64-v4` | `-march=x86-64-v4`     | 16 f32 | AVX-512 (F, BW, CD, DQ, VL)                             |
| `x86-64-v3` | `-march=x86-64-v3`     | 8 f32  | AVX2 + FMA                                              |
| `portable`  | the compiler's default | 4 f32  | any CPU: SSE2 on x86-64, NEON on ARM (128-bit vectors)  |

`FVQ_HF_SEARCH_ISA` picks one (default `auto`: the widest this CPU runs); asking for one the CPU lacks is an error
that says so, not an illegal-instruction crash.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import shutil
import warnings
from pathlib import Path
from types import ModuleType

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

logger = logging.getLogger(__name__)


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


@functools.cache
def build_kernel(isa: str) -> ModuleType | None:
    """The kernel compiled for `isa`, built on first use and cached by torch; None (with one warning) if it cannot be."""
    from torch.utils import cpp_extension

    if shutil.which("ninja") is None:  # torch calls `ninja` by name: the one pip installed, if the venv is not on PATH
        try:
            import ninja

            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
        except ImportError:
            pass  # then the build fails, and the fallback warning says that ninja is missing
    flags, lanes, _ = ISAS[isa]
    name = f"fvq_hf_nearest_code_{platform.machine().lower()}_{isa.replace('-', '_')}"
    logger.info("Loading the nearest-code search kernel %s (the first time, it is compiled: about 30 s).", name)
    try:
        return cpp_extension.load(name=name, sources=[str(KERNEL_SOURCE)], extra_ldflags=["-fopenmp"],
                                  extra_cflags=["-O3", *flags, "-fopenmp", f"-DFVQ_LANES={lanes}", f"-DFVQ_ISA={isa}"])
    except Exception as error:  # no compiler, no ninja, a failed build: every one of them means "fall back"
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = next((line.strip() for line in lines if "error:" in line), lines[0])[:300]
        warnings.warn(f"fvq_hf could not build its nearest-code search kernel ({reason}); searching with tiled "
                      f"torch instead, which is slower on the CPU. Set {SEARCH_ENV}=torch to skip the build.",
                      RuntimeWarning, stacklevel=3)
        return None


def load_kernel(isa: str | None = None) -> ModuleType | None:
    """The kernel for `isa` (default: `choose_isa()`), or None (with one warning) if it cannot be built."""
    return build_kernel(choose_isa(isa))
