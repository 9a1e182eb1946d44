"""What the FVQ authors' bridge layouts share: `quantize.qbridge.*` keys, a quantizer that never l2-normalises in its
search, and (ViT and DiT bridges) the transformer bridge's names and its one option, `num_heads`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .base import RELEASE_NUM_HEADS, Layout, backbone_config, option

# The ViT and DiT bridges share these names; the DiT layout adds its own.
TRANSFORMER_BRIDGE_RENAMES = (
    (r"^quantize\.qbridge\.x_embedder\.proj\.", "quantizer.bridge.patch_embed."),
    (r"^quantize\.qbridge\.blocks\.", "quantizer.bridge.blocks."),
    (r"^quantize\.qbridge\.final_layer\.linear\.", "quantizer.bridge.proj_out."),
)


@dataclasses.dataclass(frozen=True)
class TransformerBridgeOptions:
    """The options of a ViT or DiT bridge's layout: what its shapes cannot tell."""

    num_heads: int = option(RELEASE_NUM_HEADS, "the bridge's attention heads, which shapes cannot tell (releases: "
                                               f"{RELEASE_NUM_HEADS})")


class FVQBridgeLayout(Layout):
    """A layout of the FVQ code with a bridge under `quantize.qbridge.`; subclasses say which keys tell it (`marker`)
    and what it becomes here (`bridge_type`, and `bridge_config` read off the shapes)."""

    origin = "fvq"
    in_var_files = True
    marker: str = ""
    bridge_type: str = "none"

    @classmethod
    def recognise(cls, state: Mapping) -> Layout | None:
        return cls() if any(k.startswith(f"quantize.qbridge.{cls.marker}") for k in state) else None

    def bridge_config(self, state: Mapping, options) -> dict | None:
        """The bridge's keys read off the (renamed) tensor shapes; None: its defaults (it has no shape keys)."""
        return None

    def convert(self, state, sample_size, options) -> tuple[dict, dict]:
        config = {**backbone_config(state, sample_size), "bridge_type": self.bridge_type}
        bridge = self.bridge_config(state, options)
        return (config if bridge is None else {**config, "bridge_config": bridge}), {}

    def choose_l2_norm(self, saved_args, code_dim: int, flag: bool | None) -> tuple[bool, str]:
        # The FVQ code's quantizer never normalises in its search; its flag only normalises the initial table.
        if flag:
            raise ValueError("codebook_l2_norm=True does not fit a checkpoint of the FVQ code: its quantizer never "
                             "l2-normalises in the search (the flag only normalises the initial table there).")
        return False, "the FVQ code's quantizer never l2-normalises in its search"
