"""`fvq-vit`: the FVQ release (`vq_model_qbridge_release.py`, `qbridge_ViT.py`): the ViT bridge, kept exactly as
`bridge_type="vqbridge"`."""

from __future__ import annotations

from .base import transformer_bridge_shape
from .fvq import FVQBridgeLayout

# The ViT and DiT bridges share these names; the DiT layout adds its own.
TRANSFORMER_BRIDGE_RENAMES = (
    (r"^quantize\.qbridge\.x_embedder\.proj\.", "quantizer.bridge.patch_embed."),
    (r"^quantize\.qbridge\.blocks\.", "quantizer.bridge.blocks."),
    (r"^quantize\.qbridge\.final_layer\.linear\.", "quantizer.bridge.proj_out."),
)


class FVQViTLayout(FVQBridgeLayout):
    name = "fvq-vit"
    written_by = "FVQ release (`vq_model_qbridge_release.py`, `qbridge_ViT`)"
    marker, bridge_type = "x_embedder.proj.weight", "vqbridge"
    renames = TRANSFORMER_BRIDGE_RENAMES

    def bridge_config(self, state, num_heads) -> dict:
        return {**transformer_bridge_shape(state), "num_heads": num_heads}
