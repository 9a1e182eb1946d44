"""Metrics, found by name: `METRICS` (a `Registry`) maps a name to a `Metric` class, in the order of fvq-eval's
table. Each metric names the values it reports (`fvq_hf.hub.reports`, which cards and tables read) and the weight
files it needs (`Metric.weights`; `metric_weight_options` gathers them for the command lines).

Adding a metric is one module: a `Metric` subclass registered with `@METRICS.register`.
"""

from __future__ import annotations

from .base import METRICS, Metric, sum_over_processes

# Registered on import, in this order (the table's columns): usage, image quality, LPIPS, rFID.
# isort: split
from .usage import CodebookUsage

# isort: split
from .quality import ImageQuality

# isort: split
from .perceptual import PerceptualDistance

# isort: split
from .fid import ReconstructionFID


def metric_weight_options() -> dict[str, str]:
    """Every weight option the registered metrics declare (option -> help), in registration order: `fvq-eval` and
    `fvq-train` make a `--<option>` flag of each (`lpips_vgg` -> `--lpips-vgg`), and pass the files given in
    `EvaluationOptions.weights`."""
    options: dict[str, str] = {}
    for cls in METRICS.values():
        for option, help in cls.weights.items():
            options.setdefault(option, help)
    return options


__all__ = ["METRICS", "CodebookUsage", "ImageQuality", "Metric", "PerceptualDistance", "ReconstructionFID",
           "metric_weight_options", "sum_over_processes"]
