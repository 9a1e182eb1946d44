"""An example metric with a weight file of its own: the mean absolute pixel error of the reconstructions, in the
units its file gives (one number: the value of the full [0, 1] range, e.g. 255 for 8-bit levels). One module;
registered as "l1"; its file is `--l1-scale FILE` (the option `l1_scale` it declares)."""

from __future__ import annotations

from pathlib import Path

from fvq_hf.evaluation.metrics import METRICS, Metric
from fvq_hf.hub.reports import Report


@METRICS.register
class MeanAbsoluteError(Metric):
    name = "l1"
    reports = (Report("l1", "L1 error", None),)
    weights = {"l1_scale": "a text file holding the value of the full pixel range for the L1 error (example metric)"}

    @classmethod
    def create(cls, model, device, options):
        path = options.weights.get("l1_scale")
        if not path or not Path(path).is_file():
            return None, "L1 error unavailable: pass --l1-scale FILE (one number: the value of the full pixel range)."
        return cls(model, device, float(Path(path).read_text())), ""

    def __init__(self, model, device, scale: float) -> None:
        super().__init__(model, device)
        self.scale, self.total, self.count = scale, 0.0, 0

    def update(self, images, reconstructions, indices) -> None:
        self.total += float(((images - reconstructions).abs() / 2).sum())
        self.count += images.numel()

    def compute(self) -> dict:
        return {"l1": self.scale * self.total / max(self.count, 1)}
