"""`fvq-vit`: the FVQ release (`vq_model_qbridge_release.py`, `qbridge_ViT.py`): the ViT bridge, kept exactly as
`bridge_type="vqbridge"`."""

from __future__ import annotations

from .base import LAYOUTS, transformer_bridge_shape
from .fvq import TRANSFORMER_BRIDGE_RENAMES, FVQBridgeLayout, TransformerBridgeOptions


@LAYOUTS.register
class FVQViTLayout(FVQBridgeLayout):
    name = "fvq-vit"
    written_by = "FVQ release (`vq_model_qbridge_release.py`, `qbridge_ViT`)"
    marker, bridge_type = "x_embedder.proj.weight", "vqbridge"
    renames = TRANSFORMER_BRIDGE_RENAMES
    Options = TransformerBridgeOptions

    def bridge_config(self, state, options: TransformerBridgeOptions) -> dict:
        return {**transformer_bridge_shape(state), "num_heads": options.num_heads}
