"""What every quantizer type shares: the learnable table, the bridge that maps it to the codebook, and the level
loop (nearest codes of the residual, partial-sum losses, straight-through estimator).

A type is a `Quantizer` subclass that says how one level quantizes the residual (`quantize_level`), how its
ids are laid out (`indices_shape`, `level_maps`) and how ids go back to latents (`lookup`). Its
`quantizer_config` keys are the keyword parameters of its `__init__` (after the table and the bridge), so the
class is the one place that knows them; `validate_config` checks their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from torch import nn

from ..config_keys import check_config_types, init_keywords
from .ids import check_token_ids

# The options every type takes from the model config (not part of `quantizer_config`).
COMMON_OPTIONS = ("codebook_l2_norm", "codebook_weight", "commitment_weight", "search_chunk_size", "table_init")
# How the learnable table starts: "auto" (the bridge's rule; uniform(-1/K, 1/K) without one, as LlamaGen and the
# FVQ code), "uniform" (that, whatever the bridge), "normal" (N(0, 1): `nn.Embedding`'s default, which the FVQ
# authors' VAR variant keeps).
TABLE_INITS = ("auto", "uniform", "normal")


@dataclass
class QuantizerOutput(BaseOutput):
    """
    Args:
        latents (`torch.Tensor` of shape `(B, d, h, w)`): the quantized latents (nearest codes), with
            straight-through gradients to the input.
        indices (`torch.LongTensor` of the quantizer's `indices_shape`): code ids in `[0, K)`.
        codebook_loss (`torch.Tensor`, scalar): `codebook_weight * mean((z_q - sg(z))^2)`; trains the codebook.
            Over several levels (residual depths, scales), the mean of it over the partial sums of levels 1..L, as
            RQ-VAE, VAR and the FVQ authors' variants.
        commitment_loss (`torch.Tensor`, scalar): `commitment_weight * mean((sg(z_q) - z)^2)`; trains the encoder
            (likewise averaged over the partial sums).
    """

    latents: torch.Tensor
    indices: torch.LongTensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Quantizer(nn.Module):
    """Quantizes `(B, d, h, w)` latents with the codes of `codebook = bridge(embedding.weight)`.

    `embedding` is the learnable `(K, d)` table; `bridge` any `CodebookBridge` module (see `fvq_hf.bridges`), or
    None for plain VQ, where the table is the codebook. The bridge says how the table is initialised and whether
    it stays frozen. With `codebook_l2_norm`, latents and codes are l2-normalised before the search (LlamaGen's
    default). The search and the losses always run in fp32, also under autocast.
    """

    # The registry name (`quantizer_type`), set by `register_quantizer`; and what the type is, in words.
    quantizer_type: ClassVar[str] = ""
    display_name: ClassVar[str] = "vector"
    # What one level of the ids is ("depth", "scale"); None for a type with one level.
    level_name: ClassVar[str | None] = None
    # Whether the type can l2-normalise (a residual is not a direction: unit codes cannot sum to it).
    supports_l2_norm: ClassVar[bool] = True

    def __init__(
        self,
        embedding: nn.Embedding,
        bridge: nn.Module | None = None,
        *,
        codebook_l2_norm: bool = False,
        codebook_weight: float = 1.0,
        commitment_weight: float = 0.25,
        search_chunk_size: int = 4096,
        table_init: str = "auto",
    ) -> None:
        super().__init__()
        if codebook_weight < 0 or commitment_weight < 0 or search_chunk_size < 1:
            raise ValueError("codebook_weight and commitment_weight must be >= 0 and search_chunk_size >= 1.")
        if table_init not in TABLE_INITS:
            raise ValueError(f"table_init={table_init!r}: choose one of {TABLE_INITS}.")
        if codebook_l2_norm and not self.supports_l2_norm:
            raise ValueError(f"codebook_l2_norm=True cannot be combined with {self.display_name} quantization: a "
                             "residual is not a direction, and unit codes cannot sum to it.")
        if codebook_l2_norm and getattr(bridge, "starts_at_zero", False):
            # The VQBridge's zero-initialised output sits at the singular point of the normalisation: the first
            # gradients are ~1e12 and training diverges (measured). The released FVQ runs use no l2-norm.
            raise ValueError(f"codebook_l2_norm=True cannot be combined with the {bridge.display_name}: it starts "
                             "from an all-zero codebook, where l2-normalisation has no gradient to give. Use "
                             "codebook_l2_norm=False, as the released FVQ models do.")
        self.codebook_size, self.code_dim = embedding.weight.shape
        self.codebook_l2_norm = codebook_l2_norm
        self.codebook_weight = codebook_weight
        self.commitment_weight = commitment_weight
        self.search_chunk_size = search_chunk_size
        self.table_init = table_init
        self.embedding = embedding
        self.bridge = bridge
        self.reset_parameters()
        self.embedding.weight.requires_grad_(not getattr(bridge, "freezes_table", False))
        self._cache: tuple[tuple, torch.Tensor] | None = None

    # --- the type's config -------------------------------------------------------------------------------------
    @classmethod
    def config_defaults(cls) -> dict:
        """The type's `quantizer_config` keys and their defaults, from its `__init__` (after the table and bridge)."""
        return init_keywords(cls, exclude=COMMON_OPTIONS)

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        """Check the values of a complete config (a ValueError names the bad one); returns it normalised."""
        return config

    @classmethod
    def resolve_config(cls, config: Mapping | None) -> dict:
        """`config` completed with the defaults and validated; a ValueError names keys the type does not have."""
        defaults = cls.config_defaults()
        unknown = set(config or {}) - set(defaults)
        if unknown:
            raise ValueError(f"quantizer_config keys {sorted(unknown)} do not apply to quantizer_type "
                             f"{cls.quantizer_type!r}, which takes {sorted(defaults) or 'none'}.")
        check_config_types(cls.__init__, config or {}, f"quantizer_config of quantizer_type {cls.quantizer_type!r}")
        return cls.validate_config({**defaults, **(config or {})})

    @classmethod
    def fixed_latent_size(cls, config: Mapping) -> int | None:
        """The one latent grid side a config allows (a multi-scale quantizer's last scale); None for any."""
        return None

    @classmethod
    def check_latent_grid(cls, config: Mapping, side: int, where: str) -> None:
        """Raise a ValueError if a config cannot quantize a `side x side` latent grid (`where` says how `side` was
        found, e.g. "sample_size / 16")."""
        fixed = cls.fixed_latent_size(config)
        if fixed is not None and fixed != side:
            raise ValueError(f"The {cls.display_name} quantizer's latent grid must be {where} = {side}; its config "
                             f"{dict(config)} gives {fixed}.")

    @classmethod
    def describe_ids(cls, config: Mapping, side: int, size: int) -> tuple[str, str]:
        """`(shape, words)` of the ids of one `size` px image at a `side x side` latent grid (for model cards):
        `("16, 16", "16 x 16 per 256 px image")` here."""
        return f"{side}, {side}", f"{side} x {side} per {size} px image"

    # --- the codebook ------------------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        if self.table_init == "normal":
            nn.init.normal_(self.embedding.weight)
        elif self.bridge is None or self.table_init == "uniform":  # as released (LlamaGen, FVQ): uniform(-1/K, 1/K)
            nn.init.uniform_(self.embedding.weight, -1.0 / self.codebook_size, 1.0 / self.codebook_size)
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

    # --- the ids -----------------------------------------------------------------------------------------------
    @property
    def num_levels(self) -> int:
        """Levels of the level loop: residual depths, scales; 1 for plain VQ."""
        return 1

    @property
    def index_dims(self) -> tuple[str, ...]:
        """The dimensions of a batch of ids, by name or size: `("B", "h", "w")` here; a type with other ids says
        its own. `indices_shape` and `indices_ndim` follow from it."""
        return ("B", "h", "w")

    @property
    def indices_shape(self) -> str:
        """The shape of a batch of ids, in words, e.g. `(B, h, w)`."""
        return f"({', '.join(self.index_dims)})"

    @property
    def indices_ndim(self) -> int:
        """Dimensions of a batch of ids (one image's have one fewer)."""
        return len(self.index_dims)

    @property
    def indices_order(self) -> str:
        """How the ids are ordered, in words, where the shape does not say it ("" here)."""
        return ""

    @property
    def one_code_per_position(self) -> bool:
        """Whether each latent position gets exactly one code (what the prior and code files take)."""
        return self.num_levels == 1

    @property
    def tokens_described(self) -> str:
        """How many codes an image gets, in words (for errors that refuse a quantizer type)."""
        return "one code per position"

    def level_maps(self, indices: torch.LongTensor) -> list[tuple[str, torch.LongTensor]]:
        """Ids of `indices_shape` -> `[(label, (B, h, w) ids)]`, one map per level: `[("", ids)]` for one level."""
        return [("", indices)]

    def check_indices(self, indices: torch.LongTensor, shape_ok: bool) -> None:
        """Ids of the right rank (and `shape_ok`) with values in `[0, K)`, or an error naming what is wrong."""
        if indices.ndim != self.indices_ndim or not shape_ok:
            raise ValueError(f"Expected indices of shape {self.indices_shape}{self.indices_order}, got "
                             f"{tuple(indices.shape)}.")
        check_token_ids(indices, self.codebook_size, " Were they made by a tokenizer with another codebook size?")

    # --- the level loop ----------------------------------------------------------------------------------------
    def flatten(self, latents: torch.Tensor) -> torch.Tensor:
        """`(B, d, h, w)` fp32 latents -> the form the levels work on (`z`); `unflatten` is its inverse."""
        return latents

    def unflatten(self, z: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return z

    def quantize_level(self, level: int, residual: torch.Tensor, codebook: torch.Tensor
                       ) -> tuple[torch.LongTensor, torch.Tensor]:
        """The ids of level `level` for `residual` (of `z`'s form) and their contribution to the latent (same form)."""
        raise NotImplementedError

    def join_levels(self, ids: list[torch.LongTensor], latents: torch.Tensor) -> torch.LongTensor:
        """The ids of every level -> one batch of ids of `indices_shape`."""
        raise NotImplementedError

    def check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 4 or latents.shape[1] != self.code_dim:
            raise ValueError(f"Expected latents of shape (B, {self.code_dim}, h, w), got {tuple(latents.shape)}.")

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """`(B, d, h, w)` latents -> `QuantizerOutput` with `(B, d, h, w)` quantized latents and ids of
        `indices_shape`. Each level quantizes what the levels before it left; the losses are averaged over the
        partial sums, and the straight-through estimator passes the gradient of the sum to the encoder."""
        self.check_latents(latents)
        levels = self.num_levels
        with torch.autocast(latents.device.type, enabled=False):
            z = self.flatten(latents.float())
            if self.codebook_l2_norm:
                z = F.normalize(z, dim=-1)
            codebook = self.codebook()
            residual, z_q, ids = z.detach(), 0.0, []
            codebook_loss = commitment_loss = 0.0
            for level in range(levels):
                index, contribution = self.quantize_level(level, residual, codebook)
                z_q = z_q + contribution  # the partial sum; after one level, exactly the nearest codes
                if level + 1 < levels:
                    residual = residual - contribution.detach()
                codebook_loss = codebook_loss + F.mse_loss(z_q, z.detach())
                commitment_loss = commitment_loss + F.mse_loss(z, z_q.detach())
                ids.append(index)
            codebook_loss = self.codebook_weight * (codebook_loss / levels)
            commitment_loss = self.commitment_weight * (commitment_loss / levels)
            z_q = z + (z_q - z).detach()  # straight-through estimator
        quantized = self.unflatten(z_q, latents).to(latents.dtype)
        return QuantizerOutput(quantized, self.join_levels(ids, latents), codebook_loss, commitment_loss)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        """Ids of `indices_shape` -> `(B, d, h, w)` latents, as `forward` builds them from the same ids."""
        raise NotImplementedError
