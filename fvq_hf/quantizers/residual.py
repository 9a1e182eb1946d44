"""Residual quantization (RQ-VAE): D codes per latent position from the one codebook, each quantizing what the
codes before it left; the FVQ authors' `vq_model_qbridge_rqvae.py` runs it over one bridged codebook."""

from __future__ import annotations

import torch
from einops import rearrange

from .ids import IdsSpec
from .protocol import QUANTIZERS, is_int
from .vq import VectorQuantizer


@QUANTIZERS.register
class ResidualQuantizer(VectorQuantizer):
    """Quantizes `(B, d, h, w)` latents `depth` times: ids `(B, h, w, D)`, a latent is the sum of its D codes. The
    bridge sees the gradients of every depth.

        ResidualQuantizer(nn.Embedding(16384, 256), VQBridge(16384, 256), depth=4)
    """

    name = "residual"
    display_name = "residual"
    supports_l2_norm = False

    def __init__(self, embedding, bridge=None, *, depth: int = 4, **options) -> None:
        super().__init__(embedding, bridge, {"depth": depth}, **options)
        self.depth = depth

    @classmethod
    def validate_config(cls, config: dict) -> None:
        if not is_int(config["depth"]) or config["depth"] < 1:
            raise ValueError(f"The residual depth must be an integer >= 1, got {config['depth']!r}.")

    @classmethod
    def ids_spec(cls, config) -> IdsSpec:
        depth = config["depth"]
        return IdsSpec(dims=("B", "h", "w", str(depth)), level_name="depth",
                       level_labels=tuple(f"depth {k + 1}" for k in range(depth)), one_code_per_position=depth == 1,
                       tokens_described=f"{depth} codes per position",
                       per_image=f"{{h}} x {{w}} positions x {depth} residual codes")

    def split_levels(self, indices: torch.LongTensor) -> list[torch.LongTensor]:
        return list(indices.unbind(dim=-1))

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
