"""Quantizers side by side on one backbone, one data set, one recipe (issue 4, items 1-3).

Every quantizer trains the fvq-cpu-4k backbone (downsample 8, d = 8, 64 px crops of the builtin photos) for
the same steps, with the same seed, batch, LR and learning-annealing schedule. Then it is evaluated over
every token of the held-out strips (`builtin:heldout`) and of unseen photos (`builtin:unseen`):
- none: plain VQ;
- linear: SimVQ;
- mlp: the FVQ paper's MLP projector baseline (lin/5 style) on a frozen random table (not VQGAN-LC: no table
  made from data);
- vqbridge: FVQ;
- vqtorch-ema: the peer library vector-quantize-pytorch, `VectorQuantize` with EMA updates and dead-code
  replacement, in the same slot.
The ablation (item 2) trains none and vqbridge under a constant and the annealed LR, measuring held-out
usage every few steps.

    python benchmarks/quantizer_comparison.py --quick     # tiny: 2 codebook sizes, 30 steps (a few minutes)
    python benchmarks/quantizer_comparison.py             # K in {1024, 4096, 16384}, 150 steps, LR sweep, ablation
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from fvq_hf import FVQModel
from fvq_hf.data.sources import EvalImages, RandomCrops, open_source
from fvq_hf.evaluation.evaluate import evaluate
from fvq_hf.losses import TokenizerLoss
from fvq_hf.quantizers import IdsSpec, Quantizer, QuantizerOutput, ResidualQuantizer, VectorQuantizer
from fvq_hf.training.schedule import annealing_factor

ROOT = Path(__file__).resolve().parents[1]
QUANTIZERS = ("none", "linear", "mlp", "vqbridge", "vqtorch-ema")


class PeerQuantizer(Quantizer):
    """A vector-quantize-pytorch quantizer (`accept_image_fmap=True`) behind this package's quantizer protocol: its
    ids are those of plain VQ, or of residual quantization at `depth` codes per position (a residual peer)."""

    display_name = "vector-quantize-pytorch"

    def __init__(self, peer: nn.Module, codebook_size: int, code_dim: int, depth: int | None = None) -> None:
        super().__init__(codebook_size, code_dim, {"depth": depth})
        self.peer = peer
        self.depth = depth

    @classmethod
    def ids_spec(cls, config) -> IdsSpec:
        """The ids of the registered type the peer stands in for: residual at `depth`, else plain VQ."""
        return ResidualQuantizer.ids_spec(config) if config["depth"] else VectorQuantizer.ids_spec({})

    def split_levels(self, indices: torch.Tensor) -> list[torch.Tensor]:
        return list(indices.unbind(dim=-1)) if self.depth else [indices]

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        quantized, indices, commitment = self.peer(latents)
        # ResidualVQ gives one commitment loss per quantizer: summed, as its README trains with
        return QuantizerOutput(quantized, indices, torch.zeros((), device=latents.device), commitment.sum())

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Ids -> `(B, d, h, w)` latents."""
        codebook = getattr(self.peer, "_codebook", None)
        if getattr(codebook, "vq_bridge", None) is not None:
            # The peer's get_output_from_indices reads the raw table and skips its vq_bridge (1.32.0).
            return rearrange(codebook.vq_bridge(codebook.embed)[0][indices], "b h w d -> b d h w")
        return rearrange(self.peer.get_output_from_indices(indices), "b h w d -> b d h w")


def build_model(quantizer: str, codebook_size: int, seed: int) -> FVQModel:
    config = FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")
    bridge = "none" if quantizer == "vqtorch-ema" else quantizer
    # The published baseline projector ("lin/5"): 4 hidden layers as wide as the code.
    bridge_config = {"depth": 4, "hidden_size": config["vq_embed_dim"]} if bridge == "mlp" else \
        config["bridge_config"] if bridge == "vqbridge" else None
    torch.manual_seed(seed)
    model = FVQModel.from_config({**config, "num_vq_embeddings": codebook_size, "bridge_type": bridge,
                                  "bridge_config": bridge_config})
    if quantizer == "vqtorch-ema":
        from vector_quantize_pytorch import VectorQuantize

        model.quantizer = PeerQuantizer(VectorQuantize(  # EMA codebook, dead-code replacement
            dim=config["vq_embed_dim"], codebook_size=codebook_size, decay=0.8, commitment_weight=0.25,
            threshold_ema_dead_code=2, accept_image_fmap=True), codebook_size, config["vq_embed_dim"])
    return model


def held_out_usage(model: FVQModel, images) -> dict:
    model.eval()
    metrics, _ = evaluate(model, images, batch_size=64)
    model.train()
    return metrics


def train(model: FVQModel, steps: int, lr: float, schedule: str, seed: int, batch_size: int,
          probe=None, probe_every: int = 0) -> dict:
    """The trainer's recipe without accelerate: Adam(0.9, 0.95), clip 1.0, 10% warmup, L2 + quantizer losses."""
    data = RandomCrops(open_source("builtin"), model.config.sample_size, length=steps * batch_size, seed=seed)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=2,
                                         generator=torch.Generator().manual_seed(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.95))
    loss_fn = TokenizerLoss(disc_weight=0.0)
    history, start = [], time.perf_counter()
    model.train()
    for step, images in enumerate(loader):
        for group in optimizer.param_groups:
            group["lr"] = lr * annealing_factor(step, steps, round(0.1 * steps), schedule)
        out = model(images)
        loss, _ = loss_fn.generator_loss(images, out.sample, out.codebook_loss, out.commitment_loss, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if probe is not None and probe_every and ((step + 1) % probe_every == 0 or step == 0):
            paused = time.perf_counter()
            history.append({"step": step + 1, "usage": held_out_usage(model, probe)["usage"],
                            "lr": optimizer.param_groups[0]["lr"]})
            start += time.perf_counter() - paused  # probing is not training time
    return {"seconds_per_step": (time.perf_counter() - start) / steps, "history": history}


def train_and_evaluate(quantizer: str, size: int, lr: float, schedule: str, args, heldout, unseen,
                       probe: bool = False) -> dict:
    model = build_model(quantizer, size, args.seed)
    timing = train(model, args.steps, lr, schedule, args.seed, args.batch_size, probe=heldout if probe else None,
                   probe_every=max(1, args.steps // 6))
    model.eval()
    row = {"quantizer": quantizer, "codebook_size": size, "lr": lr, "schedule": schedule, **timing}
    for name, images in (("heldout", heldout), ("unseen", unseen)):
        metrics, _ = evaluate(model, images, batch_size=64)
        row[name] = {k: metrics[k] for k in ("usage", "perplexity", "num_tokens", "psnr", "ssim")}
    print(f"{quantizer}@{size} lr {lr} {schedule}: held-out usage {row['heldout']['usage']:.2%}, "
          f"PSNR {row['heldout']['psnr']:.2f}, {row['seconds_per_step']:.2f} s/step", flush=True)
    return row


def run(args) -> dict:
    """Grid (items 1 and 3), LR sweep (same care for every quantizer), ablation (item 2); saved after each run."""
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.exists() and args.resume else {}
    for section in ("runs", "sweep", "ablation"):
        results.setdefault(section, {})
    resolution = FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")["sample_size"]
    heldout, unseen = (EvalImages(f"builtin:{split}", resolution, limit=args.eval_limit) for split in ("heldout", "unseen"))
    plan = [("runs", q, k, args.lr, "lin") for k in args.codebook_sizes for q in args.quantizers]
    plan += [("sweep", q, args.ablation_size, lr, "lin") for lr in args.sweep_lrs for q in args.quantizers]
    plan += [("ablation", q, args.ablation_size, args.lr, "const") for q in args.ablation_quantizers]
    for section, quantizer, size, lr, schedule in plan:
        key = f"{quantizer}@{size}@{lr:g}@{schedule}"
        if key in results[section]:
            continue
        # The annealed half of the ablation is the grid run itself, probed as it trains.
        probe = section == "ablation" or (quantizer in args.ablation_quantizers and size == args.ablation_size)
        results[section][key] = train_and_evaluate(quantizer, size, lr, schedule, args, heldout, unseen, probe)
        path.write_text(json.dumps(results, indent=2))
    return results


def _table(rows: list[dict]) -> list[str]:
    lines = ["| K | quantizer | lr | held-out usage | perplexity | PSNR (dB) | SSIM | unseen usage | unseen PSNR | s/step |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        h, u = r["heldout"], r["unseen"]
        lines.append(f"| {r['codebook_size']:,} | {r['quantizer']} | {r['lr']:g} | {h['usage']:.2%} | "
                     f"{h['perplexity']:,.0f} | {h['psnr']:.2f} | {h['ssim']:.3f} | {u['usage']:.2%} | {u['psnr']:.2f} | "
                     f"{r['seconds_per_step']:.2f} |")
    return lines


def report(results: dict, plot_prefix: str | None) -> str:
    runs = sorted(results["runs"].values(), key=lambda r: (r["codebook_size"], QUANTIZERS.index(r["quantizer"])))
    sweep = sorted([r for r in results["runs"].values() if r["codebook_size"] in
                    {s["codebook_size"] for s in results["sweep"].values()}] + list(results["sweep"].values()),
                   key=lambda r: (QUANTIZERS.index(r["quantizer"]), r["lr"]))
    lines = ["Grid (annealed LR):", *_table(runs)]
    if results["sweep"]:
        lines += ["", "LR sweep at one K (every quantizer):", *_table(sweep)]
    annealed = {f"{r['quantizer']}/lin": r["history"] for r in runs if r["history"]}
    ablation = {**annealed, **{f"{r['quantizer']}/const": r["history"] for r in results["ablation"].values()}}
    for key, history in sorted(ablation.items()):
        lines.append(f"usage over steps, {key}: " + ", ".join(f"{h['step']}: {h['usage']:.1%}" for h in history))
    if plot_prefix:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for quantizer in QUANTIZERS:
            rows = [r for r in runs if r["quantizer"] == quantizer]
            if rows:
                sizes = [r["codebook_size"] for r in rows]
                axes[0].plot(sizes, [100 * r["heldout"]["usage"] for r in rows], "o-", label=quantizer)
                axes[1].plot(sizes, [r["heldout"]["psnr"] for r in rows], "o-", label=quantizer)
        for ax, label in zip(axes, ("held-out codebook usage (%)", "held-out PSNR (dB)")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("codebook size K")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(f"{plot_prefix}-vs-k.png", dpi=110)
        plt.close(fig)
        if ablation:
            fig, ax = plt.subplots(figsize=(6, 3.8))
            for key, history in sorted(ablation.items()):
                ax.plot([h["step"] for h in history], [100 * h["usage"] for h in history], "o-", label=key)
            ax.set_xlabel("step")
            ax.set_ylabel("held-out codebook usage (%)")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            fig.savefig(f"{plot_prefix}-annealing.png", dpi=110)
            plt.close(fig)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codebook-sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--quantizers", nargs="+", default=list(QUANTIZERS), choices=QUANTIZERS)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep-lrs", type=float, nargs="*", default=[1e-4, 1e-3],
                        help="other learning rates tried for every quantizer at --ablation-size")
    parser.add_argument("--ablation-quantizers", nargs="*", default=["none", "vqbridge"])
    parser.add_argument("--ablation-size", type=int, default=4096)
    parser.add_argument("--json", default="benchmarks/quantizer_comparison.json")
    parser.add_argument("--plots", default="benchmarks/quantizers", help="PNG prefix ('' for none)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --json")
    parser.add_argument("--eval-limit", type=int, help="evaluate on at most this many tiles per set (smoke tests)")
    parser.add_argument("--quick", action="store_true", help="K in {256, 1024}, 30 steps, no LR sweep")
    args = parser.parse_args()
    if args.quick:
        args.codebook_sizes, args.steps, args.ablation_size, args.sweep_lrs = [256, 1024], 30, 256, []
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(report(run(args), args.plots or None))


if __name__ == "__main__":
    main()
