"""Nearest-code search at large K: fvq_hf's chunked search against `torch.cdist` + argmin.

Reports tokens/s and the extra peak memory of one search of N tokens against K codes, for each code
dimension, all in one run. Each method runs in a fresh process so that peak RSS is its own (on CUDA the
allocator's peak is used instead).

    python benchmarks/nearest_code_search.py                  # K = 262144, N = 4096, d = 8 and 256
    python benchmarks/nearest_code_search.py --quick          # K = 16384, a few seconds
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import torch

from fvq_hf.models.quantizer import nearest_code


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _search(method: str, z: torch.Tensor, codebook: torch.Tensor, chunk_size: int) -> torch.Tensor:
    if method == "chunked":
        return nearest_code(z, codebook, chunk_size)
    with torch.no_grad():
        return torch.cdist(z, codebook).argmin(dim=1)


def _measure(method: str, tokens: int, codebook_size: int, dim: int, chunk_size: int, repeats: int,
             device: str, queue) -> None:
    torch.manual_seed(0)
    z = torch.randn(tokens, dim, device=device)
    codebook = torch.randn(codebook_size, dim, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        indices = _search(method, z, codebook, chunk_size)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    best = min(times)
    queue.put({"method": method, "dim": dim, "tokens_per_s": tokens / best, "seconds": best,
               "extra_peak_mib": max(peak, 0) / 2**20, "checksum": int(indices.sum())})


def run(tokens: int, codebook_size: int, dims: list[int], chunk_size: int, repeats: int, device: str) -> list[dict]:
    ctx = mp.get_context("spawn")
    rows = []
    for dim in dims:
        for method in ("chunked", "cdist"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_measure,
                               args=(method, tokens, codebook_size, dim, chunk_size, repeats, device, queue))
            proc.start()
            proc.join()
            if proc.exitcode != 0:
                rows.append({"method": method, "dim": dim, "error": f"exit code {proc.exitcode} (out of memory?)"})
                continue
            rows.append(queue.get())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--codebook-size", type=int, default=262144)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 256])
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="K = 16384, one repeat")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.quick:
        args.codebook_size, args.repeats = 16384, 1
    rows = run(args.tokens, args.codebook_size, args.dims, args.chunk_size, args.repeats, args.device)
    print(f"N = {args.tokens} tokens, K = {args.codebook_size} codes, chunk {args.chunk_size}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print("| d | method | tokens/s | extra peak memory (MiB) |\n| --- | --- | --- | --- |")
    for row in rows:
        if "error" in row:
            print(f"| {row['dim']} | {row['method']} | {row['error']} | |")
        else:
            print(f"| {row['dim']} | {row['method']} | {row['tokens_per_s']:,.0f} | {row['extra_peak_mib']:,.0f} |")
    for dim in args.dims:
        pair = {r["method"]: r for r in rows if r["dim"] == dim and "error" not in r}
        if len(pair) == 2:
            same = pair["chunked"]["checksum"] == pair["cdist"]["checksum"]
            print(f"d={dim}: chunked/cdist speed x{pair['chunked']['tokens_per_s'] / pair['cdist']['tokens_per_s']:.2f}, "
                  f"memory x{pair['chunked']['extra_peak_mib'] / max(pair['cdist']['extra_peak_mib'], 1e-9):.3f}, "
                  f"same indices: {same}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
