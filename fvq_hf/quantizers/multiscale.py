"""VAR's multi-scale residual quantizer over one (possibly bridged) codebook: an `s x s` token map per scale,
each quantizing what the coarser scales left (Tian et al. 2024, and the FVQ authors' `var/model/quant.py`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..bridges import CodebookBridge
from .base import TableQuantizer
from .ids import IdsSpec
from .protocol import QUANTIZERS, is_int


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


@QUANTIZERS.register
class MultiScaleQuantizer(TableQuantizer):
    """Quantizes `(B, d, S, S)` latents (S = the last scale) scale by scale, coarse to fine, with one codebook.

    At scale s the residual is area-downsampled to `s x s`, each position takes its nearest code, and the code
    map is bicubically upsampled back to `S x S`, passed through a phi conv and subtracted from the residual.
    The latent is the sum over scales. Scales need not divide S (VAR's own 1, 2, 3, 4, 5, 6, 8, 10, 13, 16 do
    not). `num_phi` phi convs are shared across the scales as in VAR (4: "partially shared"; 1: one for all;
    `len(scales)`: one each); `phi_ratio=0` uses none. The defaults are VAR's (a 16 x 16 latent grid).

    Ids are one flat sequence `(B, L)`, L = sum of s^2: scale by scale from the coarsest, each map in raster
    order (VAR's `idx_Bl` lists, concatenated: the order its transformer predicts). `split_scales` gives the
    maps back.

        MultiScaleQuantizer(nn.Embedding(4096, 32), VQBridge(4096, 32), scales=[1, 2, 4, 8, 16])
    """

    name = "multiscale"
    display_name = "multi-scale"
    supports_l2_norm = False
    supports_ema = False

    def __init__(self, embedding: nn.Embedding, bridge: CodebookBridge | None = None, *,
                 scales: list[int] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16), num_phi: int = 4, phi_ratio: float = 0.5,
                 **options) -> None:
        super().__init__(embedding, bridge, dict(scales=scales, num_phi=num_phi, phi_ratio=phi_ratio), **options)
        self.scales = list(scales)
        self.phi = nn.ModuleList(Phi(self.code_dim, phi_ratio) for _ in range(num_phi if phi_ratio > 0 else 0))
        self.phi_index = [phi_for_scale(k, len(self.scales), num_phi) for k in range(len(self.scales))]

    @classmethod
    def validate_config(cls, config: dict) -> None:
        scales = config["scales"]
        if not isinstance(scales, list | tuple) or not scales or not all(is_int(s) and s >= 1 for s in scales) \
                or any(a >= b for a, b in zip(scales[:-1], scales[1:])):
            raise ValueError(f"Multi-scale scales must be a non-empty list of increasing integers >= 1 (token maps "
                             f"of s x s, the last one the latent grid), got {scales!r}.")
        if not is_int(config["num_phi"]) or config["num_phi"] < 1:
            raise ValueError(f"num_phi (shared phi convs) must be an integer >= 1, got {config['num_phi']!r}.")
        if not isinstance(config["phi_ratio"], int | float) or not 0 <= config["phi_ratio"] <= 1:
            raise ValueError(f"phi_ratio must lie in [0, 1] (0: no phi conv), got {config['phi_ratio']!r}.")

    @classmethod
    def ids_spec(cls, config) -> IdsSpec:
        """One flat sequence of every scale's map; the latent grid is the last scale."""
        scales = list(config["scales"])
        length = sum(s * s for s in scales)
        return IdsSpec(dims=("B", str(length)), order=f" (scales {scales}, coarsest first)", level_name="scale",
                       level_labels=tuple(f"scale {s}x{s}" for s in scales), one_code_per_position=len(scales) == 1,
                       tokens_described=f"{len(scales)} scales, {length} tokens per image",
                       fixed_latent_side=scales[-1], per_image=str(length),
                       note=f": multi-scale (VAR), scales {scales}, coarsest first, each in raster order")

    @property
    def latent_size(self) -> int:
        """The side of the latent grid: the last scale."""
        return self.ids.fixed_latent_side

    @property
    def num_tokens(self) -> int:
        """Ids per image: the sum of s^2 over the scales."""
        return self.ids.tokens_per_image(self.latent_size)

    def check_latent_side(self, side: int, where: str) -> None:
        if self.latent_size != side:
            raise ValueError(f"The last multi-scale scale must be the latent grid, {where} = {side}; got scales "
                             f"{self.scales}.")

    def split_scales(self, indices: torch.LongTensor) -> list[torch.LongTensor]:
        """`(B, L)` ids -> one `(B, s, s)` map per scale, coarsest first."""
        maps = torch.split(indices, [s * s for s in self.scales], dim=1)
        return [m.reshape(-1, s, s) for m, s in zip(maps, self.scales)]

    def split_levels(self, indices: torch.LongTensor) -> list[torch.LongTensor]:
        return self.split_scales(indices)

    def _upsampled(self, index: int, codes: torch.Tensor) -> torch.Tensor:
        """A `(B, d, s, s)` code map of scale `index` -> its `(B, d, S, S)` contribution to the latent."""
        size = self.latent_size
        if codes.shape[-1] != size:
            codes = F.interpolate(codes, size=(size, size), mode="bicubic")
        return self.phi[self.phi_index[index]](codes) if self.phi else codes

    def check_latents(self, latents: torch.Tensor) -> None:
        size = self.latent_size
        if latents.ndim != 4 or latents.shape[1] != self.code_dim or latents.shape[2:] != (size, size):
            raise ValueError(f"Expected latents of shape (B, {self.code_dim}, {size}, {size}) (the last scale), "
                             f"got {tuple(latents.shape)}.")

    def quantize_level(self, level: int, residual: torch.Tensor, codebook: torch.Tensor
                       ) -> tuple[torch.LongTensor, torch.Tensor]:
        """`(B, d, S, S)` residual -> `(B, s * s)` ids of scale `level` and their `(B, d, S, S)` contribution."""
        batch, scale = residual.shape[0], self.scales[level]
        small = residual if scale == self.latent_size else F.interpolate(residual, size=(scale, scale), mode="area")
        index = self.nearest(rearrange(small, "b d h w -> (b h w) d"), codebook)
        codes = rearrange(codebook[index], "(b h w) d -> b d h w", b=batch, h=scale, w=scale)
        return index.view(batch, scale * scale), self._upsampled(level, codes)

    def join_levels(self, ids: list[torch.LongTensor], latents: torch.Tensor) -> torch.LongTensor:
        return torch.cat(ids, dim=1)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        """`(B, L)` ids -> `(B, d, S, S)` latents: every scale's codes upsampled, refined and summed, as in forward."""
        self.check_indices(indices, indices.ndim == 2 and indices.shape[1] == self.num_tokens)
        codebook = self.codebook()
        latent = 0.0
        for level, codes in enumerate(self.split_scales(indices.long())):
            latent = latent + self._upsampled(level, rearrange(codebook[codes], "b h w d -> b d h w"))
        return latent
