"""End to end: the seconds `FVQModel.tokenize` takes for one 256 px image at K = 262,144, d = 256 (the fvq-262k
preset, random weights, bridge folded as for inference), for each search backend, and the search's share (one
search of the image's 256 latents). The first call (kernel build, codebook cache) is not timed; best of `--repeats`.

    python benchmarks/tokenize_speed.py                       # this checkout
    python benchmarks/tokenize_speed.py --quick               # the small fvq-cpu-4k preset: seconds
    PYTHONPATH=/path/to/other/checkout python benchmarks/tokenize_speed.py   # the same for another version

It imports only `fvq_hf`'s public names, so it runs on earlier versions of the package too.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import fvq_hf
from fvq_hf import FVQModel, nearest_code

ROOT = Path(__file__).resolve().parents[1]


def best_time(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "hub_configs" / "fvq-262k"))
    parser.add_argument("--backends", nargs="+", default=["auto", "kernel", "torch"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the small fvq-cpu-4k preset, one repeat: seconds")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.quick:
        args.config, args.repeats = str(ROOT / "hub_configs" / "fvq-cpu-4k"), 1
    torch.manual_seed(0)
    model = FVQModel.from_config(FVQModel.load_config(args.config)).eval().fold_bridge().eval()
    image = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        latents = model.quant_conv(model.encoder(image))
        codebook = model.quantizer.codebook()
    queries = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).contiguous()
    rows = {}
    for backend in args.backends:
        os.environ["FVQ_HF_SEARCH"] = backend
        with torch.no_grad():
            tokenize = best_time(lambda: model.tokenize(image), args.repeats)
            search = best_time(lambda: nearest_code(queries, codebook), args.repeats)
        rows[backend] = {"tokenize_s": tokenize, "search_s": search}
        print(f"{backend}: tokenize {tokenize:.3f} s, of which the search {search:.3f} s "
              f"({queries.shape[0]} latents, K = {codebook.shape[0]:,}, d = {codebook.shape[1]})", flush=True)
    result = {"fvq_hf": str(Path(fvq_hf.__file__).parent), "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
