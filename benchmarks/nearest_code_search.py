"""Nearest-code search: fvq_hf's kernel (for every instruction set this CPU runs, both micro-kernel shapes) and
tiled-torch backends against cdist, FAISS and vector-quantize-pytorch.

For every K x d x N of the grid, each method runs one search of N random tokens against K random codes in a
fresh process (so that its peak RSS is its own; on CUDA the allocator's peak). Reported: tokens/s (best of
`--repeats`), the speed relative to FAISS `IndexFlatL2`, the extra peak memory, and the fraction of the
arithmetic limit: one multiply-add per code per dimension at this machine's measured fp32 multiply-add peak
(the kernel's `fma_peak`: independent FMA chains on the widest vectors this CPU runs, every thread), and for a
kernel row (and `fvq-auto`, at the ISA it runs: `$FVQ_HF_SEARCH_ISA` can hold it to AVX2) also at the peak of its
own instruction set.

Methods: `faiss`, `fvq-auto` (what `nearest_code` does by default), `fvq-torch` (the tiles), `kernel:<isa>:<shape>`
(the kernel built for one ISA, one micro-kernel shape: `register`, `tile`, `screen`), `cdist`, `vqtorch`.

What FAISS runs is printed and saved with the rows: its SIMD level (faiss-cpu wheels from 1.13 pick it at run time;
`FAISS_SIMD_LEVEL=AVX2` holds it to AVX2) and the kernels of the OpenBLAS it brings (`OPENBLAS_CORETYPE=Haswell`
holds them to AVX2). At d <= 16 with k = 1 and N * d >= 128,000, FAISS's flat search needs no BLAS: it runs its
fused L2 + argmin kernel.

    python benchmarks/nearest_code_search.py            # K in {16k, 262k}, d in {8, 256}, N in {1k, 4k, 16k}
    python benchmarks/nearest_code_search.py --quick    # K = 16384, N = 1024, d = 8: seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import in_fresh_process, measure  # noqa: E402

from fvq_hf.search import kernel, nearest_code  # noqa: E402

METHODS = {
    "faiss": "faiss.IndexFlatL2.search(z, 1)",
    "fvq-auto": "fvq_hf.nearest_code, backend='auto' (the default: dispatch.py's rule)",
    "fvq-torch": "fvq_hf.nearest_code, backend='torch' (4096 x 4096 addmm tiles; the GPU path and CPU fallback)",
    **{f"kernel:{isa}:{shape}": f"the {isa} kernel, {shape} micro-kernel" for isa in kernel.supported_isas()
       for shape in ("register", "tile", "screen")},
    "cdist": "torch.cdist(z, codebook).argmin(1)",
    "vqtorch": "vector_quantize_pytorch.VectorQuantize forward (eval, no grad)",
}
DEFAULT_METHODS = ["faiss", "fvq-auto", "fvq-torch", *(m for m in METHODS if m.startswith("kernel:"))]
# Copies of the N x K fp32 distance matrix a method holds at its peak (vqtorch: measured 16 GiB for a 4 GiB one).
MATRIX_COPIES = {"cdist": 1, "vqtorch": 4}


def _search_setup(method: str, tokens: int, codebook_size: int, dim: int, device: str):
    torch.manual_seed(0)
    z = torch.randn(tokens, dim, device=device)
    codebook = torch.randn(codebook_size, dim, device=device)
    if method.startswith("fvq-"):
        backend = method.removeprefix("fvq-")
        nearest_code(z[:1], codebook[:1], backend=backend)  # loads the kernel here, as `kernel:` rows load theirs
        return lambda: nearest_code(z, codebook, backend=backend)
    if method.startswith("kernel:"):
        _, isa, shape = method.split(":")
        module = kernel.build_kernel(isa)
        return lambda: module.nearest_code(z, codebook, kernel.KERNEL_QUERY_BLOCK, kernel.KERNEL_CHUNK_BYTES, shape)
    if method == "cdist":
        return lambda: torch.cdist(z, codebook).argmin(dim=1)
    if method == "faiss":
        import faiss

        index = faiss.IndexFlatL2(dim)
        index.add(codebook.cpu().numpy())
        return lambda: torch.from_numpy(index.search(z.cpu().numpy(), 1)[1][:, 0])
    from vector_quantize_pytorch import VectorQuantize

    peer = VectorQuantize(dim=dim, codebook_size=codebook_size).to(device).eval()
    peer._codebook.embed.data.copy_(codebook[None])
    peer._codebook.initted.fill_(True)
    return lambda: peer(z[None])[1][0]


def _measure(method: str, tokens: int, codebook_size: int, dim: int, repeats: int, device: str) -> dict:
    with torch.no_grad():
        out = measure(lambda: _search_setup(method, tokens, codebook_size, dim, device), repeats, device)
    return {"tokens_per_s": tokens / out["seconds"], "seconds": out["seconds"],
            "extra_peak_mib": out["extra_peak_mib"], "checksum": int(out["result"].long().sum())}


def fma_peaks() -> dict[str, float]:
    """Multiply-adds per second of each ISA's vectors, every thread busy (`fma_peak` of its kernel build)."""
    peaks = {}
    for isa in kernel.supported_isas():
        module = kernel.build_kernel(isa)
        module.fma_peak(1000)  # starts the threads
        peaks[isa] = max(module.fma_peak(50_000_000) for _ in range(3))
    return peaks


def _openblas_core() -> str | None:
    """The kernel family of the OpenBLAS loaded in this process (what OPENBLAS_CORETYPE picks), if any (Linux)."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "libopenblas" in line})
    except OSError:
        return None
    for path in paths:
        library = ctypes.CDLL(path)
        library.openblas_get_corename.restype = ctypes.c_char_p
        return library.openblas_get_corename().decode()
    return None


def faiss_build() -> dict:
    """What FAISS runs in a fresh process with this environment: SIMD level, compile options, OpenBLAS kernels."""
    import faiss

    config = getattr(faiss, "SIMDConfig", None)  # faiss-cpu >= 1.13: one library, SIMD level chosen at run time
    return {"simd_level": config.get_level_name() if config else None,
            "compile_options": faiss.get_compile_options().strip(), "openblas_core": _openblas_core()}


def auto_search(device: str) -> str | None:
    """The kernel ISA `fvq-auto` runs on `device` (the widest this CPU runs, or `$FVQ_HF_SEARCH_ISA`'s), or None
    where it runs tiled torch: another device, or a kernel that cannot be had (which warns). (`fvq-auto` passes
    backend="auto" itself, so `$FVQ_HF_SEARCH` does not change it.)"""
    if device != "cpu":
        return None
    module = kernel.load_kernel()
    return module.isa if module is not None else None


def run(args: argparse.Namespace) -> dict:
    search_isa = auto_search(args.device)  # before any row: a bad $FVQ_HF_SEARCH_ISA is told at once
    peaks = in_fresh_process(fma_peaks)  # the arithmetic limit's unit, per ISA
    faiss_runs = in_fresh_process(faiss_build) if "faiss" in args.methods else None
    rows = []
    for codebook_size in args.codebook_sizes:
        for dim in args.dims:
            for tokens in args.tokens:
                for method in args.methods:
                    row = {"method": method, "codebook_size": codebook_size, "dim": dim, "tokens": tokens}
                    need = MATRIX_COPIES.get(method, 0) * tokens * codebook_size * 4 / 2**30
                    if need > args.max_gib:
                        row["error"] = f"skipped: holds ~{need:.0f} GiB"
                    else:
                        row.update(in_fresh_process(_measure, method, tokens, codebook_size, dim, args.repeats,
                                                    args.device))
                    rows.append(row)
                    print(f"{method} K={codebook_size} d={dim} N={tokens}: {row.get('error') or row['seconds']}",
                          file=sys.stderr, flush=True)
    isa = kernel.supported_isas()[0]
    return {"args": vars(args), "isa": isa, "search_isa": search_isa, "fma_peaks": peaks,
            "machine_peak": peaks[isa],
            "threads": torch.get_num_threads(), "faiss": faiss_runs, "rows": rows}


def table(result: dict) -> str:
    """The markdown table of `run`'s result: speed vs FAISS and the arithmetic limit, and whether ids agree."""
    lines = ["| K | d | N | method | tokens/s | vs FAISS | extra peak memory (MiB) | of the machine's limit | "
             "of its ISA's limit | same ids as FAISS |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = result["rows"]
    for row in rows:
        head = f"| {row['codebook_size']:,} | {row['dim']} | {row['tokens']:,} | {row['method']} |"
        if "error" in row:
            lines.append(f"{head} {row['error']} | | | | | |")
            continue
        faiss = next((r for r in rows if r["method"] == "faiss" and "error" not in r and all(
            r[key] == row[key] for key in ("codebook_size", "dim", "tokens"))), None)
        # tokens/s at one multiply-add per code and dimension, at the measured multiply-add peak
        macs = row["tokens_per_s"] * row["codebook_size"] * row["dim"]
        row_isa = (row["method"].split(":")[1] if row["method"].startswith("kernel:")
                   else result["search_isa"] if row["method"] == "fvq-auto" else None)
        own = result["fma_peaks"].get(row_isa) if row_isa else None
        versus = f"{row['tokens_per_s'] / faiss['tokens_per_s']:.2f}x" if faiss else ""
        same = ("yes" if row["checksum"] == faiss["checksum"] else "NO") if faiss else ""
        lines.append(f"{head} {row['tokens_per_s']:,.0f} | {versus} | {row['extra_peak_mib']:,.0f} | "
                     f"{100 * macs / result['machine_peak']:.1f}% | {f'{100 * macs / own:.1f}%' if own else ''} | "
                     f"{same} |")
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.partition(":")[2].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--codebook-sizes", type=int, nargs="+", default=[16384, 262144])
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 256])
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-gib", type=float, default=6.0, help="skip methods whose distance matrices pass this")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="K = 16384, N = 1024, d = 8, two repeats")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.quick:
        args.codebook_sizes, args.tokens, args.dims, args.repeats = [16384], [1024], [8], 2
    result = run(args)
    print(table(result))
    peaks = ", ".join(f"{isa} {macs / 1e9:.1f} G" for isa, macs in result["fma_peaks"].items())
    print(f"{args.device}, {result['threads']} threads, {cpu_name()}; widest ISA {result['isa']}; fp32 multiply-add "
          f"peak per ISA (multiply-adds/s): {peaks}; fvq-auto runs "
          f"{f'the {search} kernel' if (search := result['search_isa']) else 'tiled torch'}")
    if result["faiss"]:
        faiss = result["faiss"]
        print(f"FAISS: SIMD level {faiss['simd_level']} (compile options: {faiss['compile_options']}), OpenBLAS "
              f"kernels {faiss['openblas_core']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
