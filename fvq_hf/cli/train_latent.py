r"""`fvq-train-latent`: train a class-conditional diffusion or flow generator on a tokenizer's continuous latents
(VQGAN-LC's DiT-LC / SiT-LC / LDM-LC), with diffusers' models and schedulers and accelerate.

    # CPU, minutes: latents of the builtin photos (fvq-extract-codes --latents), the small DiT preset
    fvq-extract-codes --tokenizer outputs/fvq-cpu-4k/model-folded --data builtin --random-crops 200 --latents \
        --output-dir outputs/latents-cpu-4k
    fvq-train-latent --config hub_configs/latent-dit-cpu --latents outputs/latents-cpu-4k \
        --eval-latents outputs/latents-cpu-4k-heldout --output-dir outputs/latent-dit-cpu --max-steps 1500 --lr 1e-3
    # 8 GPUs, DiT-LC's recipe (DiT-XL/2, AdamW lr 1e-4 constant, global batch 256, EMA 0.9999, 400k steps)
    accelerate launch --multi_gpu --num_processes 8 -m fvq_hf.cli.train_latent --config hub_configs/latent-dit-xl-2 \
        --latents latents/imagenet-256 --batch-size 32 --max-steps 400000 --ema-decay 0.9999 --no-ema-warmup \
        --output-dir runs/dit-lc
    # Resume after a crash or preemption: the same command with --resume

The preset names the denoiser (`transformer/`: DiTTransformer2DModel, or `unet/`: UNet2DModel) and the objective
(`scheduler/`: DDPMScheduler for noise prediction, FlowMatchEulerDiscreteScheduler for SiT's linear path with
velocity); the latents fix the channels, grid and classes. The latents are multiplied by `--scaling-factor`
(default: 1 / their std over the training latents, measured once and stored in the tokenizer's config of the saved
pipeline; VQGAN-LC used 1). Labels become the null class with probability `--class-dropout` (0.1) for
classifier-free guidance. At the end `<output-dir>/pipeline` holds an `FVQLatentPipeline` with its card,
`eval.json` the held-out loss (`--eval-latents`) beside the untrained model's and the class-Gaussian denoiser's, and
`samples.png` samples of each class (one row per class, up to 16), quantized with the codebook before decoding.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..diffusion.schedulers import SAMPLER_NAMES
from ..training.config import LatentTrainConfig, latent_loop
from .errors import add_debug_flag, run_command
from .loop_args import add_loop_args, loop_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fvq-train-latent", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = {f.name: f.default for f in dataclasses.fields(LatentTrainConfig)}
    p.add_argument("--config", required=True, help="latent generator preset (hub_configs/latent-*), pipeline folder, "
                   "or hub id")
    p.add_argument("--init-weights", action="store_true",
                   help="start from the weights stored with --config (fine-tuning) instead of random ones")
    p.add_argument("--latents", required=True, help="codes folder written by fvq-extract-codes --latents")
    p.add_argument("--eval-latents", help="held-out latents folder: its denoising loss is measured at the end")
    p.add_argument("--tokenizer", help="tokenizer of the saved pipeline (default: the latents' tokenizer)")
    add_loop_args(p, latent_loop())
    p.add_argument("--weight-decay", type=float, default=defaults["weight_decay"], help="AdamW weight decay")
    p.add_argument("--class-dropout", type=float, default=defaults["class_dropout"],
                   help="probability of training a label as null")
    p.add_argument("--scaling-factor", type=float, help="multiply the latents by this (default: 1 / their std)")
    p.add_argument("--ema-decay", type=float, help="keep an EMA of the weights with this decay (saved weights)")
    p.add_argument("--no-ema-warmup", dest="ema_warmup", action="store_false",
                   help="EMA at a constant decay from the first step (DiT's), not diffusers' warmup")
    p.add_argument("--eval-every", type=int, help="held-out loss every this many steps (with --eval-latents)")
    p.add_argument("--eval-batch-size", type=int, default=defaults["eval_batch_size"])
    p.add_argument("--eval-draws", type=int, default=defaults["eval_draws"],
                   help="seeded (noise, timestep) draws per held-out latent")
    p.add_argument("--sampler", choices=SAMPLER_NAMES, help="sampler of the saved pipeline and samples.png "
                   "(default: ddim for diffusion, euler for flow)")
    p.add_argument("--sample-steps", type=int, default=defaults["sample_steps"])
    p.add_argument("--sample-guidance", type=float, default=defaults["sample_guidance"],
                   help="guidance scale of samples.png")
    p.add_argument("--samples-per-class", type=int, default=defaults["samples_per_class"])
    p.add_argument("--no-quantize-samples", dest="quantize_samples", action="store_false",
                   help="decode samples.png without quantizing the sampled latents")
    add_debug_flag(p)
    return p


def train_config(args: argparse.Namespace) -> LatentTrainConfig:
    """The `LatentTrainConfig` of parsed flags (its checks name the flag of a bad value)."""
    fields = {f.name for f in dataclasses.fields(LatentTrainConfig)} - {"loop"}
    return LatentTrainConfig(loop=loop_config(args), **{name: getattr(args, name) for name in fields})


def build_config(argv: list[str] | None = None) -> LatentTrainConfig:
    """`fvq-train-latent`'s command line -> its `LatentTrainConfig`."""
    return train_config(build_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    from ..training.latent_trainer import train

    run_command(build_parser(), argv, lambda args: train(train_config(args)))


if __name__ == "__main__":
    main()
