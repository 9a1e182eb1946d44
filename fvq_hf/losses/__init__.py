"""Training objectives: LPIPS, the PatchGAN discriminator and the tokenizer's generator / discriminator losses."""

from .discriminator import PatchGANDiscriminator
from .lpips import LPIPS, find_lpips_weights
from .tokenizer_loss import TokenizerLoss

__all__ = ["LPIPS", "PatchGANDiscriminator", "TokenizerLoss", "find_lpips_weights"]
