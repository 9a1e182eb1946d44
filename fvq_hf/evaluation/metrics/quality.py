"""PSNR and SSIM of the reconstructions (torchmetrics; no weights needed)."""

from __future__ import annotations

import torch

from ...hub.reports import QUALITY_REPORTS
from .base import METRICS, Metric


@METRICS.register
class ImageQuality(Metric):
    """PSNR and SSIM (torchmetrics) over batches of `(B, 3, H, W)` images in [-1, 1], averaged over images."""

    name = "quality"
    reports = QUALITY_REPORTS

    def __init__(self, model=None, device: torch.device | str = "cpu") -> None:
        from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

        super().__init__(model, device)
        # Per-image PSNR averaged over images, as tokenizer papers report it.
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="none", dim=(1, 2, 3)).to(device)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)

    @torch.no_grad()
    def update(self, images: torch.Tensor, reconstructions: torch.Tensor, indices=None) -> None:
        if images.shape != reconstructions.shape:
            raise ValueError(f"Shapes differ: {tuple(images.shape)} vs {tuple(reconstructions.shape)}.")
        x = ((images.float() + 1) / 2).clamp(0, 1)
        y = ((reconstructions.float() + 1) / 2).clamp(0, 1)
        self.psnr.update(y, x)
        self.ssim.update(y, x)

    def compute(self) -> dict[str, float]:
        return {"psnr": float(self.psnr.compute().mean()), "ssim": float(self.ssim.compute())}
