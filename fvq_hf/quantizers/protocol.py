"""What every consumer of a quantizer relies on (the model, the usage metric, pipelines, code extraction, the
Space), apart from how a type quantizes: the `Quantizer` base and the `QUANTIZERS` registry.

A quantizer maps `(B, d, h, w)` latents to `QuantizerOutput` (quantized latents, ids, two losses) and ids back to
latents (`lookup`). Its ids are described once, by the `IdsSpec` its type computes from its config
(`quantizer.ids`: shape, order, levels and their labels, one code per position or not, a fixed latent side), and
they lie in `[0, codebook_size)`. A type's `quantizer_config` keys are the keyword parameters of its `__init__`
after the first two, so the class is the one place that knows them.

Whether a type owns a learnable table (and so takes a bridge, has a `codebook()` and can fold one) is the
capability `has_table`: the table-owning base is `TableQuantizer` (`base.py`); a type without a table (FSQ, LFQ:
implicit codes) derives from `Quantizer` directly, as `tests/examples/scalar_quantizer.py` does.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers.utils import BaseOutput
from torch import nn

from ..bridges import NO_BRIDGE
from ..config_keys import check_config_types, init_keywords
from ..registry import Registry
from .ids import IdsSpec, check_token_ids

# The model config's options (not part of `quantizer_config`) offered to every type, which takes those its
# `__init__` names: a table type (`TableQuantizer`) takes them all.
MODEL_OPTIONS = ("codebook_l2_norm", "codebook_weight", "commitment_weight", "search_chunk_size", "table_init",
                 "quantizer_precision", "table_dim", "freeze_table", "table_update", "table_ema_decay")


@dataclass
class QuantizerOutput(BaseOutput):
    """
    Args:
        latents (`torch.Tensor` of shape `(B, d, h, w)`): the quantized latents (nearest codes), with
            straight-through gradients to the input.
        indices (`torch.LongTensor` of the quantizer's `indices_shape`): code ids in `[0, K)`.
        codebook_loss (`torch.Tensor`, scalar): `codebook_weight * mean((z_q - sg(z))^2)`; trains the codebook.
            Over several levels (residual depths, scales), the mean of it over the partial sums of levels 1..L, as
            RQ-VAE, VAR and the FVQ authors' variants. Zero for a type without a table.
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
    """Quantizes `(B, d, h, w)` latents into ids of `ids.shape` over `codebook_size` codes of width `code_dim`.

    A type says its name (`name`, its `quantizer_type`), its ids (`ids_spec`), how it quantizes (`forward`) and
    how ids go back to latents (`lookup`); one with several levels also splits ids into `level_maps`.
    """

    # The registry name (`quantizer_type`) and what the type is, in words.
    name: ClassVar[str] = ""
    display_name: ClassVar[str]
    # Whether the type owns a learnable table (`TableQuantizer`): a bridge, `codebook()` and folding need one.
    has_table: ClassVar[bool] = False

    def __init__(self, codebook_size: int, code_dim: int, config: Mapping | None = None) -> None:
        """`config`: the type's `quantizer_config` values, checked here (`validate_config`) and described once
        (`ids_spec`)."""
        super().__init__()
        config = dict(config or {})
        type(self).validate_config(config)
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.ids = type(self).ids_spec(config)

    # --- the type's config -------------------------------------------------------------------------------------
    @classmethod
    def config_defaults(cls) -> dict:
        """The type's `quantizer_config` keys and their defaults, from its `__init__` (after its first two
        parameters; the model options it takes are not among them)."""
        return init_keywords(cls, exclude=("config", *MODEL_OPTIONS))

    @classmethod
    def complete_config(cls, config: Mapping | None) -> dict:
        """`config` with the defaults filled in; a ValueError names keys the type does not have, or a value of the
        wrong type. (Values are checked by `validate_config`, once, when a quantizer is built.)"""
        defaults = cls.config_defaults()
        unknown = set(config or {}) - set(defaults)
        if unknown:
            raise ValueError(f"quantizer_config keys {sorted(unknown)} do not apply to quantizer_type {cls.name!r}, "
                             f"which takes {sorted(defaults) or 'none'}.")
        check_config_types(cls.__init__, config or {}, f"quantizer_config of quantizer_type {cls.name!r}")
        # JSON gives lists back: a tuple given from Python is saved and compared as one.
        return {k: list(v) if isinstance(v, tuple) else v for k, v in {**defaults, **(config or {})}.items()}

    @classmethod
    def validate_config(cls, config: dict) -> None:
        """Raise a ValueError naming the bad value of a complete config."""

    @classmethod
    def resolve_config(cls, config: Mapping | None) -> dict:
        """`config` completed with the defaults and checked (keys, types, values)."""
        config = cls.complete_config(config)
        cls.validate_config(config)
        return config

    @classmethod
    def ids_spec(cls, config: Mapping) -> IdsSpec:
        """What the ids of a complete, valid `config` are: one code per position, `(B, h, w)`, here."""
        return IdsSpec()

    @classmethod
    def build(cls, codebook_size: int, code_dim: int, config: Mapping, *, bridge_type: str = NO_BRIDGE,
              bridge_config: Mapping | None = None, **options) -> Quantizer:
        """The quantizer of a model config: `config` is its complete `quantizer_config`, `options` the model
        options every type is offered (`codebook_weight`, `table_init`, ...), of which it takes those its
        `__init__` names. A type without a table takes no bridge."""
        if bridge_type != NO_BRIDGE:
            raise ValueError(f"The {cls.display_name} quantizer (quantizer_type {cls.name!r}) has no codebook table, so "
                             f"it takes no bridge: use bridge_type {NO_BRIDGE!r}, not {bridge_type!r}.")
        taken = inspect.signature(cls.__init__).parameters
        return cls(codebook_size, code_dim, **config, **{k: v for k, v in options.items() if k in taken})

    # --- the ids -----------------------------------------------------------------------------------------------
    @property
    def num_levels(self) -> int:
        """Levels of the ids: residual depths, scales; 1 for plain VQ."""
        return self.ids.num_levels

    @property
    def level_name(self) -> str | None:
        """What one level of the ids is ("depth", "scale"); None for a type with one level."""
        return self.ids.level_name

    @property
    def indices_shape(self) -> str:
        """The shape of a batch of ids, in words, e.g. `(B, h, w)`."""
        return self.ids.shape

    @property
    def indices_ndim(self) -> int:
        """Dimensions of a batch of ids (one image's have one fewer)."""
        return self.ids.ndim

    @property
    def indices_order(self) -> str:
        """How the ids are ordered, in words, where the shape does not say it ("" for plain VQ)."""
        return self.ids.order

    @property
    def one_code_per_position(self) -> bool:
        """Whether each latent position gets exactly one code (what the prior and code files take)."""
        return self.ids.one_code_per_position

    @property
    def tokens_described(self) -> str:
        """How many codes an image gets, in words (for errors that refuse a quantizer type)."""
        return self.ids.tokens_described

    def split_levels(self, indices: torch.LongTensor) -> list[torch.LongTensor]:
        """Ids of `indices_shape` -> one map of ids per level, in level order: `[indices]` for one level."""
        return [indices]

    def level_maps(self, indices: torch.LongTensor) -> list[tuple[str, torch.LongTensor]]:
        """Ids of `indices_shape` -> `[(label, ids)]`, one map per level (`ids.level_labels`)."""
        return list(zip(self.ids.level_labels, self.split_levels(indices)))

    def check_indices(self, indices: torch.LongTensor, shape_ok: bool) -> None:
        """Ids of the right rank (and `shape_ok`) with values in `[0, K)`, or an error naming what is wrong."""
        if indices.ndim != self.indices_ndim or not shape_ok:
            raise ValueError(f"Expected indices of shape {self.indices_shape}{self.indices_order}, got "
                             f"{tuple(indices.shape)}.")
        check_token_ids(indices, self.codebook_size, " Were they made by a tokenizer with another codebook size?")

    def check_latent_side(self, side: int, where: str) -> None:
        """Raise a ValueError if this quantizer cannot take a `side x side` latent grid (`where` says how `side` was
        found, e.g. "sample_size / 16")."""
        fixed = self.ids.fixed_latent_side
        if fixed is not None and fixed != side:
            raise ValueError(f"The {self.display_name} quantizer's latent grid must be {where} = {side}; it takes "
                             f"{fixed} x {fixed}.")

    def check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 4 or latents.shape[1] != self.code_dim:
            raise ValueError(f"Expected latents of shape (B, {self.code_dim}, h, w), got {tuple(latents.shape)}.")

    # --- quantizing --------------------------------------------------------------------------------------------
    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """`(B, d, h, w)` latents -> `QuantizerOutput` with `(B, d, h, w)` quantized latents and ids of
        `indices_shape`."""
        raise NotImplementedError

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        """Ids of `indices_shape` -> `(B, d, h, w)` latents, as `forward` builds them from the same ids."""
        raise NotImplementedError


QUANTIZERS: Registry[type[Quantizer]] = Registry("quantizer_type", Quantizer)
