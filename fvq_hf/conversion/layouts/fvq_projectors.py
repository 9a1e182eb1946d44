"""`fvq-linear` and `fvq-mlp`: the FVQ authors' baseline bridges (`Qbridge-lin/1`, SimVQ's linear map; `Qbridge-lin/5`,
an MLP projector of the paper's baselines), kept as `bridge_type="linear"` and `"mlp"`."""

from __future__ import annotations

from .base import LAYOUTS
from .fvq import FVQBridgeLayout


@LAYOUTS.register
class FVQLinearLayout(FVQBridgeLayout):
    name = "fvq-linear"
    written_by = "FVQ `Qbridge-lin/1` (SimVQ baseline)"
    marker, bridge_type = "linear.weight", "linear"
    renames = ((r"^quantize\.qbridge\.linear\.", "quantizer.bridge.linear."),)


@LAYOUTS.register
class FVQMLPLayout(FVQBridgeLayout):
    name = "fvq-mlp"
    written_by = "FVQ `Qbridge-lin/5` (MLP projector baseline)"
    marker, bridge_type = "linear_5.", "mlp"
    renames = ((r"^quantize\.qbridge\.linear_5\.", "quantizer.bridge.layers."),)

    def bridge_config(self, state, options) -> dict:
        linears = sorted({int(k.split(".")[3]) for k in state if k.startswith("quantizer.bridge.layers.")})
        return {"depth": len(linears) - 1, "hidden_size": state["quantizer.bridge.layers.0.weight"].shape[0]}
