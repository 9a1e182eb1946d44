"""The fused C++ nearest-code kernel for the CPU (`csrc/nearest_code.cpp`), built by `torch.utils.cpp_extension` on
first use (about 30 s, once per machine and CPU type; torch caches it)."""

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

SEARCH_ENV = "FVQ_HF_SEARCH"
KERNEL_SOURCE = Path(__file__).resolve().parent / "csrc" / "nearest_code.cpp"
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
