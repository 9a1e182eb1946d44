"""Learning annealing: the paper's learning-rate schedule (warmup, constant, then decay), and VQGAN-LC's."""

from __future__ import annotations

import math

SCHEDULES = ("lin", "const", "cos", "warmup-cosine")


def annealing_factor(step: int, total_steps: int, warmup_steps: int, schedule: str = "lin",
                     warmup_start: float = 0.005, constant_fraction: float = 0.3, final: float = 0.01) -> float:
    """The learning-rate multiplier at optimizer step `step` (0-based) of `total_steps`.

    Linear warmup from `warmup_start` to 1 over `warmup_steps`; then, over the rest of the run:
    "const" stays at 1; "lin" stays at 1 for the first `constant_fraction` of it, then decays linearly to
    `final` at the last step; "cos" does the same with a half-cosine. The released defaults are
    warmup from 0.005, constant for 30% of the post-warmup run, decay to 1% of the peak.

    "warmup-cosine" is VQGAN-LC's (their `util/lr_sched.py`, from MAE, with its `min_lr` 0): warmup from 0 (the
    first step's factor is 0), then a half-cosine over the rest of the run that reaches 0 at `total_steps`, one step
    after the last; `warmup_start`, `constant_fraction` and `final` do not apply. Their loop evaluates it at
    fractional epochs (`iteration / steps_per_epoch + epoch`), which is this at `warmup_steps = warmup_epochs x
    steps_per_epoch`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; choose one of {SCHEDULES}.")
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"Need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got {total_steps}, "
                         f"{warmup_steps}.")
    if not 0.0 <= constant_fraction < 1.0:
        raise ValueError(f"constant_fraction must lie in [0, 1), got {constant_fraction}.")
    if schedule == "warmup-cosine":
        if step < warmup_steps:
            return step / warmup_steps
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))
    if step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * step / warmup_steps
    if schedule == "const":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps)
    if progress < constant_fraction:
        return 1.0
    rest = min(1.0, (progress - constant_fraction) / (1.0 - constant_fraction))
    if schedule == "lin":
        return final + (1.0 - final) * (1.0 - rest)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * rest))
