"""The flags of the optimisation loop that both training commands share (`fvq-train`, `fvq-train-transformer`): one
per field of `training.config.LoopConfig`, with the command's own defaults, and the `LoopConfig` they give."""

from __future__ import annotations

import argparse
import dataclasses

from ..training.config import LoopConfig
from ..training.schedule import SCHEDULES


def add_loop_args(p: argparse.ArgumentParser, defaults: LoopConfig) -> None:
    """Flags of the optimisation loop, defaulting to `defaults` (the command's `LoopConfig`)."""
    p.add_argument("--output-dir", default=defaults.output_dir)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="per process; global = this x processes x accumulation")
    p.add_argument("--gradient-accumulation-steps", type=int, default=defaults.gradient_accumulation_steps)
    p.add_argument("--max-steps", type=int, default=defaults.max_steps, help="optimizer steps; overrides --epochs")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    p.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule, help="learning annealing after warmup (warmup-cosine: VQGAN-LC's, warmup from 0 then a half-cosine to 0)")
    p.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs, help="warmup length in epochs")
    p.add_argument("--warmup-fraction", type=float, default=defaults.warmup_fraction,
                   help="warmup as a fraction of the run, if no --warmup-epochs")
    p.add_argument("--constant-fraction", type=float, default=defaults.constant_fraction,
                   help="constant part of the post-warmup run")
    p.add_argument("--beta1", type=float, default=defaults.beta1)
    p.add_argument("--beta2", type=float, default=defaults.beta2)
    p.add_argument("--adam-eps", type=float, default=defaults.adam_eps, help="Adam's epsilon (VQGAN-LC: 1e-7)")
    p.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm,
                   help="clip the gradient norm to this (inf: no clipping, as VQGAN-LC)")
    p.add_argument("--gradient-checkpointing", action="store_true", default=defaults.gradient_checkpointing,
                   help="recompute activations in the backward pass: less memory, about a third more compute")
    p.add_argument("--compile", action="store_true", default=defaults.compile, help="torch.compile the models (the "
                   "first steps compile: minutes; see benchmarks/RESULTS.md for what it gains)")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=defaults.mixed_precision,
                   help="default: bf16 on GPU, no on CPU (fp16 autocast does nothing on CPU)")
    p.add_argument("--num-workers", type=int, default=defaults.num_workers)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--log-every", type=int, default=defaults.log_every)
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    p.add_argument("--checkpoints-total-limit", type=int, default=defaults.checkpoints_total_limit)
    p.add_argument("--resume", action="store_true", default=defaults.resume,
                   help="continue from the latest complete checkpoint")
    p.add_argument("--stop-after", type=int, default=defaults.stop_after, help="checkpoint and stop after this many "
                   "steps in this run (for time-limited jobs; continue with --resume)")
    p.add_argument("--report-to", default=defaults.report_to, help="accelerate tracker(s), or 'none'")


def loop_config(args: argparse.Namespace) -> LoopConfig:
    """The `LoopConfig` of parsed loop flags (its checks name the flag of a bad value)."""
    return LoopConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(LoopConfig)})
