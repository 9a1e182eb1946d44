"""Codebook usage over every token of the evaluation (and per level of a residual or multi-scale tokenizer)."""

from __future__ import annotations

from ...hub.reports import USAGE_REPORTS
from ..usage import CodeCounter
from .base import METRICS, Metric, sum_over_processes


@METRICS.register
class CodebookUsage(Metric):
    """Usage (distinct codes / K), perplexity, tokens and tokens per code; with several levels, `usage_by_level`
    (a list in the quantizer's level order) and `level_name` ("depth", "scale")."""

    name = "usage"
    reports = USAGE_REPORTS

    def __init__(self, model, device) -> None:
        super().__init__(model, device)
        self.quantizer = model.quantizer
        self.counter = CodeCounter(model.codebook_size, device)
        self.by_level = [CodeCounter(model.codebook_size, device) for _ in range(self.quantizer.num_levels)] \
            if self.quantizer.level_name else []

    def update(self, images, reconstructions, indices) -> None:
        self.counter.update(indices)
        if self.by_level:
            for counter, (_, ids) in zip(self.by_level, self.quantizer.level_maps(indices)):
                counter.update(ids)

    def sync(self) -> None:
        for counter in (self.counter, *self.by_level):  # counts are summed, never averaged
            sum_over_processes(counter.counts)

    def compute(self) -> dict:
        levels = {"usage_by_level": [c.usage for c in self.by_level], "level_name": self.quantizer.level_name} \
            if self.by_level else {}
        return {**self.counter.summary(), **levels}
