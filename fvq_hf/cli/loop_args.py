"""The flags of the optimisation loop that both training commands share (`fvq-train`, `fvq-train-transformer`)."""

from __future__ import annotations

import argparse

from ..training.schedule import SCHEDULES


def add_loop_args(p: argparse.ArgumentParser, lr: float, batch_size: int, epochs: int, schedule: str,
                  warmup_fraction: float, output_dir: str) -> None:
    """Flags of the optimisation loop, with the command's own defaults."""
    p.add_argument("--output-dir", default=output_dir)
    p.add_argument("--batch-size", type=int, default=batch_size,
                   help="per process; global = this x processes x accumulation")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--max-steps", type=int, help="optimizer steps; overrides --epochs")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate")
    p.add_argument("--schedule", choices=SCHEDULES, default=schedule, help="learning annealing after warmup")
    p.add_argument("--warmup-epochs", type=float, help="warmup length in epochs")
    p.add_argument("--warmup-fraction", type=float, default=warmup_fraction,
                   help="warmup as a fraction of the run, if no --warmup-epochs")
    p.add_argument("--constant-fraction", type=float, default=0.3, help="constant part of the post-warmup run")
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.95)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass: less memory, about a third more compute")
    p.add_argument("--compile", action="store_true", help="torch.compile the models (the first steps compile: "
                   "minutes; see benchmarks/RESULTS.md for what it gains)")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"],
                   help="default: bf16 on GPU, no on CPU (fp16 autocast does nothing on CPU)")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--checkpoints-total-limit", type=int, default=2)
    p.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    p.add_argument("--stop-after", type=int, help="checkpoint and stop after this many steps in this run "
                   "(for time-limited jobs; continue with --resume)")
    p.add_argument("--report-to", default="tensorboard", help="accelerate tracker(s), or 'none'")


def check_loop_args(args: argparse.Namespace) -> None:
    for name in ("batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every",
                 "checkpoints_total_limit"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1.")
    for name in ("max_steps", "stop_after"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1.")
    if not args.lr > 0:
        raise ValueError(f"--lr must be > 0 (the peak learning rate), got {args.lr}.")
