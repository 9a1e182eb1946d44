"""An example quantizer type: residual quantization whose depth k searches the codebook scaled by 2^-k, so each
depth refines at half the step of the one before (one module; registered as "scaled-residual")."""

from __future__ import annotations

import torch
from einops import rearrange

from fvq_hf.quantizers import ResidualQuantizer


class ScaledResidualQuantizer(ResidualQuantizer):
    name = "scaled-residual"
    display_name = "scaled residual"

    def __init__(self, embedding, bridge=None, *, depth: int = 2, **options) -> None:
        super().__init__(embedding, bridge, depth=depth, **options)

    def quantize_level(self, level, residual, codebook):
        return super().quantize_level(level, residual, codebook * 0.5**level)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        self.check_indices(indices, indices.shape[-1] == self.depth)
        codes = self.codes_of(indices)
        latent = codes[..., 0, :]
        for level in range(1, self.depth):
            latent = latent + codes[..., level, :] * 0.5**level
        return rearrange(latent, "b h w d -> b d h w")
