"""VQGAN-LC's codebook against FVQ's on one backbone, one recipe, 3 seeds (issue 32, item 6).

Every arm trains the fvq-cpu-4k backbone from scratch (downsample 8, d = 8, 64 px crops of the builtin photos) with
the recipe of `quantizer_comparison.py` (its `train`: the same steps, batch, Adam(0.9, 0.95), clip, lr and learning
annealing), then is evaluated over every token of the held-out strips and of the unseen photos, with tokens per code
printed beside every usage. The arms:
- lc-kmeans: VQGAN-LC as released: a frozen table from `fvq-build-codebook` (k-means per class) under their
  `Linear(D, d)` projector (`bridge_type="lc-linear"`, their `tuning_codebook 0`);
- lc-random: the same projector on a random frozen table (their mode -2);
- lc-selection: a frozen table of randomly selected features, no k-means (their Table 10 "random selection";
  `--kmeans-iterations 0`);
- lc-kmeans-trained: the built table, trained too (their mode 1);
- lc-kmeans-their-loss: lc-kmeans with their quantizer loss weights (commitment 1.0, codebook 0.33, times rate_q
  0.1: 0.1 / 0.033) instead of this package's (0.25 / 1.0);
- vqbridge: FVQ; none: plain VQ.

The tables' encoder is the main job's trained tokenizer (`--encoder`, default outputs/fvq-cpu-4k/model): an
**in-domain encoder** trained on these photos, not CLIP; its features before `quant_conv` are 64-wide, so the table
is (K, 64) and the projector Linear(64, 8). One table per K and kind, built once with seed 0 (as VQGAN-LC releases one
table); the seeds vary the model's initialisation and the data order.

    python benchmarks/vqgan_lc_side_by_side.py                       # K 4,096 and 16,384, 7 arms, 3 seeds
    python benchmarks/vqgan_lc_side_by_side.py --stress              # + K 65,536 and 100,000, 3 arms, seed 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.utils.data import Subset

from fvq_hf import FVQModel
from fvq_hf.codebook_building import CodebookBuildConfig, build_codebook
from fvq_hf.data.sources import EvalImages
from fvq_hf.data.table_file import load_table
from fvq_hf.evaluation.evaluate import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quantizer_comparison import train  # noqa: E402  (the one recipe every side-by-side here trains with)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_LOSS = {"codebook_weight": 1.0, "commitment_weight": 0.25}
THEIR_LOSS = {"codebook_weight": 0.1 * 0.33, "commitment_weight": 0.1 * 1.0}  # beta, alpha x rate_q
# arm -> (bridge, table kind or None for a random table, table frozen, loss weights)
ARMS = {
    "lc-kmeans": ("lc-linear", "kmeans", True, PACKAGE_LOSS),
    "lc-random": ("lc-linear", None, True, PACKAGE_LOSS),
    "lc-selection": ("lc-linear", "selection", True, PACKAGE_LOSS),
    "lc-kmeans-trained": ("lc-linear", "kmeans", False, PACKAGE_LOSS),
    "lc-kmeans-their-loss": ("lc-linear", "kmeans", True, THEIR_LOSS),
    "vqbridge": ("vqbridge", None, None, PACKAGE_LOSS),
    "none": ("none", None, None, PACKAGE_LOSS),
}
STRESS_ARMS = ("lc-kmeans", "vqbridge", "none")


def build_table(kind: str, size: int, args) -> Path:
    """The (K, 64) table of one kind ("kmeans" or "selection"), built once and reused (a file made with other
    settings is refused: delete it or choose another --tables)."""
    path = Path(args.tables) / f"{kind}-{size}.safetensors"
    iterations = args.kmeans_iterations if kind == "kmeans" else 0
    if not path.exists():
        build_codebook(CodebookBuildConfig(
            encoder=args.encoder, data="builtin", output=str(path), codebook_size=size, pool=1, groups="classes",
            samples_per_group=args.samples_per_group, random_crops=args.random_crops, seed=0,
            kmeans_iterations=iterations, num_workers=0))
    _, meta = load_table(path)
    made = (meta["encoder"], int(meta["random_crops"]), int(meta["sample_cap"]),
            json.loads(meta["kmeans"])["max_iterations"])
    wanted = (str(Path(args.encoder).resolve()), args.random_crops, args.samples_per_group, iterations)
    if made != wanted:
        raise SystemExit(f"{path} was built with (encoder, crops, cap, iterations) {made}, not {wanted}: delete it or "
                         "choose another --tables.")
    return path


def build_model(arm: str, size: int, seed: int, args) -> FVQModel:
    bridge, table, frozen, loss = ARMS[arm]
    config = FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")
    changes = {"num_vq_embeddings": size, "bridge_type": bridge, **loss}
    if bridge == "lc-linear":
        changes.update(bridge_config={}, table_dim=config["latent_channels"], freeze_table=frozen)
    elif bridge == "none":
        changes.update(bridge_config={})
    torch.manual_seed(seed)
    model = FVQModel.from_config({**config, **changes})
    if table is not None:
        model.load_table(build_table(table, size, args))
    return model


def run_one(arm: str, size: int, seed: int, args, sets: dict) -> dict:
    model = build_model(arm, size, seed, args)
    start = model.quantizer.embedding.weight.detach().clone()
    timing = train(model, args.steps, args.lr, "lin", seed, args.batch_size)
    model.eval()
    c = model.config
    row = {"arm": arm, "codebook_size": size, "seed": seed, "seconds_per_step": timing["seconds_per_step"],
           # what the arm was: read back off the trained model
           "model": {"bridge_type": c.bridge_type, "table_dim": c.table_dim, "freeze_table": c.freeze_table,
                     "codebook_weight": c.codebook_weight, "commitment_weight": c.commitment_weight,
                     "table": ARMS[arm][1] or "random", "table_moved": float(
                         (model.quantizer.embedding.weight.detach() - start).abs().max())}}
    for name, images in sets.items():
        metrics, _ = evaluate(model, images, batch_size=64)
        row[name] = {k: metrics[k] for k in ("usage", "perplexity", "num_tokens", "psnr", "ssim")}
        row[name]["tokens_per_code"] = metrics["num_tokens"] / size
    h = row["heldout"]
    print(f"{arm}@{size} seed {seed}: held-out usage {h['usage']:.2%} ({h['tokens_per_code']:.1f} tokens/code), "
          f"perplexity {h['perplexity']:.0f}, PSNR {h['psnr']:.2f} dB, {row['seconds_per_step']:.2f} s/step", flush=True)
    return row


def spread(images, count: int | None):
    """`count` tiles evenly spaced over the set (every photo's strips, not the first ones); None: all."""
    if count is None or count >= len(images):
        return images
    return Subset(images, torch.linspace(0, len(images) - 1, count).round().long().tolist())


def run(args) -> dict:
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.exists() and args.resume else {}
    results.setdefault("runs", {})
    setup = {k: getattr(args, k) for k in ("encoder", "steps", "lr", "batch_size", "random_crops",
                                           "samples_per_group", "kmeans_iterations", "eval_tiles")}
    if results.setdefault("setup", setup) != setup:
        raise SystemExit(f"--resume with other settings than {path}'s runs: {results['setup']} vs {setup}.")
    Path(args.tables).mkdir(parents=True, exist_ok=True)
    resolution = FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")["sample_size"]
    sets = {s: spread(EvalImages(f"builtin:{s}", resolution, limit=args.eval_limit), args.eval_tiles)
            for s in ("heldout", "unseen")}
    plan = [(a, k, s) for k in args.codebook_sizes for s in args.seeds for a in args.arms]
    if args.stress:
        plan += [(a, k, args.seeds[0]) for k in args.stress_sizes for a in STRESS_ARMS]
    for arm, size, seed in plan:
        key = f"{arm}@{size}@{seed}"
        if key not in results["runs"]:
            results["runs"][key] = run_one(arm, size, seed, args, sets)
            path.write_text(json.dumps(results, indent=2))
    record_tables(results, args)
    path.write_text(json.dumps(results, indent=2))
    return results


def record_tables(results: dict, args) -> None:
    """The metadata of every table the runs used, into `results["tables"]`."""
    for kind, size in sorted({(ARMS[r["arm"]][1], r["codebook_size"]) for r in results["runs"].values()
                              if ARMS[r["arm"]][1]}):
        _, meta = load_table(build_table(kind, size, args))
        results.setdefault("tables", {})[f"{kind}-{size}"] = meta


def _spread(values: list[float], fmt: str) -> str:
    """mean (min-max) over seeds; one value alone."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def report(results: dict) -> str:
    groups: dict[tuple[int, str], list[dict]] = {}
    for row in results["runs"].values():
        groups.setdefault((row["codebook_size"], row["arm"]), []).append(row)
    lines = ["Every arm trains the backbone from scratch; the lc-* tables come from the encoder of a trained in-domain "
             "tokenizer (not CLIP).",
             "mean (min-max) over seeds; usage = codes hit / K over every token of the set",
             "| K | arm | seeds | held-out usage | tokens / code | perplexity | PSNR (dB) | unseen usage | tokens / code "
             "| perplexity | PSNR (dB) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (size, arm), rows in sorted(groups.items(), key=lambda g: (g[0][0], list(ARMS).index(g[0][1]))):
        cells = [f"{size:,}", arm, str(len(rows))]
        for name in ("heldout", "unseen"):
            cells += [_spread([100 * r[name]["usage"] for r in rows], ".1f") + "%",
                      f"{rows[0][name]['tokens_per_code']:.1f}",
                      _spread([r[name]["perplexity"] for r in rows], ",.0f"),
                      _spread([r[name]["psnr"] for r in rows], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default=str(ROOT / "outputs" / "fvq-cpu-4k" / "model"),
                        help="the tokenizer whose encoder features the tables are made from (the main job's)")
    parser.add_argument("--codebook-sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stress", action="store_true", help="also --stress-sizes for lc-kmeans, vqbridge, none")
    parser.add_argument("--stress-sizes", type=int, nargs="+", default=[65536, 100000])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--random-crops", type=int, default=300, help="crops per photo the tables are built from")
    parser.add_argument("--samples-per-group", type=int, default=20_000)
    parser.add_argument("--kmeans-iterations", type=int, default=25)
    parser.add_argument("--tables", default="outputs/lc-tables", help="folder of the built tables (reused)")
    parser.add_argument("--json", default="benchmarks/vqgan_lc_side_by_side.json")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --json")
    parser.add_argument("--report-only", action="store_true", help="print the table of the runs in --json (and record "
                        "their tables' metadata); run nothing")
    parser.add_argument("--eval-limit", type=int, help="evaluate on at most this many tiles per set (smoke tests)")
    parser.add_argument("--eval-tiles", type=int, default=1500, help="tiles per set, evenly spaced over it (the held-out "
                        "strips have 7,188, the unseen photos 10,270: all of them cost twice the training; 0: all)")
    args = parser.parse_args()
    args.eval_tiles = args.eval_tiles or None
    if args.report_only:  # e.g. of a run stopped part-way (continue it with --resume)
        results = json.loads(Path(args.json).read_text())
        record_tables(results, args)
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(report(results))
        return
    print(report(run(args)))


if __name__ == "__main__":
    main()
