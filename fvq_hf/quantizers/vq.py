"""Plain vector quantization: one nearest code per latent position (VQ-VAE; the FVQ paper's main setting)."""

from __future__ import annotations

import torch
from einops import rearrange

from .base import TableQuantizer
from .protocol import QUANTIZERS


@QUANTIZERS.register
class VectorQuantizer(TableQuantizer):
    """Quantizes `(B, d, h, w)` latents to the nearest of K codes: ids `(B, h, w)`.

        VectorQuantizer(nn.Embedding(16384, 256), VQBridge(16384, 256))     # FVQ
        VectorQuantizer(nn.Embedding(16384, 8), codebook_l2_norm=True)      # LlamaGen VQ-16
    """

    name = "vq"
    display_name = "vector"

    def flatten(self, latents: torch.Tensor) -> torch.Tensor:
        return rearrange(latents, "b d h w -> (b h w) d")

    def unflatten(self, z: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = latents.shape
        return rearrange(z, "(b h w) d -> b d h w", b=batch, h=height, w=width)

    def quantize_level(self, level: int, residual: torch.Tensor, codebook: torch.Tensor
                       ) -> tuple[torch.LongTensor, torch.Tensor]:
        """`(N, d)` residual -> `(N,)` ids of its nearest codes and those `(N, d)` codes."""
        index = self.nearest(residual, codebook)
        return index, codebook[index]

    def join_levels(self, ids: list[torch.LongTensor], latents: torch.Tensor) -> torch.LongTensor:
        batch, _, height, width = latents.shape
        return ids[0].view(batch, height, width)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        self.check_indices(indices, True)
        return rearrange(self.codes_of(indices), "b h w d -> b d h w")
