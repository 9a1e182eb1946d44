"""`var` and `var+<bridge layout>`: VAR's multi-scale tokenizer (`vqvae.py`; FVQ's copy: `var/original/`) and the
FVQ authors' VAR runs (`var/model/`, VAR with a QBridge), kept as `quantizer_type="multiscale"`.

VAR's backbone is the same taming-transformers network under taming's names (`down.{i}.block.{j}`, `mid.block_1`,
one fused `qkv` conv, `up.{i}` numbered as the encoder's levels, full resolution first):
`taming.rename_taming_backbone` maps it. Its `quant_resi` convs are the multi-scale quantizer's `phi`;
`quantize.ema_vocab_hit_SV` (per-scale hit statistics, one row per scale) is dropped after it has given the number of
scales. Scales are not saved in VAR files: VAR's own are taken when they fit, else the caller gives them.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import DROPPED, LAYOUTS, Layout, NoOptions, has_keys
from .taming import rename_taming_backbone

# VAR's scales for its 16 x 16 latent grid (`v_patch_nums`): not saved in its checkpoints.
VAR_SCALES = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]
HITS = "quantize.ema_vocab_hit_SV"
PHI_RENAMES = (
    (r"^quantize\.quant_resi\.qresi_ls\.(\d+)\.", r"quantizer.phi.\1."),  # VAR's phi, partially shared
    (r"^quantize\.quant_resi\.qresi\.", "quantizer.phi.0."),  # shared
    (r"^quantize\.quant_resi\.(\d+)\.", r"quantizer.phi.\1."),  # one per scale
)


@LAYOUTS.register
class VARLayout(Layout):
    """VAR's layout, plain or with one of the FVQ bridge layouts (`bridge`: those that declare `in_var_files`)
    inside; that bridge's options are its options. `saved_scales`: the number of scales the file says it has (the
    rows of its per-scale hit statistics), when it says so."""

    name = "var"
    written_by = "VAR's `vqvae.py` (FVQ's copy: `var/original/`); FVQ `var/model/` with a QBridge"
    dropped = (*DROPPED, HITS)

    def __init__(self, bridge: Layout | None = None, saved_scales: int | None = None) -> None:
        self.bridge, self.saved_scales = bridge, saved_scales
        self.name = "var" if bridge is None else f"var+{bridge.name}"
        self.renames = (*PHI_RENAMES, *(bridge.renames if bridge else ()))
        self.Options = bridge.Options if bridge else NoOptions

    @staticmethod
    def bridges() -> list[type[Layout]]:
        """The bridge layouts VAR files may hold, in detection order."""
        return [cls for cls in LAYOUTS.values() if cls.in_var_files]

    @classmethod
    def recognise(cls, state: Mapping) -> Layout | None:
        if cls.table_key not in state or not has_keys(state, "encoder.down."):  # taming names, VAR's table
            return None
        hits = state.get(HITS)  # VAR's per-scale hit statistics: the only trace of its number of scales
        saved_scales = None if hits is None else hits.shape[0]
        if not has_keys(state, "quantize.qbridge."):
            return cls(None, saved_scales)
        # The keys that tell a bridge layout apart: VAR's backbone and phi left out.
        rest = {k: v for k, v in state.items() if not k.startswith(("encoder.", "decoder.", "quantize.quant_resi."))}
        bridge = next((found for layout in cls.bridges() if (found := layout.recognise(rest))), None)
        if bridge is None:
            unknown = sorted(k for k in state if k.startswith("quantize.qbridge."))
            raise ValueError(f"Unknown bridge layout in a VAR file: the keys {unknown[:8]} match none of "
                             f"{[b.name for b in cls.bridges()]}.")
        return cls(bridge, saved_scales)

    @classmethod
    def names(cls) -> list[str]:
        return ["var", *(f"var+{b.name}" for b in cls.bridges())]

    @classmethod
    def named(cls, name: str) -> Layout | None:
        if name == "var":
            return cls()
        bridge = next((b for b in cls.bridges() if f"var+{b.name}" == name), None)
        return None if bridge is None else cls(bridge())

    def rename(self, state: Mapping) -> tuple[dict, list[str]]:
        return super().rename(rename_taming_backbone(state))

    def convert(self, state, sample_size, options) -> tuple[dict, dict]:
        """The bridge's config and decisions (if any) with VAR's multi-scale quantizer: VAR's scales when they fit
        the latent grid and the file's number of scales."""
        config, decisions = (self.bridge.convert(state, sample_size, options) if self.bridge
                             else super().convert(state, sample_size, options))
        phis = {k.split(".")[2] for k in state if k.startswith("quantizer.phi.")}
        quantizer = {"num_phi": max(len(phis), 1), "phi_ratio": 0.5 if phis else 0.0}  # VAR's quant_resi, not saved
        if self.saved_scales in (None, len(VAR_SCALES)) and var_grid(config) == VAR_SCALES[-1]:
            quantizer["scales"] = VAR_SCALES  # else the caller must say them (the file does not)
        return {**config, "quantizer_type": "multiscale", "quantizer_config": quantizer}, decisions

    def choose_l2_norm(self, saved_args, code_dim: int, flag: bool | None) -> tuple[bool, str]:
        if flag:
            raise ValueError("codebook_l2_norm=True does not fit a VAR checkpoint here: the multi-scale quantizer "
                             "has no l2-normalised search (VAR's using_znorm; its release and the FVQ authors' "
                             "VAR runs use using_znorm=False).")
        return False, "VAR's quantizer as released and in the FVQ authors' VAR runs (using_znorm=False)"

    def check_config(self, config: Mapping, given: Mapping | None, source: str) -> None:
        """The scales of a VAR file are not saved: VAR's own are taken when they fit, else the caller must give
        them; either way there must be as many as the file's per-scale statistics have rows."""
        if config.get("quantizer_type") != "multiscale":
            return
        scales, grid, count = config["quantizer_config"].get("scales"), var_grid(config), self.saved_scales
        found = f"{count} scales (rows of {HITS})" if count else "no record of its scales"
        if scales is None:
            raise ValueError(f"{source} has {found} at a {grid} x {grid} latent grid, and VAR's scales {VAR_SCALES} do "
                             f"not fit; its scales are not saved. Pass them: config={{'quantizer_config': {{'scales': "
                             f"[..., {grid}]}}}} (fvq-convert --scales ... {grid}).")
        if count is not None and len(scales) != count:
            given_scales = "scales" in ((given or {}).get("quantizer_config") or {})
            raise ValueError(f"{source} has {found}, but {'the scales given' if given_scales else 'VAR scales'} "
                             f"{scales} are {len(scales)}.")


def var_grid(config: Mapping) -> int:
    """The latent grid side of a config: sample_size over the downsample factor."""
    return config["sample_size"] // 2 ** (len(config["block_out_channels"]) - 1)
