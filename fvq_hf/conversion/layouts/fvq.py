"""What the FVQ authors' bridge layouts share: `quantize.qbridge.*` keys, and a quantizer that never
l2-normalises in its search."""

from __future__ import annotations

from collections.abc import Mapping

from .base import Layout


class FVQBridgeLayout(Layout):
    """A layout of the FVQ code with a bridge under `quantize.qbridge.`; subclasses say which keys tell it."""

    origin = "fvq"
    # A key (or key prefix) that only this bridge has, and what it becomes here.
    marker: str = ""
    bridge_type: str = "none"

    def bridge_config(self, state: Mapping, num_heads: int) -> dict | None:
        """The bridge's keys read off the (renamed) tensor shapes; None: its defaults (it has no shape keys)."""
        return None

    def infer_config(self, state, sample_size, num_heads, num_scales) -> dict:
        config = {**super().infer_config(state, sample_size, num_heads, num_scales), "bridge_type": self.bridge_type}
        bridge = self.bridge_config(state, num_heads)
        return config if bridge is None else {**config, "bridge_config": bridge}

    def prepare(self, state, num_heads, dit_label, keep_bridge=False):
        # A ViT, linear or MLP bridge is always kept: it is a training option here.
        return super().prepare(state, num_heads, dit_label)

    def recognise(self, state: Mapping) -> Layout | None:
        return self if any(k.startswith(f"quantize.qbridge.{self.marker}") for k in state) else None

    def choose_l2_norm(self, args, code_dim: int, flag: bool | None) -> tuple[bool, str]:
        # The FVQ code's quantizer never normalises in its search; its flag only normalises the initial table.
        if flag:
            raise ValueError("codebook_l2_norm=True does not fit a checkpoint of the FVQ code: its quantizer never "
                             "l2-normalises in the search (the flag only normalises the initial table there).")
        return False, "the FVQ code's quantizer never l2-normalises in its search"
