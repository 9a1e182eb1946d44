"""What a reported value is, for the tables of `fvq-eval` / `fvq-train` and for model cards: `Report` (key, label,
model-index id, format), the `REPORTS` table that cards and tables read, and `format_metric`. Torch-free facts.

The values this package reports are declared here, so that a card made in any process (one that never loaded a
metric) labels them: the tokenizer metrics' (`fvq_hf.evaluation.metrics`: each names the reports it produces on its
class) and the prior's held-out loss (measured by the transformer trainer). A metric from outside the package
declares its own `Report`s on its class; registering it (`METRICS.register`) adds them here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Report:
    """One reported value: its key in the results (eval.json, cards), its label in card tables (None: no column of
    its own), its id in the Hub's model-index (None: not there), whether `fvq-eval`'s table shows it, and how it
    is written (`percent`: as a percentage)."""

    key: str
    label: str | None = None
    model_index: str | None = None
    table: bool = True
    percent: bool = False


REPORTS: dict[str, Report] = {}


def register_reports(*reports: Report) -> tuple[Report, ...]:
    """Add `reports` to `REPORTS` (in this order, after those there); returns them. The same report again is a
    no-op; another one under a taken key is a ValueError."""
    for report in reports:
        if not isinstance(report, Report):
            raise TypeError(f"{report!r} is not a Report.")
        taken = REPORTS.get(report.key)
        if taken is not None and taken != report:
            raise ValueError(f"The report {report.key!r} is declared already, as {taken}.")
        REPORTS[report.key] = report
    return reports


# The tokenizer metrics (codebook usage, image quality, LPIPS, rFID), in the order of their columns.
USAGE_REPORTS = register_reports(Report("usage", "codebook usage", "codebook-usage", percent=True),
                                 Report("perplexity", "code perplexity", "code-perplexity"),
                                 Report("num_tokens"), Report("tokens_per_code"))
QUALITY_REPORTS = register_reports(Report("psnr", "PSNR (dB)", "psnr"), Report("ssim", "SSIM", "ssim"))
LPIPS_REPORTS = register_reports(Report("lpips", "LPIPS", "lpips"))
RFID_REPORTS = register_reports(Report("rfid", "rFID", "rfid"))
# The prior's teacher-forced held-out loss (`fvq_hf.training.transformer_trainer`).
PRIOR_REPORTS = register_reports(Report("loss", "next-token loss (nats)"),
                                 Report("loss_unconditional", "loss with the null class"),
                                 Report("token_perplexity", "next-token perplexity"))

# A latent generator's held-out denoising loss and its computable baselines (`fvq_hf.training.latent_trainer`).
LATENT_REPORTS = register_reports(Report("denoising_loss", "held-out loss (MSE)"),
                                  Report("denoising_loss_untrained", "untrained model"),
                                  Report("denoising_loss_class_gaussian", "class-Gaussian denoiser"),
                                  Report("denoising_loss_unconditional", "loss with the null class"))


def format_metric(key: str, value) -> str:
    """One value as a table cell: percentages where its report says so, floats to 4 places, ints with separators."""
    report = REPORTS.get(key)
    if report is not None and report.percent:
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    return f"{value:,}" if isinstance(value, int) else str(value)
