"""LPIPS (VGG) of the reconstructions, when its weights are given (they cannot be downloaded here)."""

from __future__ import annotations

import torch

from ...hub.reports import LPIPS_REPORTS
from ...losses.lpips import LPIPS, find_lpips_weights
from .base import METRICS, Metric, sum_over_processes


@METRICS.register
class PerceptualDistance(Metric):
    name = "lpips"
    reports = LPIPS_REPORTS
    weights = {"lpips_vgg": "torchvision vgg16 weights (or env FVQ_LPIPS_VGG)",
               "lpips_linear": "LPIPS v0.1 vgg.pth heads (or env FVQ_LPIPS_LINEAR)"}

    @classmethod
    def create(cls, model, device, options):
        vgg, linear, note = find_lpips_weights(options.weights.get("lpips_vgg"), options.weights.get("lpips_linear"))
        return (cls(LPIPS.from_files(vgg, linear).to(device), device), note) if vgg else (None, note)

    def __init__(self, lpips: LPIPS, device) -> None:
        super().__init__(None, device)
        self.lpips, self.total, self.seen = lpips, 0.0, 0

    def update(self, images, reconstructions, indices) -> None:
        self.total += float(self.lpips(reconstructions, images).sum())
        self.seen += images.shape[0]

    def sync(self) -> None:
        totals = sum_over_processes(torch.tensor([self.total, self.seen], dtype=torch.float64, device=self.device))
        self.total, self.seen = float(totals[0]), int(totals[1])

    def compute(self) -> dict:
        return {"lpips": self.total / max(self.seen, 1)}
