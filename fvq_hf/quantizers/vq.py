"""Nearest-code vector quantizer over a (possibly bridged) codebook, plain or residual (the search is in
`search.py`, the multi-scale quantizer in `multiscale.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from ..search import nearest_code


@dataclass
class QuantizerOutput(BaseOutput):
    """
    Args:
        latents (`torch.Tensor` of shape `(B, d, h, w)`): the quantized latents (nearest codes), with
            straight-through gradients to the input.
        indices (`torch.LongTensor` of shape `(B, h, w)`, `(B, h, w, D)` for a residual quantizer of depth D, or
            `(B, L)` for a multi-scale one, L = sum of s^2 over its scales): code ids in `[0, K)`.
        codebook_loss (`torch.Tensor`, scalar): `codebook_weight * mean((z_q - sg(z))^2)`; trains the codebook.
            For a residual (multi-scale) quantizer, the mean of it over the partial sums of depths 1..D (scales
            1..S), as RQ-VAE, VAR and the FVQ authors' variants.
        commitment_loss (`torch.Tensor`, scalar): `commitment_weight * mean((sg(z_q) - z)^2)`; trains the encoder
            (likewise averaged over the partial sums).
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


# The quantizer types of FVQModel's config and their `quantizer_config` keys, with defaults. The multi-scale
# defaults are VAR's: ten scales for a 16 x 16 latent grid, 4 shared phi convs mixed in at ratio 0.5.
QUANTIZER_TYPES = {
    "vq": {},
    "residual": {"depth": 4},
    "multiscale": {"scales": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16], "num_phi": 4, "phi_ratio": 0.5},
}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resolve_quantizer_config(quantizer_type: str, config: dict | None) -> dict:
    """The complete `quantizer_config` of a type: defaults filled in; an unknown type or key, or a bad depth, is
    an error that names it."""
    if quantizer_type not in QUANTIZER_TYPES:
        raise ValueError(f"Unknown quantizer_type {quantizer_type!r}; expected one of {', '.join(QUANTIZER_TYPES)}.")
    defaults = QUANTIZER_TYPES[quantizer_type]
    unknown = set(config or {}) - set(defaults)
    if unknown:
        raise ValueError(f"quantizer_config keys {sorted(unknown)} do not apply to quantizer_type "
                         f"{quantizer_type!r}, which takes {sorted(defaults) or 'none'}.")
    config = {**defaults, **(config or {})}
    if "depth" in config and (not _is_int(config["depth"]) or config["depth"] < 1):
        raise ValueError(f"The residual depth must be an integer >= 1, got {config['depth']!r}.")
    if "scales" in config:
        scales = config["scales"]
        if not isinstance(scales, list | tuple) or not scales or not all(_is_int(s) and s >= 1 for s in scales) \
                or any(a >= b for a, b in zip(scales[:-1], scales[1:])):
            raise ValueError(f"Multi-scale scales must be a non-empty list of increasing integers >= 1 (token maps "
                             f"of s x s, the last one the latent grid), got {scales!r}.")
        if not _is_int(config["num_phi"]) or config["num_phi"] < 1:
            raise ValueError(f"num_phi (shared phi convs) must be an integer >= 1, got {config['num_phi']!r}.")
        if not isinstance(config["phi_ratio"], int | float) or not 0 <= config["phi_ratio"] <= 1:
            raise ValueError(f"phi_ratio must lie in [0, 1] (0: no phi conv), got {config['phi_ratio']!r}.")
        config["scales"] = list(scales)
    return config


class VectorQuantizer(nn.Module):
    """Quantizes `(B, d, h, w)` latents to the nearest of K codes, where `codebook = bridge(embedding.weight)`.

    `embedding` is the learnable `(K, d)` table; `bridge` any `CodebookBridge` module (see `models.bridges`),
    or None for plain VQ, where the table is the codebook. The bridge says how the table is initialised and
    whether it stays frozen. With `codebook_l2_norm`, latents and codes are l2-normalised before the search
    (LlamaGen's default). The search and the losses always run in fp32, also under autocast.

    With `residual_depth=D`, each latent is quantized D times, each time the residual left by the codes before
    (residual quantization, RQ-VAE), all from the one codebook: its bridge sees the gradients of every depth.
    Ids are then `(B, h, w, D)` and a latent is the sum of its D codes.

        VectorQuantizer(nn.Embedding(16384, 256), VQBridge(16384, 256))                     # FVQ
        VectorQuantizer(nn.Embedding(16384, 256), VQBridge(16384, 256), residual_depth=4)   # FVQ, residual
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
        residual_depth: int | None = None,
    ) -> None:
        super().__init__()
        if codebook_weight < 0 or commitment_weight < 0 or search_chunk_size < 1:
            raise ValueError("codebook_weight and commitment_weight must be >= 0 and search_chunk_size >= 1.")
        if residual_depth is not None:
            resolve_quantizer_config("residual", {"depth": residual_depth})
            if codebook_l2_norm:
                raise ValueError("codebook_l2_norm=True cannot be combined with residual quantization: a residual "
                                 "is not a direction, and unit codes cannot sum to it.")
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
        self.residual_depth = residual_depth
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

    @property
    def indices_shape(self) -> str:
        """The shape of the ids, in words: `(B, h, w)`, or `(B, h, w, D)` for a residual quantizer."""
        return "(B, h, w)" if self.residual_depth is None else f"(B, h, w, {self.residual_depth})"

    @property
    def indices_ndim(self) -> int:
        """Dimensions of a batch of ids (one image's have one fewer)."""
        return 3 if self.residual_depth is None else 4

    @property
    def level_name(self) -> str | None:
        """What one level of the ids is ("depth", "scale"), or None when there is one level."""
        return None if self.residual_depth is None else "depth"

    @property
    def tokens_described(self) -> str:
        """How many codes an image gets, in words (for errors that refuse a quantizer type)."""
        return "one code per position" if self.residual_depth is None else f"{self.residual_depth} codes per position"

    def level_maps(self, indices: torch.LongTensor) -> list[tuple[str, torch.LongTensor]]:
        """Ids of `indices_shape` -> `[(label, (B, h, w) ids)]`, one map per level (depth, scale): `[("", ids)]`
        for plain VQ, `("depth 1", ...)` ... for a residual quantizer."""
        if self.residual_depth is None:
            return [("", indices)]
        return [(f"depth {k + 1}", indices[..., k]) for k in range(self.residual_depth)]

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """`(B, d, h, w)` latents -> `QuantizerOutput` with `(B, d, h, w)` quantized latents and `indices_shape` ids."""
        if latents.ndim != 4 or latents.shape[1] != self.vq_embed_dim:
            raise ValueError(f"Expected latents of shape (B, {self.vq_embed_dim}, h, w), got {tuple(latents.shape)}.")
        batch, _, height, width = latents.shape
        depth = self.residual_depth or 1
        with torch.autocast(latents.device.type, enabled=False):
            z = rearrange(latents.float(), "b d h w -> (b h w) d")
            if self.codebook_l2_norm:
                z = F.normalize(z, dim=-1)
            codebook = self.codebook()
            residual, z_q, ids = z.detach(), 0.0, []
            codebook_loss = commitment_loss = 0.0
            for level in range(depth):
                index = nearest_code(residual, codebook.detach(), self.search_chunk_size)
                code = codebook[index]
                z_q = z_q + code  # the partial sum; at depth 1, exactly the nearest code
                if level + 1 < depth:
                    residual = residual - code.detach()
                codebook_loss = codebook_loss + F.mse_loss(z_q, z.detach())
                commitment_loss = commitment_loss + F.mse_loss(z, z_q.detach())
                ids.append(index)
            codebook_loss = self.codebook_weight * (codebook_loss / depth)
            commitment_loss = self.commitment_weight * (commitment_loss / depth)
            z_q = z + (z_q - z).detach()  # straight-through estimator
        quantized = rearrange(z_q, "(b h w) d -> b d h w", b=batch, h=height, w=width).to(latents.dtype)
        indices = torch.stack(ids, dim=-1).view(batch, height, width, depth)
        return QuantizerOutput(quantized, indices[..., 0] if self.residual_depth is None else indices,
                               codebook_loss, commitment_loss)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        """`indices_shape` code ids -> `(B, d, h, w)` latents: the codes of the (bridged) codebook, summed over
        the depths of a residual quantizer."""
        depth = self.residual_depth
        if indices.ndim != self.indices_ndim or (depth is not None and indices.shape[-1] != depth):
            raise ValueError(f"Expected indices of shape {self.indices_shape}, got {tuple(indices.shape)}.")
        check_token_ids(indices, self.num_vq_embeddings, " Were they made by a tokenizer with another codebook size?")
        codes = self.codebook()[indices.long()]
        if depth is not None:  # summed in depth order, as in forward, so that both give the same latents
            latent = codes[..., 0, :]
            for level in range(1, depth):
                latent = latent + codes[..., level, :]
            codes = latent
        return rearrange(codes, "b h w d -> b d h w")
