"""Codebook bridges, found by name: the registry maps a config's `bridge_type` to the class that owns its keys.

Adding a bridge is one module: a `CodebookBridge` that declares its `name` and is decorated with
`@BRIDGES.register`. `bridge_type="none"` is plain VQ (the table is the codebook): a reserved name, not a class.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import BRIDGES, NO_BRIDGE, CodebookBridge
from .dit import QBRIDGE_PRESETS, DiTBridge, qbridge_config
from .projectors import LinearBridge, MLPBridge
from .vqbridge import VQBridge, codebook_grid


def bridge_class(bridge_type: str) -> type[CodebookBridge] | None:
    """The class registered for `bridge_type` (None for plain VQ); a ValueError lists the names."""
    return None if bridge_type == NO_BRIDGE else BRIDGES.get(bridge_type)


def resolve_bridge_config(bridge_type: str, config: Mapping | None) -> dict:
    """The full config of a bridge (its defaults completed); `{}` for plain VQ, which takes none."""
    cls = bridge_class(bridge_type)
    if cls is None:
        if config:
            raise ValueError(f"bridge_type 'none' (plain VQ) takes no bridge_config, got {dict(config)}.")
        return {}
    return cls.resolve_config(config)


def build_bridge(bridge_type: str, codebook_size: int, code_dim: int,
                 config: Mapping | None = None) -> CodebookBridge | None:
    """The bridge module for `bridge_type`, or None for plain VQ."""
    cls = bridge_class(bridge_type)
    return None if cls is None else cls(codebook_size, code_dim, **resolve_bridge_config(bridge_type, config))


__all__ = ["BRIDGES", "NO_BRIDGE", "QBRIDGE_PRESETS", "CodebookBridge", "DiTBridge", "LinearBridge", "MLPBridge",
           "VQBridge", "bridge_class", "build_bridge", "codebook_grid", "qbridge_config", "resolve_bridge_config"]
