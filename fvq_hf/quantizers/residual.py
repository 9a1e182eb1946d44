"""Residual quantization (RQ-VAE): D codes per latent position from the one codebook, each quantizing what the
codes before it left; the FVQ authors' `vq_model_qbridge_rqvae.py` runs it over one bridged codebook."""

from __future__ import annotations

import torch
from einops import rearrange

from .base import is_int
from .vq import VectorQuantizer


class ResidualQuantizer(VectorQuantizer):
    """Quantizes `(B, d, h, w)` latents `depth` times: ids `(B, h, w, D)`, a latent is the sum of its D codes. The
    bridge sees the gradients of every depth.

        ResidualQuantizer(nn.Embedding(16384, 256), VQBridge(16384, 256), depth=4)
    """

    level_name = "depth"
    display_name = "residual"
    supports_l2_norm = False

    def __init__(self, embedding, bridge=None, *, depth: int = 4, **options) -> None:
        self.depth = self.validate_config({"depth": depth})["depth"]
        super().__init__(embedding, bridge, **options)

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        if not is_int(config["depth"]) or config["depth"] < 1:
            raise ValueError(f"The residual depth must be an integer >= 1, got {config['depth']!r}.")
        return config

    @classmethod
    def describe_ids(cls, config, side: int, size: int) -> tuple[str, str]:
        depth = config["depth"]
        return f"{side}, {side}, {depth}", f"{side} x {side} positions x {depth} residual codes per {size} px image"

    @property
    def num_levels(self) -> int:
        return self.depth

    @property
    def index_dims(self) -> tuple[str, ...]:
        return ("B", "h", "w", str(self.depth))

    @property
    def tokens_described(self) -> str:
        return f"{self.depth} codes per position"

    def level_maps(self, indices: torch.LongTensor) -> list[tuple[str, torch.LongTensor]]:
        return [(f"depth {k + 1}", indices[..., k]) for k in range(self.depth)]

    def join_levels(self, ids: list[torch.LongTensor], latents: torch.Tensor) -> torch.LongTensor:
        batch, _, height, width = latents.shape
        return torch.stack(ids, dim=-1).view(batch, height, width, len(ids))

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        """`(B, h, w, D)` ids -> `(B, d, h, w)` latents: the codes summed in depth order, as in forward."""
        self.check_indices(indices, indices.ndim == 4 and indices.shape[-1] == self.depth)
        codes = self.codes_of(indices)
        latent = codes[..., 0, :]
        for level in range(1, self.depth):
            latent = latent + codes[..., level, :]
        return rearrange(latent, "b h w d -> b d h w")
