"""The latent generators of `fvq-train-latent` on the builtin photos (issue 33): what they learn, what quantizing
their samples before decoding does, and what the trainer's loop costs against a bare diffusers training loop.

    # after the README's main job and `fvq-extract-codes ... --latents` (README: "Then: a diffusion or flow model")
    python benchmarks/latent_generation.py quality --tokenizer outputs/fvq-cpu-4k/model-folded \
        --latents outputs/latents-cpu-4k --eval-latents outputs/latents-cpu-4k-heldout --seeds 0 1 2 \
        --presets latent-dit-cpu latent-sit-cpu latent-unet-cpu --max-steps 1500 --lr 1e-3 --guidance 1 4 \
        --output benchmarks/latent_generation.json
    python benchmarks/latent_generation.py speed --latents outputs/latents-cpu-4k --preset latent-dit-cpu

`quality` trains each preset at each seed and reports, per run:
- the held-out denoising loss beside the untrained model's and the class-Gaussian denoiser's (same draws);
- for `--samples` sampled latents per class at each `--guidance` scale (`--steps` sampler steps), their variance and
  mean squared distance to the nearest code, beside the held-out data latents';
- the PSNR of the decoded samples against their own re-encoding (decode -> tokenizer round trip), with and without
  quantizing the samples first: how far each lies from images the tokenizer reproduces.
`speed` times optimizer steps of `fvq-train-latent` against a bare loop of the same model, batch and optimizer
(batch, noise, forward, MSE, backward, clipping, AdamW step: the loop of diffusers' example training scripts, written
out here since diffusers ships no DiT trainer), after a warm-up; both include data loading.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
from pathlib import Path

import torch

from fvq_hf import FVQLatentPipeline, FVQModel
from fvq_hf.data.latents import LatentDataset
from fvq_hf.diffusion.generators import (
    conditioning,
    disable_label_dropout,
    find_generator,
    load_scheduler,
    predict,
)
from fvq_hf.diffusion.objectives import training_pair
from fvq_hf.training.config import LatentTrainConfig, latent_loop
from fvq_hf.training.latent_trainer import train

ROOT = Path(__file__).parents[1]


def machine() -> str:
    """The CPU model and its widest vector ISA, for every figure."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", text)
    isa = "avx512f" if "avx512f" in text else "avx2" if "avx2" in text else platform.machine()
    return f"{model.group(1).strip() if model else platform.processor()}, {isa}, {torch.get_num_threads()} threads"


@torch.no_grad()
def distance_to_codes(vq: FVQModel, latents: torch.Tensor) -> float:
    """Mean squared distance of each latent vector `(B, d, h, w)` to its nearest code (the quantizer's search)."""
    quantized = vq.quantizer(latents).latents
    return torch.mean((quantized - latents) ** 2).item()


@torch.no_grad()
def round_trip_psnr(vq: FVQModel, images: torch.Tensor) -> float:
    """PSNR (dB, images in [-1, 1]) of `images` against their reconstruction by the tokenizer."""
    reconstructed = vq(images).sample.clamp(-1, 1)
    mse = torch.mean((reconstructed - images) ** 2, dim=(1, 2, 3))
    return torch.mean(10 * torch.log10(4.0 / mse.clamp_min(1e-12))).item()


def quality(args) -> list[dict]:
    held = LatentDataset(args.eval_latents, all_views=True)
    vq = FVQModel.from_pretrained(args.tokenizer).eval()
    data_latents = torch.stack([held[i][0] for i in range(len(held))])
    data_distance = distance_to_codes(vq, data_latents)
    rows = []
    for preset in args.presets:
        for seed in args.seeds:
            out = Path(args.work) / f"{preset}-seed{seed}"
            started = time.perf_counter()
            result = train(LatentTrainConfig(
                config=str(ROOT / "hub_configs" / preset), latents=args.latents, eval_latents=args.eval_latents,
                tokenizer=args.tokenizer, samples_per_class=2, sample_steps=args.steps,
                loop=latent_loop(output_dir=str(out), max_steps=args.max_steps, lr=args.lr, seed=seed,
                                 batch_size=args.batch_size, report_to="none", checkpoint_every=10**9)))
            minutes = (time.perf_counter() - started) / 60
            pipe = FVQLatentPipeline.from_pretrained(out / "pipeline")
            pipe.set_progress_bar_config(disable=True)
            num_classes, _ = conditioning(pipe.denoiser)
            labels = [c for c in range(num_classes) for _ in range(args.samples)]
            row = {"preset": preset, "seed": seed, "steps": result.step, "minutes": round(minutes, 1),
                   **{k: v for k, v in result.eval[args.eval_latents].items() if k.startswith("denoising")},
                   "samples": len(labels), "data_variance": data_latents.var().item(),
                   "data_distance_to_codes": data_distance, "guidance": {}}
            for guidance in args.guidance:
                outputs = {quantize: pipe(labels, guidance_scale=guidance, num_inference_steps=args.steps,
                                          output_type="pt", quantize=quantize,
                                          generator=torch.Generator().manual_seed(1000 + seed))
                           for quantize in (True, False)}
                row["guidance"][str(guidance)] = {
                    "sample_variance": outputs[False].latents.var().item(),
                    "sample_distance_to_codes": distance_to_codes(vq, outputs[False].latents),
                    "round_trip_psnr_quantized": round_trip_psnr(vq, outputs[True].images),
                    "round_trip_psnr_not_quantized": round_trip_psnr(vq, outputs[False].images)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def speed(args) -> dict:
    """s/step of fvq-train-latent's loop and of a bare loop, same model, batch, optimizer and machine."""
    data = LatentDataset(args.latents)
    folder = ROOT / "hub_configs" / args.preset
    component, cls = find_generator(folder)
    scheduler = load_scheduler(folder)
    steps = args.warmup + args.timed
    # the trainer's s/step without its warm-up, set-up and saving: two runs (warm-up only, warm-up + timed)
    timings = {}
    for name, max_steps in (("warmup", args.warmup), ("full", steps)):
        run_dir = Path(args.work) / f"speed-{args.preset}-{name}"
        started = time.perf_counter()
        train(LatentTrainConfig(config=str(folder), latents=args.latents, samples_per_class=1, sample_steps=1,
                                loop=latent_loop(output_dir=str(run_dir), max_steps=max_steps,
                                                 batch_size=args.batch_size, report_to="none",
                                                 checkpoint_every=10**9, num_workers=0)))
        timings[name] = time.perf_counter() - started
    trainer = (timings["full"] - timings["warmup"]) / args.timed

    config = cls.load_config(folder, subfolder=component)
    torch.manual_seed(0)
    model = cls.from_config({**config, "in_channels": data.latent_shape[0], "out_channels": data.latent_shape[0],
                             "sample_size": data.latent_shape[1],
                             **({"num_embeds_ada_norm": data.num_classes} if component == "transformer"
                                else {"num_class_embeds": data.num_classes + 1})})
    disable_label_dropout(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    batches = iter(loader)
    per_step = []
    for i in range(steps):
        started = time.perf_counter()  # data loading included, as in the trainer's s/step
        try:
            latents, labels = next(batches)
        except StopIteration:
            batches = iter(loader)
            latents, labels = next(batches)
        noisy, t, target = training_pair(scheduler, latents)
        loss = torch.mean((predict(model, noisy, t, labels) - target) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= args.warmup:
            per_step.append(time.perf_counter() - started)
    bare = statistics.mean(per_step)
    result = {"preset": args.preset, "batch_size": args.batch_size, "timed_steps": args.timed,
              "trainer_s_per_step": trainer, "bare_loop_s_per_step": bare, "ratio": trainer / bare,
              "machine": machine()}
    print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--tokenizer", required=True)
    q.add_argument("--latents", required=True)
    q.add_argument("--eval-latents", required=True)
    q.add_argument("--presets", nargs="+", default=["latent-dit-cpu", "latent-sit-cpu"])
    q.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    q.add_argument("--max-steps", type=int, default=1500)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--samples", type=int, default=8, help="samples per class")
    q.add_argument("--steps", type=int, default=50, help="sampler steps")
    q.add_argument("--guidance", type=float, nargs="+", default=[1.0, 4.0])
    q.add_argument("--work", default="outputs/latent-benchmark")
    q.add_argument("--output", help="write the rows (and the machine) to this JSON file")
    s = sub.add_parser("speed")
    s.add_argument("--latents", required=True)
    s.add_argument("--preset", default="latent-dit-cpu")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--warmup", type=int, default=10)
    s.add_argument("--timed", type=int, default=50)
    s.add_argument("--work", default="outputs/latent-benchmark")
    args = parser.parse_args(argv)
    if args.command == "quality":
        rows = quality(args)
        if args.output:
            Path(args.output).write_text(json.dumps({"machine": machine(), "command": vars(args), "rows": rows},
                                                    indent=2))
    else:
        speed(args)


if __name__ == "__main__":
    main()
