"""Training objectives: LPIPS and the tokenizer's generator / discriminator losses."""

from .lpips import LPIPS, find_lpips_weights
from .tokenizer_loss import TokenizerLoss

__all__ = ["LPIPS", "TokenizerLoss", "find_lpips_weights"]
