"""`fvq-dit`: the FVQ authors' DiT-bridge model (`vq_model_qbridge.py` + `qbridge.py`, which the shipped
`scripts/recon/FVQ-*.sh` train). By default the bridge is run once for a label and folded into a plain codebook
(as their `convert_fullvq2vq.py`); with `keep_bridge` it is kept as `bridge_type="dit"`, to train further."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from ...bridges import DiTBridge
from ...bridges.dit import default_label
from .base import Layout, has_keys, transformer_bridge_shape
from .fvq import FVQBridgeLayout
from .fvq_vit import TRANSFORMER_BRIDGE_RENAMES

logger = logging.getLogger(__name__)
PREFIX = "quantizer.bridge."


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

    def recognise(self, state: Mapping) -> Layout | None:
        dit = any(k.startswith("quantize.qbridge.") and ("adaLN_modulation" in k or "y_embedder" in k) for k in state)
        return self if dit else None

    def prepare(self, state, num_heads, dit_label, keep_bridge=False):
        if not keep_bridge:
            return fold_dit_bridge(state, num_heads, dit_label)
        if f"{PREFIX}patch_embed.weight" not in state or f"{PREFIX}blocks.0.mlp.fc1.weight" not in state:
            found = sorted(k for k in state if k.startswith(PREFIX))
            raise ValueError(f"Cannot keep the DiT bridge: its patch embedding or first block is missing (bridge keys "
                             f"found: {found[:10]}).")
        return dit_label_rule(num_dit_labels(state), dit_label)

    def bridge_config(self, state, num_heads) -> dict | None:
        if not has_keys(state, PREFIX):  # folded
            return None
        return {**transformer_bridge_shape(state), "num_heads": num_heads, "num_labels": num_dit_labels(state)}

    def infer_config(self, state, sample_size, num_heads, num_scales) -> dict:
        config = super().infer_config(state, sample_size, num_heads, num_scales)
        return {**config, "bridge_type": "dit" if has_keys(state, PREFIX) else "none"}


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
