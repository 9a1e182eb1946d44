"""Quantizer types, found by name: the registry maps a config's `quantizer_type` to the class that owns its keys.

Adding a type is one module (a `Quantizer` subclass: how one level quantizes the residual, how its ids are laid
out and looked up) plus its entry in `QUANTIZERS` (or a call to `register_quantizer` from outside the package).
The table, the bridge, the level loop, the losses and the straight-through step are the base's (`base.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import COMMON_OPTIONS, Quantizer, QuantizerOutput
from .ids import TokenIdTypeError, check_token_ids
from .multiscale import MultiScaleQuantizer
from .residual import ResidualQuantizer
from .vq import VectorQuantizer

QUANTIZERS: dict[str, type[Quantizer]] = {}


def register_quantizer(name: str, cls: type[Quantizer]) -> None:
    """Make `quantizer_type=name` build `cls` (a `Quantizer` subclass)."""
    if not (isinstance(cls, type) and issubclass(cls, Quantizer)):
        raise TypeError(f"{cls!r} is not a Quantizer subclass.")
    cls.quantizer_type = name
    QUANTIZERS[name] = cls


for _name, _cls in (("vq", VectorQuantizer), ("residual", ResidualQuantizer), ("multiscale", MultiScaleQuantizer)):
    register_quantizer(_name, _cls)


def quantizer_class(quantizer_type: str) -> type[Quantizer]:
    """The class registered for `quantizer_type`; a ValueError lists the names."""
    if quantizer_type not in QUANTIZERS:
        raise ValueError(f"Unknown quantizer_type {quantizer_type!r}; expected one of {', '.join(QUANTIZERS)}.")
    return QUANTIZERS[quantizer_type]


def resolve_quantizer_config(quantizer_type: str, config: Mapping | None) -> dict:
    """The complete `quantizer_config` of a type: defaults filled in; an unknown type or key, or a bad value, is
    an error that names it."""
    return quantizer_class(quantizer_type).resolve_config(config)


__all__ = ["COMMON_OPTIONS", "QUANTIZERS", "MultiScaleQuantizer", "Quantizer", "QuantizerOutput", "ResidualQuantizer",
           "TokenIdTypeError", "VectorQuantizer", "check_token_ids", "quantizer_class",
           "register_quantizer", "resolve_quantizer_config"]
