"""What `--gradient-checkpointing` saves: one training step's extra peak memory and time, with and without it.

For the tokenizer (a preset's encoder + decoder, batch B at R px; the codebook is small here since checkpointing
does not touch the quantizer) and the transformer (a preset at its token grid), each in a fresh process.

    python benchmarks/gradient_checkpointing.py            # fvq-16k at 256 px batch 4, fvq-gpt-b batch 8
    python benchmarks/gradient_checkpointing.py --quick    # fvq-cpu-4k at 64 px, fvq-gpt-cpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bridge_cost import autoencoder_step  # noqa: E402
from measure import in_fresh_process, measure  # noqa: E402

from fvq_hf import FVQTransformer  # noqa: E402
from fvq_hf.prior.transformer import next_token_loss  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _transformer_step(variant: str, batch: int, checkpointing: bool, repeats: int, device: str) -> dict:
    def setup():
        torch.manual_seed(0)
        model = FVQTransformer.from_config(FVQTransformer.load_config(ROOT / "hub_configs" / variant)).to(device)
        model.train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        tokens = torch.randint(0, model.config.vocab_size, (batch, model.num_tokens - 1), device=device)
        labels = torch.zeros(batch, dtype=torch.long, device=device)

        def step():
            model.zero_grad(set_to_none=True)
            next_token_loss(model, tokens, labels).backward()

        return step

    out = measure(setup, repeats, device)
    return {"seconds": out["seconds"], "extra_peak_mib": out["extra_peak_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="fvq-16k")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--tokenizer-batch", type=int, default=4)
    parser.add_argument("--transformer", default="fvq-gpt-b")
    parser.add_argument("--transformer-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    if args.quick:
        args.tokenizer, args.resolution, args.tokenizer_batch = "fvq-cpu-4k", 64, 2
        args.transformer, args.transformer_batch, args.repeats = "fvq-gpt-cpu", 2, 1
    rows = []
    for checkpointing in (False, True):
        rows.append({"model": f"{args.tokenizer}, batch {args.tokenizer_batch} at {args.resolution} px",
                     "checkpointing": checkpointing,
                     **in_fresh_process(autoencoder_step, args.tokenizer, args.tokenizer_batch, args.resolution,
                                        args.repeats, args.device, checkpointing)})
    for checkpointing in (False, True):
        rows.append({"model": f"{args.transformer}, batch {args.transformer_batch}", "checkpointing": checkpointing,
                     **in_fresh_process(_transformer_step, args.transformer, args.transformer_batch, checkpointing,
                                        args.repeats, args.device)})
    print(f"{args.device}, {torch.get_num_threads()} threads; one training step (forward + backward)")
    print("| model | gradient checkpointing | extra peak (MiB) | time (s) |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        if "error" in row:
            print(f"| {row['model']} | {row['checkpointing']} | {row['error']} | |")
            continue
        print(f"| {row['model']} | {'on' if row['checkpointing'] else 'off'} | {row['extra_peak_mib']:,.0f} | "
              f"{row['seconds']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
