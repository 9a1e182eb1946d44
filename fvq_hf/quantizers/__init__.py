"""Quantizer types, found by name: the registry maps a config's `quantizer_type` to the class that owns its keys.

`protocol.py` holds what every consumer relies on (`Quantizer`: `forward`, `lookup`, the ids spec, the levels;
`QUANTIZERS`); `base.py` the table-owning base (`TableQuantizer`: the table, the bridge, the level loop, the
losses, the straight-through step); `ids.py` what ids are (`IdsSpec`) and the check every consumer applies. Adding
a type is one module: a class that declares its `name` and is decorated with `@QUANTIZERS.register`.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import TABLE_INITS, TableQuantizer
from .ids import IdsSpec, TokenIdTypeError, check_token_ids
from .protocol import MODEL_OPTIONS, QUANTIZERS, Quantizer, QuantizerOutput

# isort: off
# The types register as they are imported: in this order, which is the order their names are listed in.
from .vq import VectorQuantizer
from .residual import ResidualQuantizer
from .multiscale import MultiScaleQuantizer
# isort: on


def quantizer_class(quantizer_type: str) -> type[Quantizer]:
    """The class registered for `quantizer_type`; a ValueError lists the names."""
    return QUANTIZERS.get(quantizer_type)


def resolve_quantizer_config(quantizer_type: str, config: Mapping | None) -> dict:
    """The complete `quantizer_config` of a type: defaults filled in; an unknown type or key, or a bad value, is
    an error that names it."""
    return quantizer_class(quantizer_type).resolve_config(config)


__all__ = ["MODEL_OPTIONS", "QUANTIZERS", "TABLE_INITS", "IdsSpec", "MultiScaleQuantizer", "Quantizer",
           "QuantizerOutput", "ResidualQuantizer", "TableQuantizer", "TokenIdTypeError", "VectorQuantizer",
           "check_token_ids", "quantizer_class", "resolve_quantizer_config"]
