"""The key layouts of the original tokenizer code (the FVQ authors', LlamaGen's, VAR's, VQGAN-LC's), as a registry
of classes that each recognise their own keys (in the spirit of diffusers' `SINGLE_FILE_LOADABLE_CLASSES`).

| layout        | written by                                                        | here                                            |
| ------------- | ----------------------------------------------------------------- | ----------------------------------------------- |
| `fvq-vit`     | FVQ release (`vq_model_qbridge_release.py`, `qbridge_ViT`)        | `bridge_type="vqbridge"`, exact                 |
| `fvq-dit`     | FVQ `vq_model_qbridge.py` + `qbridge.py` (shipped scripts)        | folded: "none"; or kept: "dit"                  |
| `fvq-linear`  | FVQ `Qbridge-lin/1` (SimVQ baseline)                              | `bridge_type="linear"`                          |
| `fvq-mlp`     | FVQ `Qbridge-lin/5` (MLP projector baseline)                      | `bridge_type="mlp"`                             |
| `vqgan`       | LlamaGen `vq_model.py` (VQ-16, VQ-8) and FVQ's own fold           | `bridge_type="none"`                            |
| `var`         | VAR's `vqvae.py` (FVQ's copy: `var/original/`)                    | `quantizer_type="multiscale"`                   |
| `var+fvq-dit` | FVQ `var/model/` (VAR with a DiT QBridge; also `-linear`, `-mlp`) | multi-scale, bridge as above                    |
| `vqgan-lc`    | VQGAN-LC `models_vq.py` (`vqgan-lc-*.pth`, f16 and f8)            | folded: "none"; or kept: "lc-linear" / "lc-mlp" |

Adding a layout is one module: a `Layout` class registered with `@LAYOUTS.register`, its options (if any) a frozen
dataclass, its `Options`. Detection asks each registered layout in registration order, the plain VQGAN layout last
(`FALLBACK`: it takes any file with LlamaGen's table key and no bridge keys); the first that recognises the keys is
the file's layout. The caller's options go to that layout (`layout_options`); `fvq-convert` makes a flag of every
declared option (`declared_options`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, get_type_hints

import torch

from ...config_keys import check_config_types

# Registered on import, in detection order: VAR first (its backbone's names and its table key tell its files, whatever
# bridge they hold), then the FVQ bridge layouts (DiT before ViT: a DiT bridge has the ViT's keys too), then VQGAN-LC
# (its table key is its own); layouts registered from outside the package come after them.
from .base import LAYOUTS, RELEASE_NUM_HEADS, Layout, NoOptions, option, option_fields
from .var import VAR_SCALES, VARLayout

# isort: split
from .fvq_dit import DiTOptions, FVQDiTLayout, fold_dit_bridge

# isort: split
from .fvq_vit import FVQViTLayout

# isort: split
from .fvq_projectors import FVQLinearLayout, FVQMLPLayout

# isort: split
from .taming import rename_taming_backbone
from .vqgan import VQGANLayout
from .vqgan_lc import VQGANLCLayout

FALLBACK = VQGANLayout


class DeclaredOption(NamedTuple):
    """An option some layouts declare: its type, default and help, and the layouts that take it."""

    hint: Any
    default: Any
    help: str
    layouts: list[str]


def detection_order() -> list[type[Layout]]:
    """The registered layouts in the order detection asks them: registration order, the fallback last."""
    return [cls for cls in LAYOUTS.values() if cls is not FALLBACK] + [FALLBACK]


def layout_names() -> list[str]:
    return [name for cls in detection_order() for name in cls.names()]


def layout_named(name: str) -> Layout | None:
    """The layout object of a name saved in `original_checkpoint.json`, or None for an unknown name."""
    return next((found for cls in detection_order() if (found := cls.named(name))), None)


def detect_layout(state: Mapping[str, torch.Tensor]) -> Layout:
    """The layout of an original state dict, from its key names; a ValueError names what was found."""
    if any(k.startswith("quantizer.") for k in state):
        raise ValueError("These weights are already in fvq_hf's layout (keys 'quantizer.*'): load the folder with "
                         "FVQModel.from_pretrained instead of converting it.")
    tables = sorted({cls.table_key for cls in detection_order()})
    if "quant_conv.weight" not in state or not any(key in state for key in tables):
        raise ValueError("Not a tokenizer of the FVQ / LlamaGen / VAR / VQGAN-LC code: it has no 'quant_conv.weight' "
                         f"and codebook table ({' or '.join(map(repr, tables))}) (first keys: {sorted(state)[:8]}).")
    found = next((found for cls in detection_order() if (found := cls.recognise(state))), None)
    if found is None:
        unknown = sorted(k for k in state if k.startswith("quantize.qbridge."))
        if not unknown:
            raise ValueError(f"Unknown layout: no layout of {layout_names()} recognises these keys (first keys: "
                             f"{sorted(state)[:8]}).")
        raise ValueError(f"Unknown bridge layout: the keys {unknown[:8]} match none of {layout_names()}.")
    return found


def declared_options() -> dict[str, DeclaredOption]:
    """Every option a registered layout declares, by name (the first declaration's type, default and help)."""
    declared: dict[str, DeclaredOption] = {}
    for name in layout_names():
        options = layout_named(name).Options
        hints = get_type_hints(options)
        for key, field in option_fields(options).items():
            if key not in declared:
                declared[key] = DeclaredOption(hints[key], field.default, field.metadata.get("help", ""), [])
            declared[key].layouts.append(name)
    return declared


def layout_options(layout: Layout, given: Mapping[str, Any]) -> Any:
    """`layout`'s `Options` made of the caller's options: those it declares (None: its default). Another option is
    an error naming the layout and the options it takes, unless it asks for nothing: its value is the default of every
    layout that declares it (`keep_bridge=False` for a file without a bridge)."""
    own = option_fields(layout.Options)
    given = {key: value for key, value in given.items() if value is not None}
    declared = declared_options()
    wrong = [key for key, value in given.items() if key not in own and not (
        key in declared and all(value == option_fields(layout_named(name).Options)[key].default
                                for name in declared[key].layouts))]
    if wrong:
        takes = ", ".join(own) or "none"
        raise ValueError("; ".join(
            f"{key} is an option of the layouts {', '.join(declared[key].layouts)}" if key in declared else
            f"{key} is no layout's option" for key in wrong) + f", not of this file's layout {layout.name!r}, which "
            f"takes {takes}.")
    taken = {key: value for key, value in given.items() if key in own}
    check_config_types(layout.Options, taken, f"The option of the layout {layout.name!r}")
    return layout.Options(**taken)


__all__ = ["FALLBACK", "LAYOUTS", "RELEASE_NUM_HEADS", "VAR_SCALES", "DeclaredOption", "DiTOptions", "FVQDiTLayout",
           "FVQLinearLayout", "FVQMLPLayout", "FVQViTLayout", "Layout", "NoOptions", "VARLayout", "VQGANLCLayout",
           "VQGANLayout", "declared_options", "detect_layout", "detection_order", "fold_dit_bridge", "layout_named",
           "layout_names", "layout_options", "option", "rename_taming_backbone"]
