"""Metrics, found by name: `METRICS` maps a name to a `Metric` class (in the order of fvq-eval's table), and
`REPORTS` every reported key to its `Report` (label, model-index id, format), for tables and model cards alike.

Adding a metric is one module (a `Metric`) plus its entry (`register_metric`). Values measured elsewhere (the
prior's held-out loss, `training.transformer_trainer`) declare their reports with `register_reports`.
"""

from __future__ import annotations

import math

from .base import Metric, Report
from .fid import ReconstructionFID
from .perceptual import PerceptualDistance
from .quality import ImageQuality
from .usage import CodebookUsage

METRICS: dict[str, type[Metric]] = {}
REPORTS: dict[str, Report] = {}


def register_reports(*reports: Report) -> None:
    for report in reports:
        REPORTS[report.key] = report


def register_metric(cls: type[Metric]) -> None:
    """Measure `cls` in every evaluation (after the metrics registered before it)."""
    if not (isinstance(cls, type) and issubclass(cls, Metric) and cls.name):
        raise TypeError(f"{cls!r} is not a named Metric subclass.")
    METRICS[cls.name] = cls
    register_reports(*cls.reports)


for _cls in (CodebookUsage, ImageQuality, PerceptualDistance, ReconstructionFID):
    register_metric(_cls)
# The prior's teacher-forced held-out loss (measured by the transformer trainer).
register_reports(Report("loss", "next-token loss (nats)"), Report("loss_unconditional", "loss with the null class"),
                 Report("token_perplexity", "next-token perplexity"))


def format_metric(key: str, value) -> str:
    """One value as a table cell: percentages where its report says so, floats to 4 places, ints with separators."""
    report = REPORTS.get(key)
    if report is not None and report.percent:
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return f"{value:,}" if isinstance(value, int) else str(value)


__all__ = ["METRICS", "REPORTS", "CodebookUsage", "ImageQuality", "Metric", "PerceptualDistance",
           "ReconstructionFID", "Report", "format_metric", "register_metric", "register_reports"]
