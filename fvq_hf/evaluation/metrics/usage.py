"""Codebook usage over every token of the evaluation, pooled and per level of a residual or multi-scale tokenizer."""

from __future__ import annotations

from ...hub.reports import USAGE_REPORTS
from ..usage import CodeCounter
from .base import METRICS, Metric, sum_over_processes


@METRICS.register
class CodebookUsage(Metric):
    """Usage (distinct codes / K), perplexity, tokens and tokens per code over every token; for ids with levels
    (`quantizer.ids`: residual depths, scales), also `level_name` and `levels`, the same four figures per level
    (`CodeCounter.summary`), since pooled figures hide what each level does."""

    name = "usage"
    reports = USAGE_REPORTS

    def __init__(self, model, device) -> None:
        super().__init__(model, device)
        self.quantizer = model.quantizer
        self.counter = CodeCounter.for_ids(self.quantizer.ids, model.codebook_size, device)

    def update(self, images, reconstructions, indices) -> None:
        self.counter.update(indices, self.quantizer.split_levels(indices))

    def sync(self) -> None:
        for counts in self.counter.tensors():  # counts are summed, never averaged
            sum_over_processes(counts)

    def compute(self) -> dict:
        return self.counter.summary()
