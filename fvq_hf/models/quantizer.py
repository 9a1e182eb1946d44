"""Nearest-code vector quantizer over a (possibly bridged) codebook (the search itself is in `search.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from .search import nearest_code


@dataclass
class QuantizerOutput(BaseOutput):
    """
    Args:
        latents (`torch.Tensor` of shape `(B, d, h, w)`): the quantized latents (nearest codes), with
            straight-through gradients to the input.
        indices (`torch.LongTensor` of shape `(B, h, w)`): code ids in `[0, K)`.
        codebook_loss (`torch.Tensor`, scalar): `codebook_weight * mean((z_q - sg(z))^2)`; trains the codebook.
        commitment_loss (`torch.Tensor`, scalar): `commitment_weight * mean((sg(z_q) - z)^2)`; trains the encoder.
    """

    latents: torch.Tensor
    indices: torch.LongTensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


class TokenIdTypeError(TypeError, ValueError):
    """Token ids that are not integers (a TypeError, and a ValueError as `lookup` has always raised)."""


def check_token_ids(ids: torch.Tensor, size: int, hint: str = "") -> None:
    """Integer ids in `[0, size)`, or an error that names the range and what was found (then `hint`)."""
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TokenIdTypeError(f"Expected integer token ids, got dtype {ids.dtype}.")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
        raise ValueError(f"Token ids must lie in [0, {size}); got ids from {int(ids.min())} to {int(ids.max())}.{hint}")


class VectorQuantizer(nn.Module):
    """Quantizes `(B, d, h, w)` latents to the nearest of K codes, where `codebook = bridge(embedding.weight)`.

    `embedding` is the learnable `(K, d)` table; `bridge` any `CodebookBridge` module (see `models.bridges`),
    or None for plain VQ, where the table is the codebook. The bridge says how the table is initialised and
    whether it stays frozen. With `codebook_l2_norm`, latents and codes are l2-normalised before the search
    (LlamaGen's default). The search and the losses always run in fp32, also under autocast.

        VectorQuantizer(nn.Embedding(16384, 256), VQBridge(16384, 256))   # FVQ
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        bridge: nn.Module | None = None,
        *,
        codebook_l2_norm: bool = False,
        codebook_weight: float = 1.0,
        commitment_weight: float = 0.25,
        search_chunk_size: int = 4096,
    ) -> None:
        super().__init__()
        if codebook_weight < 0 or commitment_weight < 0 or search_chunk_size < 1:
            raise ValueError("codebook_weight and commitment_weight must be >= 0 and search_chunk_size >= 1.")
        if codebook_l2_norm and getattr(bridge, "starts_at_zero", False):
            # The VQBridge's zero-initialised output sits at the singular point of the normalisation: the first
            # gradients are ~1e12 and training diverges (measured). The released FVQ runs use no l2-norm.
            raise ValueError(f"codebook_l2_norm=True cannot be combined with the {bridge.display_name}: it starts "
                             "from an all-zero codebook, where l2-normalisation has no gradient to give. Use "
                             "codebook_l2_norm=False, as the released FVQ models do.")
        self.num_vq_embeddings, self.vq_embed_dim = embedding.weight.shape
        self.codebook_l2_norm = codebook_l2_norm
        self.codebook_weight = codebook_weight
        self.commitment_weight = commitment_weight
        self.search_chunk_size = search_chunk_size
        self.embedding = embedding
        self.bridge = bridge
        self.reset_parameters()
        self.embedding.weight.requires_grad_(not getattr(bridge, "freezes_table", False))
        self._cache: tuple[tuple, torch.Tensor] | None = None

    def reset_parameters(self) -> None:
        if self.bridge is None:  # as released (LlamaGen, FVQ): uniform(-1/K, 1/K)
            nn.init.uniform_(self.embedding.weight, -1.0 / self.num_vq_embeddings, 1.0 / self.num_vq_embeddings)
        else:
            self.bridge.init_table(self.embedding.weight)

    def codebook(self) -> torch.Tensor:
        """The `(K, d)` codebook used for quantization: `bridge(table)`, l2-normalised if configured.

        Outside training and autograd the result is cached until a parameter changes in place.
        """
        cacheable = not (self.training or torch.is_grad_enabled())
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if cacheable and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        table = self.embedding.weight.float()
        with torch.autocast(table.device.type, enabled=False):
            codebook = table if self.bridge is None else self.bridge(table)
        if self.codebook_l2_norm:
            codebook = F.normalize(codebook, dim=-1)
        self._cache = (key, codebook) if cacheable else None
        return codebook

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """`(B, d, h, w)` latents -> `QuantizerOutput` with `(B, d, h, w)` quantized latents and `(B, h, w)` indices."""
        if latents.ndim != 4 or latents.shape[1] != self.vq_embed_dim:
            raise ValueError(f"Expected latents of shape (B, {self.vq_embed_dim}, h, w), got {tuple(latents.shape)}.")
        batch, _, height, width = latents.shape
        with torch.autocast(latents.device.type, enabled=False):
            z = rearrange(latents.float(), "b d h w -> (b h w) d")
            if self.codebook_l2_norm:
                z = F.normalize(z, dim=-1)
            codebook = self.codebook()
            indices = nearest_code(z.detach(), codebook.detach(), self.search_chunk_size)
            z_q = codebook[indices]
            codebook_loss = self.codebook_weight * F.mse_loss(z_q, z.detach())
            commitment_loss = self.commitment_weight * F.mse_loss(z, z_q.detach())
            z_q = z + (z_q - z).detach()  # straight-through estimator
        quantized = rearrange(z_q, "(b h w) d -> b d h w", b=batch, h=height, w=width).to(latents.dtype)
        indices = indices.view(batch, height, width)
        return QuantizerOutput(quantized, indices, codebook_loss, commitment_loss)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        """`(B, h, w)` code ids -> `(B, d, h, w)` codes of the (bridged) codebook."""
        if indices.ndim != 3:
            raise ValueError(f"Expected indices of shape (B, h, w), got {tuple(indices.shape)}.")
        check_token_ids(indices, self.num_vq_embeddings, " Were they made by a tokenizer with another codebook size?")
        return rearrange(self.codebook()[indices.long()], "b h w d -> b d h w")
