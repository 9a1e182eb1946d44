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
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import in_fresh_process, measure  # noqa: E402

from fvq_hf.models.quantizer import nearest_code  # noqa: E402


def _search_setup(method: str, tokens: int, codebook_size: int, dim: int, chunk_size: int, device: str):
    torch.manual_seed(0)
    z = torch.randn(tokens, dim, device=device)
    codebook = torch.randn(codebook_size, dim, device=device)
    if method == "chunked":
        return lambda: nearest_code(z, codebook, chunk_size)
    if method == "cdist":
        return lambda: torch.cdist(z, codebook).argmin(dim=1)
    # vector-quantize-pytorch: its VectorQuantize forward (distances, argmin, lookup) on the same codebook.
    from vector_quantize_pytorch import VectorQuantize

    peer = VectorQuantize(dim=dim, codebook_size=codebook_size).to(device).eval()
    peer._codebook.embed.data.copy_(codebook[None])
    peer._codebook.initted.fill_(True)
    return lambda: peer(z[None])[1][0]


def _measure(method: str, tokens: int, codebook_size: int, dim: int, chunk_size: int, repeats: int,
             device: str) -> dict:
    with torch.no_grad():
        out = measure(lambda: _search_setup(method, tokens, codebook_size, dim, chunk_size, device), repeats, device)
    return {"method": method, "dim": dim, "tokens_per_s": tokens / out["seconds"], "seconds": out["seconds"],
            "extra_peak_mib": out["extra_peak_mib"], "checksum": int(out["result"].sum())}


def run(tokens: int, codebook_size: int, dims: list[int], chunk_size: int, repeats: int, device: str,
        methods: list[str]) -> list[dict]:
    rows = []
    for dim in dims:
        for method in methods:
            row = in_fresh_process(_measure, method, tokens, codebook_size, dim, chunk_size, repeats, device)
            rows.append({"method": method, "dim": dim, **row})
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
    parser.add_argument("--methods", nargs="+", default=["chunked", "cdist"], choices=["chunked", "cdist", "vqtorch"],
                        help="vqtorch: vector-quantize-pytorch's VectorQuantize forward")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.quick:
        args.codebook_size, args.repeats = 16384, 1
    rows = run(args.tokens, args.codebook_size, args.dims, args.chunk_size, args.repeats, args.device, args.methods)
    print(f"N = {args.tokens} tokens, K = {args.codebook_size} codes, chunk {args.chunk_size}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print("| d | method | tokens/s | extra peak memory (MiB) |\n| --- | --- | --- | --- |")
    for row in rows:
        if "error" in row:
            print(f"| {row['dim']} | {row['method']} | {row['error']} | |")
        else:
            print(f"| {row['dim']} | {row['method']} | {row['tokens_per_s']:,.0f} | {row['extra_peak_mib']:,.0f} |")
    for dim in args.dims:
        found = {r["method"]: r for r in rows if r["dim"] == dim and "error" not in r}
        for other in [m for m in found if m != "chunked"] if "chunked" in found else []:
            a, b = found["chunked"], found[other]
            print(f"d={dim}: chunked/{other} speed x{a['tokens_per_s'] / b['tokens_per_s']:.2f}, memory "
                  f"x{a['extra_peak_mib'] / max(b['extra_peak_mib'], 1e-9):.3f}, same indices: "
                  f"{a['checksum'] == b['checksum']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
