"""The key layouts of the original tokenizer code (the FVQ authors', LlamaGen's, VAR's), as an ordered table of
objects that each recognise their own keys (in the spirit of diffusers' `SINGLE_FILE_LOADABLE_CLASSES`).

| layout        | written by                                                        | here                               |
| ------------- | ----------------------------------------------------------------- | ---------------------------------- |
| `fvq-vit`     | FVQ release (`vq_model_qbridge_release.py`, `qbridge_ViT`)        | `bridge_type="vqbridge"`, exact    |
| `fvq-dit`     | FVQ `vq_model_qbridge.py` + `qbridge.py` (shipped scripts)        | folded: "none"; or kept: "dit"     |
| `fvq-linear`  | FVQ `Qbridge-lin/1` (SimVQ baseline)                              | `bridge_type="linear"`             |
| `fvq-mlp`     | FVQ `Qbridge-lin/5` (VQGAN-LC-style baseline)                     | `bridge_type="mlp"`                |
| `vqgan`       | LlamaGen `vq_model.py` (VQ-16, VQ-8) and FVQ's own fold           | `bridge_type="none"`               |
| `var`         | VAR's `vqvae.py` (FVQ's copy: `var/original/`)                    | `quantizer_type="multiscale"`      |
| `var+fvq-dit` | FVQ `var/model/` (VAR with a DiT QBridge; also `-linear`, `-mlp`) | multi-scale, bridge as above       |

Adding a layout is one module (a `Layout`) plus its place in `LAYOUTS` (or `register_layout` from outside the
package). Detection asks each layout in order; the first that recognises the keys is the file's layout.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .base import RELEASE_NUM_HEADS, Layout, transformer_bridge_shape
from .fvq_dit import FVQDiTLayout, fold_dit_bridge
from .fvq_projectors import FVQLinearLayout, FVQMLPLayout
from .fvq_vit import FVQViTLayout
from .var import VAR_SCALES, VARLayout, rename_var_backbone
from .vqgan import VQGANLayout

# The FVQ bridge layouts; VAR files may hold any of them. DiT before ViT: a DiT bridge has the ViT's keys too.
BRIDGE_LAYOUTS: list[Layout] = [FVQDiTLayout(), FVQViTLayout(), FVQLinearLayout(), FVQMLPLayout()]
# In detection order: VAR (its backbone keys tell it), the bridge layouts, then plain VQGAN (no bridge keys).
LAYOUTS: list[Layout] = [VARLayout(tuple(BRIDGE_LAYOUTS)), *BRIDGE_LAYOUTS, VQGANLayout()]


def register_layout(layout: Layout, bridge: bool = False) -> None:
    """Add a layout before the plain-VQGAN fallback; `bridge=True` also lets VAR files hold it."""
    if not isinstance(layout, Layout):
        raise TypeError(f"{layout!r} is not a Layout.")
    LAYOUTS.insert(len(LAYOUTS) - 1, layout)
    if bridge:
        BRIDGE_LAYOUTS.append(layout)
        LAYOUTS[0] = VARLayout(tuple(BRIDGE_LAYOUTS))


def layout_names() -> list[str]:
    return [name for layout in LAYOUTS for name in layout.names()]


def layout_named(name: str) -> Layout | None:
    """The layout object of a name saved in `original_checkpoint.json`, or None for an unknown name."""
    return next((found for layout in LAYOUTS if (found := layout.named(name))), None)


def detect_layout(state: Mapping[str, torch.Tensor]) -> Layout:
    """The layout of an original state dict, from its key names; a ValueError names what was found."""
    if any(k.startswith("quantizer.") for k in state):
        raise ValueError("These weights are already in fvq_hf's layout (keys 'quantizer.*'): load the folder with "
                         "FVQModel.from_pretrained instead of converting it.")
    if "quantize.embedding.weight" not in state or "quant_conv.weight" not in state:
        raise ValueError("Not a tokenizer of the FVQ / LlamaGen / VAR code: it has no 'quantize.embedding.weight' and "
                         f"'quant_conv.weight' (first keys: {sorted(state)[:8]}).")
    found = next((found for layout in LAYOUTS if (found := layout.recognise(state))), None)
    if found is None:
        unknown = sorted(k for k in state if k.startswith("quantize.qbridge."))
        raise ValueError(f"Unknown bridge layout: the keys {unknown[:8]} match none of {layout_names()}.")
    return found


__all__ = ["BRIDGE_LAYOUTS", "LAYOUTS", "RELEASE_NUM_HEADS", "VAR_SCALES", "Layout", "detect_layout", "fold_dit_bridge",
           "layout_named", "layout_names", "register_layout", "rename_var_backbone", "transformer_bridge_shape"]
