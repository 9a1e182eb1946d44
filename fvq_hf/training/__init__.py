"""Training: learning annealing, the shared accelerate runtime, and the loops of `fvq-train` (tokenizer) and
`fvq-train-transformer` (autoregressive prior)."""

from .schedule import SCHEDULES, annealing_factor

__all__ = ["SCHEDULES", "annealing_factor"]
