"""`fvq-dit`: the FVQ authors' DiT-bridge model (`vq_model_qbridge.py` + `qbridge.py`, which the shipped
`scripts/recon/FVQ-*.sh` train): the bridge is run once for a label and folded into a plain codebook."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from ...bridges import DiTBridge
from .base import Layout, transformer_bridge_shape
from .fvq import FVQBridgeLayout
from .fvq_vit import TRANSFORMER_BRIDGE_RENAMES

logger = logging.getLogger(__name__)


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

    def prepare(self, state, num_heads, dit_label):
        return fold_dit_bridge(state, num_heads, dit_label)


@torch.no_grad()
def fold_dit_bridge(state: dict[str, torch.Tensor], num_heads: int, label: int | None) -> tuple[int, str]:
    """Replace the DiT bridge's weights in `state` (renamed) by the codebook it computes for `label`, in place.

    `label` None takes the label the authors' code uses: 0 with one label row (`--is_uncondition`); for a
    class-conditional bridge the null class, as their `convert_fullvq2vq.py` does. Returns the label and why.
    """
    prefix = "quantizer.bridge."
    bridge_state = {k[len(prefix):]: state.pop(k).float() for k in list(state) if k.startswith(prefix)}
    table = state["quantizer.embedding.weight"].float()
    shape = transformer_bridge_shape(bridge_state, prefix="")
    num_labels = bridge_state["label_embed.weight"].shape[0] if "label_embed.weight" in bridge_state else 1
    bridge = DiTBridge(table.shape[0], table.shape[1], num_heads=num_heads, num_labels=num_labels, **shape)
    result = bridge.load_state_dict(bridge_state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"The DiT bridge's weights do not fit the authors' qbridge.py layout (missing: "
                         f"{result.missing_keys[:10]}; unknown: {['quantize.qbridge.' + k for k in result.unexpected_keys][:10]}).")
    if label is None:
        label, why = (0, "the only label (--is_uncondition)") if num_labels == 1 else \
            (num_labels - 1, "the null class, as the authors' convert_fullvq2vq.py folds it")
        if num_labels > 1:
            logger.warning("This DiT bridge is class-conditional: the original gives one codebook per class. The "
                           "conversion folds the null class (%d); pass dit_label= for another class.", label)
    else:
        why = "given by the caller"
    state["quantizer.embedding.weight"] = bridge.eval()(table, label)
    return label, why
