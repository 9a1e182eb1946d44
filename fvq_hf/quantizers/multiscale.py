"""VAR's multi-scale residual quantizer over one (possibly bridged) codebook: an `s x s` token map per scale,
each quantizing what the coarser scales left (Tian et al. 2024, and the FVQ authors' `var/model/quant.py`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..search import nearest_code
from .vq import QuantizerOutput, VectorQuantizer, check_token_ids, resolve_quantizer_config


class Phi(nn.Conv2d):
    """VAR's phi: `(1 - r) h + r conv3x3(h)`, which refines an upsampled code map before it is added."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__(channels, channels, kernel_size=3, padding=1)
        self.ratio = ratio

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


def phi_for_scale(index: int, num_scales: int, num_phi: int) -> int:
    """VAR's choice of phi for scale `index`: the conv whose tick is nearest to index / (S - 1).

    In float64 as VAR's numpy: with 4 convs and 10 scales, scales 2 and 7 sit halfway between two ticks, and
    float32 rounding picks the other conv.
    """
    at = index / max(num_scales - 1, 1)
    margin = 1 / 3 / num_phi if num_phi == 4 else 1 / 2 / num_phi
    return int(np.argmin(np.abs(np.linspace(margin, 1 - margin, num_phi) - at)))


class MultiScaleQuantizer(VectorQuantizer):
    """Quantizes `(B, d, S, S)` latents (S = the last scale) scale by scale, coarse to fine, with one codebook.

    At scale s the residual is area-downsampled to `s x s`, each position takes its nearest code, and the code
    map is bicubically upsampled back to `S x S`, passed through a phi conv and subtracted from the residual.
    The latent is the sum over scales. Scales need not divide S (VAR's own 1, 2, 3, 4, 5, 6, 8, 10, 13, 16 do
    not). `num_phi` phi convs are shared across the scales as in VAR (4: "partially shared"; 1: one for all;
    `len(scales)`: one each); `phi_ratio=0` uses none.

    Ids are one flat sequence `(B, L)`, L = sum of s^2: scale by scale from the coarsest, each map in raster
    order (VAR's `idx_Bl` lists, concatenated: the order its transformer predicts). `split_scales` gives the
    maps back.

        MultiScaleQuantizer(nn.Embedding(4096, 32), VQBridge(4096, 32), scales=[1, 2, 4, 8, 16])
    """

    def __init__(self, embedding: nn.Embedding, bridge: nn.Module | None = None, *, scales, num_phi: int = 4,
                 phi_ratio: float = 0.5, **kwargs) -> None:
        config = resolve_quantizer_config("multiscale", dict(scales=scales, num_phi=num_phi, phi_ratio=phi_ratio))
        if kwargs.get("codebook_l2_norm"):
            raise ValueError("codebook_l2_norm=True cannot be combined with multi-scale quantization: a residual is "
                             "not a direction, and unit codes cannot sum to it.")
        super().__init__(embedding, bridge, **kwargs)
        self.scales = config["scales"]
        dim = embedding.weight.shape[1]
        self.phi = nn.ModuleList(Phi(dim, phi_ratio) for _ in range(num_phi if phi_ratio > 0 else 0))
        self.phi_index = [phi_for_scale(k, len(self.scales), num_phi) for k in range(len(self.scales))]

    @property
    def latent_size(self) -> int:
        """The side of the latent grid: the last scale."""
        return self.scales[-1]

    @property
    def num_tokens(self) -> int:
        return sum(s * s for s in self.scales)

    @property
    def indices_shape(self) -> str:
        return f"(B, {self.num_tokens})"

    @property
    def indices_ndim(self) -> int:
        return 2

    @property
    def level_name(self) -> str:
        return "scale"

    @property
    def tokens_described(self) -> str:
        return f"{len(self.scales)} scales, {self.num_tokens} tokens per image"

    def split_scales(self, indices: torch.LongTensor) -> list[torch.LongTensor]:
        """`(B, L)` ids -> one `(B, s, s)` map per scale, coarsest first."""
        maps = torch.split(indices, [s * s for s in self.scales], dim=1)
        return [m.reshape(-1, s, s) for m, s in zip(maps, self.scales)]

    def level_maps(self, indices: torch.LongTensor) -> list[tuple[str, torch.LongTensor]]:
        return [(f"scale {s}x{s}", m) for s, m in zip(self.scales, self.split_scales(indices))]

    def _upsampled(self, index: int, codes: torch.Tensor) -> torch.Tensor:
        """A `(B, d, s, s)` code map of scale `index` -> its `(B, d, S, S)` contribution to the latent."""
        size = self.latent_size
        if codes.shape[-1] != size:
            codes = F.interpolate(codes, size=(size, size), mode="bicubic")
        return self.phi[self.phi_index[index]](codes) if self.phi else codes

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """`(B, d, S, S)` latents -> `QuantizerOutput` with `(B, d, S, S)` latents and `(B, L)` ids."""
        size = self.latent_size
        if latents.ndim != 4 or latents.shape[1] != self.vq_embed_dim or latents.shape[2:] != (size, size):
            raise ValueError(f"Expected latents of shape (B, {self.vq_embed_dim}, {size}, {size}) (the last scale), "
                             f"got {tuple(latents.shape)}.")
        batch = latents.shape[0]
        with torch.autocast(latents.device.type, enabled=False):
            z = latents.float()
            codebook = self.codebook()
            residual, z_q, ids = z.detach(), torch.zeros_like(z), []
            codebook_loss = commitment_loss = 0.0
            for level, scale in enumerate(self.scales):
                small = residual if scale == size else F.interpolate(residual, size=(scale, scale), mode="area")
                index = nearest_code(rearrange(small, "b d h w -> (b h w) d"), codebook.detach(),
                                     self.search_chunk_size)
                codes = rearrange(codebook[index], "(b h w) d -> b d h w", b=batch, h=scale, w=scale)
                contribution = self._upsampled(level, codes)
                z_q = z_q + contribution
                residual = residual - contribution.detach()
                codebook_loss = codebook_loss + F.mse_loss(z_q, z.detach())
                commitment_loss = commitment_loss + F.mse_loss(z, z_q.detach())
                ids.append(index.view(batch, scale * scale))
            codebook_loss = self.codebook_weight * (codebook_loss / len(self.scales))
            commitment_loss = self.commitment_weight * (commitment_loss / len(self.scales))
            z_q = z + (z_q - z).detach()  # straight-through estimator
        return QuantizerOutput(z_q.to(latents.dtype), torch.cat(ids, dim=1), codebook_loss, commitment_loss)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        """`(B, L)` ids -> `(B, d, S, S)` latents: every scale's codes upsampled, refined and summed, as in forward."""
        if indices.ndim != 2 or indices.shape[1] != self.num_tokens:
            raise ValueError(f"Expected indices of shape {self.indices_shape} (scales {self.scales}, coarsest first), "
                             f"got {tuple(indices.shape)}.")
        check_token_ids(indices, self.num_vq_embeddings, " Were they made by a tokenizer with another codebook size?")
        codebook = self.codebook()
        latent = 0.0
        for level, codes in enumerate(self.split_scales(indices.long())):
            latent = latent + self._upsampled(level, rearrange(codebook[codes], "b h w d -> b d h w"))
        return latent
