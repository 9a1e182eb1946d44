"""Timing and peak memory of one piece of work, each measured in a fresh process so peaks are its own."""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Callable


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(setup: Callable[[], Callable[[], object]], repeats: int, device: str) -> dict:
    """Run `setup()` once (its allocations are the baseline), then time its returned step `repeats` times.

    Returns the best time and the extra peak memory: CUDA allocator peak on GPU, peak RSS on CPU.
    """
    import torch

    step = setup()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"seconds": min(times), "extra_peak_mib": max(peak, 0) / 2**20, "result": result}


def _child(fn, args, queue) -> None:
    queue.put(fn(*args))


def in_fresh_process(fn: Callable[..., dict], *args) -> dict:
    """`fn(*args)` (a module-level function returning a picklable dict) in a spawned process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return {"error": f"exit code {proc.exitcode} (out of memory?)"}
    return queue.get()
