"""Training: the learning-annealing schedule and the accelerate training loop (`fvq-train`)."""

from .schedule import SCHEDULES, annealing_factor

__all__ = ["SCHEDULES", "annealing_factor"]
