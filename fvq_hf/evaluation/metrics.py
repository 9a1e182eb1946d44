"""Honest tokenizer metrics: codebook usage over every token, perplexity, PSNR, SSIM, LPIPS and rFID."""

from __future__ import annotations

import math

import torch

from ..quantizers.ids import check_token_ids


class CodeCounter:
    """Counts how often each of K codes is used over all tokens seen (int64 counts, not a rolling buffer)."""

    def __init__(self, codebook_size: int, device: torch.device | str = "cpu") -> None:
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}.")
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.long, device=device)

    def update(self, indices: torch.Tensor) -> None:
        """Add token ids of any shape; ids outside [0, K) are an error."""
        flat = indices.reshape(-1).to(self.counts.device, torch.long)
        check_token_ids(flat, self.codebook_size)
        self.counts += torch.bincount(flat, minlength=self.codebook_size)

    @property
    def num_tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def usage(self) -> float:
        """Distinct codes used / K."""
        return int((self.counts > 0).sum()) / self.codebook_size

    @property
    def perplexity(self) -> float:
        """exp(entropy) of the code histogram: K for perfectly even use, 1 for a single code."""
        total = self.num_tokens
        if total == 0:
            return 0.0
        p = self.counts[self.counts > 0].double() / total
        return math.exp(float(-(p * p.log()).sum()))

    def summary(self) -> dict[str, float | int]:
        return {"usage": self.usage, "perplexity": self.perplexity, "num_tokens": self.num_tokens,
                "codebook_size": self.codebook_size, "tokens_per_code": self.num_tokens / self.codebook_size}


class ImageQuality:
    """PSNR and SSIM (torchmetrics) over batches of `(B, 3, H, W)` images in [-1, 1], averaged over images."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

        # Per-image PSNR averaged over images, as tokenizer papers report it.
        self.psnr = PeakSignalNoiseRatio(data_range=1.0, reduction="none", dim=(1, 2, 3)).to(device)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0).to(device)

    @torch.no_grad()
    def update(self, images: torch.Tensor, reconstructions: torch.Tensor) -> None:
        if images.shape != reconstructions.shape:
            raise ValueError(f"Shapes differ: {tuple(images.shape)} vs {tuple(reconstructions.shape)}.")
        x = ((images.float() + 1) / 2).clamp(0, 1)
        y = ((reconstructions.float() + 1) / 2).clamp(0, 1)
        self.psnr.update(y, x)
        self.ssim.update(y, x)

    def compute(self) -> dict[str, float]:
        return {"psnr": float(self.psnr.compute().mean()), "ssim": float(self.ssim.compute())}
