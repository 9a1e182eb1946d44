"""EMA against raw weights on the README main job's recipe (issue 24): `fvq-train --ema-decay D` on fvq-cpu-4k and
the builtin photos for 600 steps at lr 3e-4, one run per seed; each run evaluates both its `model` (the EMA) and
its `model-raw` (the last step's weights) on every held-out and unseen tile.

    python benchmarks/ema_weights.py --runs /tmp/ema                  # 3 seeds, about 12 min each on 2 CPU cores
    python benchmarks/ema_weights.py --runs /tmp/ema --table-only     # the table of runs already made
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = ("builtin:heldout", "builtin:unseen")
KEYS = (("usage", 100, "usage %"), ("psnr", 1, "PSNR dB"), ("ssim", 1, "SSIM"))


def run(folder: Path, seed: int, decay: float) -> None:
    subprocess.run([sys.executable, "-m", "fvq_hf.cli.train", "--config", str(ROOT / "hub_configs" / "fvq-cpu-4k"),
                    "--data", "builtin", "--max-steps", "600", "--lr", "3e-4", "--ema-decay", str(decay),
                    "--seed", str(seed), "--report-to", "none", "--output-dir", str(folder)], check=True)


def table(runs: Path, seeds: list[int]) -> str:
    loaded = {seed: {weights: json.loads((runs / f"seed{seed}" / f"{name}.json").read_text())
                     for weights, name in (("EMA", "eval"), ("raw", "eval-raw"))} for seed in seeds}
    lines = ["| data | weights | " + " | ".join(label for _, _, label in KEYS) + " | tokens per code |",
             "| --- | --- |" + " --- |" * (len(KEYS) + 1)]
    for data in SETS:
        for weights in ("EMA", "raw"):
            cells = []
            for key, scale, _ in KEYS:
                values = [scale * loaded[s][weights][data][key] for s in seeds]
                per_seed = " / ".join(f"{v:.2f}" if scale == 100 else f"{v:.4f}" for v in values)
                cells.append(f"{statistics.mean(values):.4f} ({per_seed})")
            tokens = loaded[seeds[0]][weights][data]["tokens_per_code"]
            lines.append(f"| {data} | {weights} | " + " | ".join(cells) + f" | {tokens:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="one folder per seed goes here: seed0, seed1, ...")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--decay", type=float, default=0.999)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if not args.table_only:
        for seed in args.seeds:
            run(args.runs / f"seed{seed}", seed, args.decay)
    print(table(args.runs, args.seeds))


if __name__ == "__main__":
    main()
