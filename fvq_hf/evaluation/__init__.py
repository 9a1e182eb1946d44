"""Evaluation: codebook usage over every token, perplexity, PSNR / SSIM, LPIPS and rFID (`fvq-eval`)."""

from .metrics import CodeCounter, ImageQuality

__all__ = ["CodeCounter", "ImageQuality"]
