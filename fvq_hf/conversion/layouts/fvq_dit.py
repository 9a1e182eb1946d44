"""`fvq-dit`: the FVQ authors' DiT-bridge model (`vq_model_qbridge.py` + `qbridge.py`, which the shipped
`scripts/recon/FVQ-*.sh` train). By default the bridge is run once for a label and folded into a plain codebook
(as their `convert_fullvq2vq.py`); with the option `keep_bridge` it is kept as `bridge_type="dit"`, to train further."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import torch

from ...bridges import DiTBridge
from ...bridges.dit import default_label
from .base import LAYOUTS, Layout, backbone_config, keep_bridge_option, option, transformer_bridge_shape
from .fvq import TRANSFORMER_BRIDGE_RENAMES, FVQBridgeLayout, TransformerBridgeOptions

logger = logging.getLogger(__name__)
PREFIX = "quantizer.bridge."


@dataclasses.dataclass(frozen=True)
class DiTOptions(TransformerBridgeOptions):
    """The options of a DiT bridge's layout: its heads, and at which label it is folded (or kept)."""

    dit_label: int | None = option(None, "label to fold (or keep) a DiT bridge at (default: as the authors do)")
    keep_bridge: bool = keep_bridge_option()


@LAYOUTS.register
class FVQDiTLayout(FVQBridgeLayout):
    name = "fvq-dit"
    written_by = "FVQ `vq_model_qbridge.py` + `qbridge.py` (shipped scripts)"
    renames = (
        (r"^quantize\.qbridge\.pos_embed$", "quantizer.bridge.pos_embed"),
        (r"^quantize\.qbridge\.y_embedder\.embedding_table\.", "quantizer.bridge.label_embed."),
        (r"^quantize\.qbridge\.blocks\.(\d+)\.adaLN_modulation\.1\.", r"quantizer.bridge.blocks.\1.modulation."),
        (r"^quantize\.qbridge\.final_layer\.adaLN_modulation\.1\.", "quantizer.bridge.final_modulation."),
        *TRANSFORMER_BRIDGE_RENAMES,
    )
    Options = DiTOptions

    @classmethod
    def recognise(cls, state: Mapping) -> Layout | None:
        dit = any(k.startswith("quantize.qbridge.") and ("adaLN_modulation" in k or "y_embedder" in k) for k in state)
        return cls() if dit else None

    def convert(self, state, sample_size, options: DiTOptions) -> tuple[dict, dict]:
        """Folded (the default): a plain codebook, and the label it was taken at and why. Kept: `bridge_type="dit"`
        at that label."""
        if not options.keep_bridge:
            label, why = fold_dit_bridge(state, options.num_heads, options.dit_label)
            return backbone_config(state, sample_size), {"folded_label": label, "folded_label_reason": why}
        if f"{PREFIX}patch_embed.weight" not in state or f"{PREFIX}blocks.0.mlp.fc1.weight" not in state:
            found = sorted(k for k in state if k.startswith(PREFIX))
            raise ValueError(f"Cannot keep the DiT bridge: its patch embedding or first block is missing (bridge keys "
                             f"found: {found[:10]}).")
        labels = num_dit_labels(state)
        label, _ = dit_label_rule(labels, options.dit_label)
        bridge = {**transformer_bridge_shape(state), "num_heads": options.num_heads, "num_labels": labels,
                  "label": label}
        config = {**backbone_config(state, sample_size), "bridge_type": "dit", "bridge_config": bridge}
        return config, {"kept_bridge": True}


def num_dit_labels(state: Mapping[str, torch.Tensor], prefix: str = PREFIX) -> int:
    """Rows of a (renamed) DiT bridge's label table: 1 for `--is_uncondition`."""
    table = state.get(f"{prefix}label_embed.weight")
    return 1 if table is None else table.shape[0]


def dit_label_rule(num_labels: int, label: int | None) -> tuple[int, str]:
    """The label a DiT bridge's codebook is taken at, and why: the caller's, else 0 with one label row
    (`--is_uncondition`), else the null class, as the authors' `convert_fullvq2vq.py` folds it."""
    if label is not None:
        if not 0 <= label < num_labels:
            raise ValueError(f"dit_label {label} is outside the DiT bridge's label table of {num_labels} row(s).")
        return label, "given by the caller"
    label = default_label(num_labels)
    if num_labels == 1:
        return label, "the only label (--is_uncondition)"
    logger.warning("This DiT bridge is class-conditional: the original gives one codebook per class. The codebook "
                   "is taken at the null class (%d); pass dit_label= for another class.", label)
    return label, "the null class, as the authors' convert_fullvq2vq.py folds it"


@torch.no_grad()
def fold_dit_bridge(state: dict[str, torch.Tensor], num_heads: int, label: int | None) -> tuple[int, str]:
    """Replace the DiT bridge's weights in `state` (renamed) by the codebook it computes for `label`, in place
    (`label` None: `dit_label_rule`). Returns the label and why."""
    bridge_state = {k[len(PREFIX):]: state.pop(k).float() for k in list(state) if k.startswith(PREFIX)}
    table = state["quantizer.embedding.weight"].float()
    shape = transformer_bridge_shape(bridge_state, prefix="")
    num_labels = num_dit_labels(bridge_state, prefix="")
    label, why = dit_label_rule(num_labels, label)
    bridge = DiTBridge(table.shape[0], table.shape[1], num_heads=num_heads, num_labels=num_labels, **shape)
    result = bridge.load_state_dict(bridge_state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"The DiT bridge's weights do not fit the authors' qbridge.py layout (missing: "
                         f"{result.missing_keys[:10]}; unknown: {['quantize.qbridge.' + k for k in result.unexpected_keys][:10]}).")
    state["quantizer.embedding.weight"] = bridge.eval()(table, label)
    return label, why
