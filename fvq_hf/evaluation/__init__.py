"""Honest tokenizer metrics: a registry of metrics (`metrics`), codebook usage and its file (`usage`), and the
evaluation loop that measures every registered metric over every token of a data set (`evaluate`).

Nothing heavier is imported here: `evaluate` loads models, while cards (`hub.model_card`) read `metrics`."""

from .metrics import METRICS, REPORTS, ImageQuality, register_metric
from .usage import CodeCounter

__all__ = ["METRICS", "REPORTS", "CodeCounter", "ImageQuality", "register_metric"]
