"""An example metric: the mean absolute pixel error of the reconstructions (in [0, 1] units). One module;
registered as "l1"."""

from __future__ import annotations

from fvq_hf.evaluation.metrics import Metric, Report


class MeanAbsoluteError(Metric):
    name = "l1"
    reports = (Report("l1", "L1 error", None),)

    def __init__(self, model, device) -> None:
        super().__init__(model, device)
        self.total, self.count = 0.0, 0

    def update(self, images, reconstructions, indices) -> None:
        self.total += float(((images - reconstructions).abs() / 2).sum())
        self.count += images.numel()

    def compute(self) -> dict:
        return {"l1": self.total / max(self.count, 1)}
