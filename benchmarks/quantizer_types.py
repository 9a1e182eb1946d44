"""Every quantizer type with and without the VQBridge, and vector-quantize-pytorch's counterparts (issue 12).

One backbone (fvq-cpu-4k: 64 px crops of the builtin photos, downsample 8, an 8 x 8 latent grid, d = 8), K = 4096,
and one recipe for every row (`quantizer_comparison.train`: same seed, batch, LR, warmup and linear decay, the same
steps). Each row is evaluated on every held-out tile (`builtin:heldout`: overlapping tiles and their mirrors).
- vq, residual (depth 4), multiscale (scales 1, 2, 3, 4, 5, 6, 8 for the 8 x 8 grid, VAR's 4 shared phi convs):
  each without a bridge (plain codebook), with the fvq-cpu-4k VQBridge (FVQ), and with the authors' DiT QBridge-S/4
  as their code configures the variant (multi-scale: their N(0, 1) table);
- vqtorch-residual: the peer's `ResidualVQ` (4 quantizers, one shared codebook as ours, EMA updates, dead codes
  replaced);
- vqtorch-vqbridge: the peer's FVQ hook, `VectorQuantize(vq_bridge=...)` with this package's VQBridge plugged
  in, the peer's defaults otherwise (its learnable codebook, rotation trick).

    python benchmarks/quantizer_types.py --quick     # 20 steps, 256 evaluation tiles: a smoke test (a few minutes)
    python benchmarks/quantizer_types.py             # 1,000 steps a row (about 7 min a row on 2 cores)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from quantizer_comparison import ROOT, PeerQuantizer, train  # the sibling script: run from benchmarks/
from torch import nn

from fvq_hf import FVQModel
from fvq_hf.bridges import build_bridge, qbridge_config
from fvq_hf.data.sources import EvalImages
from fvq_hf.evaluation.evaluate import evaluate

K = 4096
SCALES = [1, 2, 3, 4, 5, 6, 8]
ROWS = ("vq", "vq+vqbridge", "vq+dit", "residual", "residual+vqbridge", "residual+dit", "multiscale",
        "multiscale+vqbridge", "multiscale+dit", "vqtorch-residual", "vqtorch-vqbridge")
# The authors' DiT QBridge rows as their code configures each variant: QBridge-S/4 (their default QB_type), and for
# multi-scale their VAR code's N(0, 1) table (`nn.Embedding`'s default, never re-initialised there).
DIT_BRIDGE = "QBridge-S/4"
TABLE_INITS = {"multiscale+dit": "normal"}
QUANTIZER_CONFIGS = {"vq": None, "residual": {"depth": 4}, "multiscale": {"scales": SCALES}}


class TableBridge(nn.Module):
    """This package's bridge on the peer's `(1, K, d)` codebook (one head)."""

    def __init__(self, bridge: nn.Module) -> None:
        super().__init__()
        self.bridge = bridge

    def forward(self, embed: torch.Tensor) -> torch.Tensor:
        return self.bridge(embed[0])[None]


def build_model(row: str, seed: int, phi_ratio: float = 0.5, table_init: str | None = None) -> FVQModel:
    config = FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")
    quantizer_type, _, bridge = row.partition("+")
    peer = quantizer_type.startswith("vqtorch-")
    torch.manual_seed(seed)
    bridge_config = qbridge_config(DIT_BRIDGE) if bridge == "dit" else config["bridge_config"] if bridge else None
    model = FVQModel.from_config({
        **config, "num_vq_embeddings": K, "bridge_type": bridge or "none", "bridge_config": bridge_config,
        "table_init": table_init or TABLE_INITS.get(row, "auto"),
        "quantizer_type": "vq" if peer else quantizer_type,
        "quantizer_config": {**QUANTIZER_CONFIGS[quantizer_type], "phi_ratio": phi_ratio}
        if quantizer_type == "multiscale" else QUANTIZER_CONFIGS.get(quantizer_type)})
    if peer:
        from vector_quantize_pytorch import ResidualVQ, VectorQuantize

        dim = config["vq_embed_dim"]
        if row == "vqtorch-residual":
            model.quantizer = PeerQuantizer(ResidualVQ(
                dim=dim, num_quantizers=4, codebook_size=K, shared_codebook=True, decay=0.8, commitment_weight=0.25,
                threshold_ema_dead_code=2, accept_image_fmap=True), K, dim, depth=4)
        else:
            bridge = TableBridge(build_bridge("vqbridge", K, dim, config["bridge_config"]))
            model.quantizer = PeerQuantizer(VectorQuantize(dim=dim, codebook_size=K, commitment_weight=0.25,
                                                           vq_bridge=bridge, accept_image_fmap=True), K, dim)
    return model


def run_row(row: str, args, heldout, probe=None) -> dict:
    model = build_model(row, args.seed, args.phi_ratio, args.table_init)
    timing = train(model, args.steps, args.lr, "lin", args.seed, args.batch_size, probe, args.probe_every)
    model.eval()
    metrics, _ = evaluate(model, heldout, batch_size=64)
    result = {"row": row, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "history": timing["history"],
              "seconds_per_step": timing["seconds_per_step"], "tokens_per_image": metrics["num_tokens"] // len(heldout),
              **{k: metrics[k] for k in ("usage", "perplexity", "num_tokens", "tokens_per_code", "psnr", "ssim")},
              **{k: metrics[k] for k in ("level_name", "levels") if k in metrics}}
    print(f"{row}: usage {result['usage']:.2%} at {result['tokens_per_code']:.0f} tokens/code, PSNR "
          f"{result['psnr']:.2f} dB, {result['seconds_per_step']:.2f} s/step", flush=True)
    return result


def table(results: dict) -> str:
    lines = ["| quantizer | bridge | tokens / image | held-out usage | tokens / code | perplexity | PSNR (dB) | SSIM | s/step |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in ROWS:
        if row not in results:
            continue
        r = results[row]
        quantizer, _, bridge = row.partition("+")
        bridge = ("VQBridge" if "vqbridge" in row else f"DiT {DIT_BRIDGE}" if bridge == "dit"
                  else "none (EMA)" if quantizer.startswith("vqtorch") else "none")
        lines.append(f"| {quantizer.replace('-vqbridge', '')} | {bridge} | {r['tokens_per_image']} | {r['usage']:.2%} | "
                     f"{r['tokens_per_code']:.0f} | {r['perplexity']:,.0f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['seconds_per_step']:.2f} |")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in ROWS if r in results]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = ["tab:blue" if "vqbridge" in r else "tab:orange" if r.endswith("+dit") else "tab:gray" for r in rows]
    for ax, key, label in ((axes[0], "usage", "held-out codebook usage (%)"), (axes[1], "psnr", "held-out PSNR (dB)")):
        values = [results[r][key] * (100 if key == "usage" else 1) for r in rows]
        ax.barh(rows, values, color=colors)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, axis="x")
        if key == "psnr":
            ax.set_xlim(min(values) - 1, max(values) + 0.5)
    fig.suptitle(f"K = {K}, {results[rows[0]]['steps']} steps each (blue: VQBridge, orange: DiT QBridge)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-limit", type=int, help="evaluate on at most this many held-out tiles")
    parser.add_argument("--phi-ratio", type=float, default=0.5, help="the multi-scale rows' phi_ratio (0: no phi conv)")
    parser.add_argument("--table-init", choices=("auto", "uniform", "normal"),
                        help="every row's table_init (default: as the row's code configures it)")
    parser.add_argument("--probe-every", type=int, default=0,
                        help="also measure usage on 512 held-out tiles every N steps (not counted as training time)")
    parser.add_argument("--json", default="benchmarks/quantizer_types.json")
    parser.add_argument("--plot", default="benchmarks/quantizer-types.png", help="PNG path ('' for none)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --json")
    parser.add_argument("--quick", action="store_true", help="20 steps, 256 tiles, no plot: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.eval_limit = 20, args.eval_limit or 256
    path = Path(args.json)
    results = json.loads(path.read_text()) if args.resume and path.exists() else {}
    resolution = FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")["sample_size"]
    heldout = EvalImages("builtin:heldout", resolution, limit=args.eval_limit)
    probe = EvalImages("builtin:heldout", resolution, limit=512) if args.probe_every else None
    for row in args.rows:
        if row not in results:
            results[row] = run_row(row, args, heldout, probe)
            path.write_text(json.dumps(results, indent=2))
    print(table(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
