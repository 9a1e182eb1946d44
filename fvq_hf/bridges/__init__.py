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
from .vqgan_lc import LCLinearBridge, LCMLPBridge


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


def build_bridge(bridge_type: str, codebook_size: int, code_dim: int, config: Mapping | None = None,
                 table_dim: int | None = None) -> CodebookBridge | None:
    """The bridge module for `bridge_type` from a `(K, table_dim)` table to `(K, code_dim)` codes (`table_dim` None:
    as wide as the codes), or None for plain VQ; a ValueError where the bridge cannot map those widths."""
    cls = bridge_class(bridge_type)
    check_widths(cls, code_dim, table_dim)
    if cls is None:
        return None
    widths = {"table_dim": table_dim or code_dim} if cls.maps_width else {}
    return cls(codebook_size, code_dim, **resolve_bridge_config(bridge_type, config), **widths)


def check_widths(cls: type[CodebookBridge] | None, code_dim: int, table_dim: int | None) -> None:
    """A ValueError unless a table of width `table_dim` (None: `code_dim`) fits codes of width `code_dim` through
    `cls` (None: plain VQ, where the table is the codebook)."""
    if table_dim is None or table_dim == code_dim:
        return
    if table_dim < 1:
        raise ValueError(f"table_dim must be >= 1 (or None: the code width), got {table_dim}.")
    if cls is None or not cls.maps_width:
        what = "plain VQ (bridge_type 'none') uses the table as the codebook" if cls is None else \
            f"the {cls.display_name} maps (K, d) tables to (K, d) codes"
        wide = sorted(name for name in BRIDGES.names() if BRIDGES.get(name).maps_width)
        raise ValueError(f"table_dim={table_dim} differs from the code width vq_embed_dim={code_dim}, but {what}: "
                         f"leave table_dim unset, or use a bridge that maps widths ({', '.join(wide)}).")


__all__ = ["BRIDGES", "NO_BRIDGE", "QBRIDGE_PRESETS", "CodebookBridge", "DiTBridge", "LCLinearBridge", "LCMLPBridge",
           "LinearBridge", "MLPBridge", "VQBridge", "bridge_class", "build_bridge", "check_widths", "codebook_grid",
           "qbridge_config", "resolve_bridge_config"]
