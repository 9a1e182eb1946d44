"""Sampling speed of FVQTransformer with and without the key-value cache (issue 7), in tokens per second.

For each transformer preset it samples a batch of token grids with classifier-free guidance (which doubles
the batch), once with the KV cache (each step processes one new token) and once without (each step re-runs
the whole prefix), and reports generated tokens per second, the speed-up and the extra peak memory, each
measurement in a fresh process. Weights are random: speed does not depend on them. The sampled tokens of
both modes are compared under greedy decoding as a check.

    python benchmarks/generation_speed.py                          # fvq-gpt-cpu, and fvq-gpt-b at 16 x 16 (CPU: minutes)
    python benchmarks/generation_speed.py --quick                  # fvq-gpt-cpu only
    python benchmarks/generation_speed.py --presets fvq-gpt-b --vocab-size 16384 --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import in_fresh_process, measure  # noqa: E402

from fvq_hf import FVQTransformer  # noqa: E402
from fvq_hf.pipelines.sampling import generate_tokens  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _sampling(preset: str, vocab_size: int | None, batch: int, use_cache: bool, guidance: float, repeats: int,
              device: str, threads: int) -> dict:
    torch.set_num_threads(threads)

    def setup():
        torch.manual_seed(0)
        config = dict(FVQTransformer.load_config(ROOT / "hub_configs" / preset))
        model = FVQTransformer.from_config({**config, **({"vocab_size": vocab_size} if vocab_size else {})})
        with torch.no_grad():
            model.output.weight.normal_(std=0.02)  # zero-initialised output would make every logit equal
        model = model.to(device).eval()
        labels = torch.arange(batch, device=device) % model.config.num_classes

        def step():
            return generate_tokens(model, labels, guidance, temperature=0, use_cache=use_cache)

        return step

    result = measure(setup, repeats, device)
    tokens = result.pop("result")
    return {**result, "tokens": tokens.numel(), "tokens_per_s": tokens.numel() / result["seconds"],
            "checksum": int(tokens.sum())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["fvq-gpt-cpu", "fvq-gpt-b"])
    parser.add_argument("--vocab-size", type=int, help="override the presets' vocabulary (e.g. 16384 for fvq-16k)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="fvq-gpt-cpu only, one repeat")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    presets, repeats = (["fvq-gpt-cpu"], 1) if args.quick else (args.presets, args.repeats)

    rows = []
    for preset in presets:
        config = FVQTransformer.load_config(ROOT / "hub_configs" / preset)
        for use_cache in (True, False):
            row = in_fresh_process(_sampling, preset, args.vocab_size, args.batch_size, use_cache,
                                   args.guidance_scale, repeats, args.device, args.threads)
            rows.append({"preset": preset, "vocab_size": args.vocab_size or config["vocab_size"],
                         "grid": config["token_grid_size"], "cache": use_cache, **row})
    print(f"device {args.device}, {args.threads} threads, batch {args.batch_size} (x2 with guidance "
          f"{args.guidance_scale}), greedy, best of {repeats}")
    print("| preset | vocabulary | grid | KV cache | seconds per batch | tokens/s | speed-up | extra peak MiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for preset in presets:
        cached, full = [r for r in rows if r["preset"] == preset]
        for row in (cached, full):
            if "error" in row:
                print(f"| {preset} | | | {row['cache']} | {row['error']} | | | |")
                continue
            speedup = row["tokens_per_s"] / full["tokens_per_s"] if "tokens_per_s" in full else float("nan")
            print(f"| {preset} | {row['vocab_size']:,} | {row['grid'][0]}x{row['grid'][1]} | "
                  f"{'yes' if row['cache'] else 'no'} | {row['seconds']:.2f} | {row['tokens_per_s']:.0f} | "
                  f"{speedup:.1f}x | {row['extra_peak_mib']:.0f} |")
        if "checksum" in cached and "checksum" in full:
            print(f"{preset}: same greedy tokens with and without the cache: {cached['checksum'] == full['checksum']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
