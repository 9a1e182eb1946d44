"""What the VQBridge costs per training step (issue 4, item 4), against the encoder/decoder step it rides on.

For the published presets (fvq-16k: L/4, fvq-65k and fvq-262k: L/8, d = 256) it times one forward + backward
of `bridge(table)` (the whole codebook, every step) and one forward + backward of the VQ-16 encoder and
decoder on a batch of 256 px images, each in a fresh process with its extra peak memory. The bridge is
folded away for inference, so this is a training-time cost only.

    python benchmarks/bridge_cost.py                  # the three presets, batch 2 at 256 px (CPU: a few minutes)
    python benchmarks/bridge_cost.py --quick          # fvq-16k only, batch 1 at 128 px
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import in_fresh_process, measure  # noqa: E402

from fvq_hf import FVQModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _config(variant: str) -> dict:
    return dict(FVQModel.load_config(ROOT / "hub_configs" / variant))


def _bridge_step(variant: str, repeats: int, device: str) -> dict:
    def setup():
        torch.manual_seed(0)
        quantizer = FVQModel.from_config(_config(variant)).quantizer.to(device)
        with torch.no_grad():
            quantizer.bridge.proj_out.weight.normal_(std=0.02)  # as after training: not the all-zero start

        def step():
            quantizer.zero_grad(set_to_none=True)
            quantizer.codebook().square().mean().backward()

        return step

    out = measure(setup, repeats, device)
    return {"seconds": out["seconds"], "extra_peak_mib": out["extra_peak_mib"]}


def autoencoder_step(variant: str, batch: int, resolution: int, repeats: int, device: str,
                     checkpointing: bool = False) -> dict:
    """One forward + backward of a preset's encoder and decoder (plain VQ, K = 1024): time and extra peak."""
    def setup():
        torch.manual_seed(0)
        model = FVQModel.from_config({**_config(variant), "bridge_type": "none", "bridge_config": None,
                                      "num_vq_embeddings": 1024})
        model = model.to(device)
        if checkpointing:
            model.enable_gradient_checkpointing()
        images = torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1

        def step():
            model.zero_grad(set_to_none=True)
            out = model(images)
            ((out.sample - images).square().mean() + out.codebook_loss + out.commitment_loss).backward()

        return step

    out = measure(setup, repeats, device)
    return {"seconds": out["seconds"], "extra_peak_mib": out["extra_peak_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["fvq-16k", "fvq-65k", "fvq-262k"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    if args.quick:
        args.variants, args.batch_size, args.resolution, args.repeats = ["fvq-16k"], 1, 128, 1
    # The encoder/decoder does not depend on K: one measurement serves every preset.
    autoencoder = in_fresh_process(autoencoder_step, args.variants[0], args.batch_size, args.resolution,
                                   args.repeats, args.device)
    rows = [{"variant": v, **in_fresh_process(_bridge_step, v, args.repeats, args.device)} for v in args.variants]
    print(f"{args.device}, {torch.get_num_threads()} threads; encoder+decoder fwd+bwd, batch {args.batch_size} at "
          f"{args.resolution} px: {autoencoder.get('seconds', float('nan')):.3f} s, "
          f"{autoencoder.get('extra_peak_mib', float('nan')):,.0f} MiB extra peak")
    print("| variant | bridge fwd+bwd (s) | bridge extra peak (MiB) | bridge / encoder+decoder time |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        if "error" in row:
            print(f"| {row['variant']} | {row['error']} | | |")
            continue
        ratio = row["seconds"] / autoencoder["seconds"] if "seconds" in autoencoder else float("nan")
        print(f"| {row['variant']} | {row['seconds']:.3f} | {row['extra_peak_mib']:,.0f} | {ratio:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "autoencoder": autoencoder, "bridge": rows},
                                              indent=2))


if __name__ == "__main__":
    main()
