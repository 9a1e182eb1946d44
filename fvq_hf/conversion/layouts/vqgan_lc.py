"""`vqgan-lc`: VQGAN-LC's tokenizer (Zhu et al., arXiv 2406.11837; code zh460045050/VQGAN-LC,
`vqgan-gpt-lc/models/models_vq.py`): their released `vqgan-lc-*.pth` (100K and 16,384 codes at f16 / d = 8, 100K at
f8 / d = 4) and their training checkpoints.

A file is `{"state_dict": ..., "opt_ae", "opt_dist", "epoch", "scaler_ae", "scaler_dist", "args"}` (their
`*-last.pth`: `"model"` instead of `"state_dict"`), `args` their argparse Namespace. The state dict is their whole
`VQModel`:

| their keys | here |
| --- | --- |
| `encoder.*`, `decoder.*` (taming's names) | renamed (`taming`), the decoder's levels reversed; attention where theirs is: f16 at its lowest level, f8 none (`attention_levels=[]`: taming's `attn_resolutions: [16]` is never reached there) |
| `quant_conv.*`, `post_quant_conv.*` | kept |
| `tok_embeddings.weight` `(K, 768)`, the k-means table of CLIP features | the table (`table_dim` 768) |
| `codebook_projection.*`: `use_cblinear 1` `Linear(768, d)`, `2` `Linear(768, 256)-ReLU-Linear(256, d)` | folded into a plain `(K, d)` codebook (default: the same codes at plain-VQ cost), or with `keep_bridge` kept trainable as `bridge_type="lc-linear"` / `"lc-mlp"` over the frozen table |
| `cluster_size`, `embed_avg` (`--quantizer_type ema`, no projector) | the EMA table's statistics (`table_update="ema"`, `quantizer.ema.cluster_size`, `.embed_sum`) |
| `discriminator.*`, `perceptual_loss.*` (PatchGAN, LPIPS-VGG) | dropped, and listed in the info's `dropped_keys` |

Without a projector (`use_cblinear 0`) the table is the codebook, as wide as the codes.

Their quantizer searches the projected codebook by squared L2 with no l2-norm (`codebook_l2_norm=False`; their code
l2-normalises the latent alone when d = 768, which no release uses and this package cannot express: refused), with a
straight-through estimator. Its loss is `mean((sg(z_q) - z)^2) + 0.33 mean((z_q - sg(z))^2)` times `--rate_q`
(0.1 in every script of theirs): here `commitment_weight` = 1.0 x rate_q and `codebook_weight` = 0.33 x rate_q when the
file's args give rate_q (0.1 and 0.033), else their unscaled 1.0 and 0.33. An EMA run (their VQGAN-EMA baseline)
becomes `table_update="ema"` with their decay 0.99 and their statistics, so that training goes on as theirs; its loss
has the commitment term only (`codebook_weight` 0). Their args' `tuning_codebook` says whether the table was trained
(0, -2: frozen; 1, -1: trained), kept as `freeze_table` where the converted model has that table; `embed_dim`,
`n_vision_words` and `use_cblinear` are checked against the shapes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import torch

from ...bridges import build_bridge
from .base import LAYOUTS, Layout, backbone_config, has_keys, keep_bridge_option
from .taming import decoder_levels, rename_taming_backbone, taming_key

TABLE, PREFIX = "quantizer.embedding.weight", "quantizer.bridge.projection."
EMA_KEYS = ("cluster_size", "embed_avg")
EMA_DECAY = 0.99  # models_vq.py: fixed, not an argument
# Their `use_cblinear` -> the projector here (0: none).
PROJECTORS = {1: "lc-linear", 2: "lc-mlp"}
# Their quantizer loss: commitment 1.0, codebook 0.33 (models_vq.py), times --rate_q.
COMMITMENT, CODEBOOK = 1.0, 0.33


@dataclasses.dataclass(frozen=True)
class LCOptions:
    """The options of VQGAN-LC's layout: fold the projector (default) or keep it."""

    keep_bridge: bool = keep_bridge_option()


@LAYOUTS.register
class VQGANLCLayout(Layout):
    """VQGAN-LC's `VQModel`; `projector` (their `use_cblinear`: 0, 1, 2) and `ema` (an EMA quantizer's statistics)
    are read off the file's keys, `levels` (the decoder's) when it is renamed."""

    name = "vqgan-lc"
    written_by = "VQGAN-LC `models_vq.py` (`vqgan-lc-*.pth`, f16 and f8)"
    origin = "vqgan-lc"
    table_key = "tok_embeddings.weight"
    renames = ((r"^tok_embeddings\.", "quantizer.embedding."),
               (r"^codebook_projection\.", PREFIX),
               (r"^cluster_size$", "quantizer.ema.cluster_size"),
               (r"^embed_avg$", "quantizer.ema.embed_sum"))
    dropped = ("discriminator.", "perceptual_loss.")
    Options = LCOptions

    def __init__(self, projector: int = 0, ema: bool = False) -> None:
        self.projector, self.ema, self.levels = projector, ema, 0

    @classmethod
    def recognise(cls, state: Mapping) -> Layout | None:
        if cls.table_key not in state or not has_keys(state, "encoder.down."):  # their table, taming's names
            return None
        projector = 2 if has_keys(state, "codebook_projection.0.") else int(has_keys(state, "codebook_projection."))
        return cls(projector, any(key in state for key in EMA_KEYS))

    def rename(self, state: Mapping) -> tuple[dict, list[str]]:
        self.levels = decoder_levels(state)
        return super().rename(rename_taming_backbone(state))

    def original_key(self, key: str) -> str:
        for pattern, theirs in ((r"^quantizer\.embedding\.", "tok_embeddings."),
                                (r"^quantizer\.bridge\.projection\.", "codebook_projection."),
                                (r"^quantizer\.ema\.cluster_size$", "cluster_size"),
                                (r"^quantizer\.ema\.embed_sum$", "embed_avg")):
            key = re.sub(pattern, theirs, key)
        return taming_key(key, self.levels)

    def convert(self, state, sample_size, options: LCOptions) -> tuple[dict, dict]:
        """Folded (the default): the projected codebook as a plain table. Kept: the projector over the frozen table.
        Without a projector: the table as the codebook."""
        code_dim, (codebook_size, table_dim) = state["quant_conv.weight"].shape[0], state[TABLE].shape
        kind = PROJECTORS.get(self.projector)
        if kind is None:
            if options.keep_bridge:
                raise ValueError("keep_bridge=True: this VQGAN-LC file has no codebook projector to keep (no "
                                 "codebook_projection keys: use_cblinear 0); its table is the codebook.")
            if table_dim != code_dim:
                raise ValueError(f"tok_embeddings.weight is ({codebook_size}, {table_dim}) and there is no "
                                 f"codebook_projection (use_cblinear 0), so its rows are the codes; but quant_conv "
                                 f"gives d = {code_dim}.")
            config = backbone_config(state, sample_size)
            if self.ema:  # their VQGAN-EMA baseline: the table follows moving averages, theirs kept
                config.update(table_update="ema", table_ema_decay=EMA_DECAY)
            return config, {"projector": "none (use_cblinear 0): the table is the codebook"}
        if self.ema:
            raise ValueError("This file has an EMA quantizer's statistics (cluster_size, embed_avg) and a codebook "
                             "projector: their EMA branch searches the projected codebook but outputs the raw table's "
                             "rows, which no quantizer here does. Only EMA runs without a projector (use_cblinear 0) "
                             "convert.")
        what = f"{kind} (use_cblinear {self.projector}) over their ({codebook_size}, {table_dim}) table"
        first = state.get(f"{PREFIX}0.weight")  # lc-mlp's hidden width (missing: the fold or the loader names it)
        hidden = {"hidden_size": first.shape[0]} if kind == "lc-mlp" and first is not None else None
        if not options.keep_bridge:
            fold_projector(state, kind, code_dim, hidden)
            return backbone_config(state, sample_size), {"projector": f"{what}, folded into a plain codebook"}
        config = {**backbone_config(state, sample_size), "vq_embed_dim": code_dim, "bridge_type": kind,
                  "bridge_config": hidden, "table_dim": table_dim}
        return config, {"projector": f"{what}, kept trainable (fold_bridge() gives the plain codebook)"}

    def read_args(self, config: dict, saved_args: Mapping | None) -> tuple[dict, dict]:
        """Their loss weights (x rate_q) always; whether the table was trained where the model keeps it (a kept
        projector's table, or a table without one); the args' sizes checked against the shapes."""
        args = saved_args or {}
        found = {"embed_dim": config["vq_embed_dim"], "n_vision_words": config["num_vq_embeddings"],
                 "use_cblinear": self.projector}
        wrong = {k: (args[k], v) for k, v in found.items() if k in args and args[k] != v}
        if wrong:
            raise ValueError("The file's args contradict its weights: " + "; ".join(
                f"{k} {said} in the args, {shape} by the shapes" for k, (said, shape) in wrong.items()) + ".")
        rate = args.get("rate_q")
        scale, said = (1.0, "unscaled: the file has no rate_q") if rate is None else (rate, f"times rate_q {rate}")
        codebook = 0.0 if self.ema else CODEBOOK  # an EMA run's loss has no codebook term
        weights = {"codebook_weight": float(f"{codebook * scale:.10g}"),
                   "commitment_weight": float(f"{COMMITMENT * scale:.10g}")}
        decisions = {"loss_weights": f"codebook {weights['codebook_weight']:g}, commitment "
                                     f"{weights['commitment_weight']:g} (their {codebook:g} and {COMMITMENT:g}, {said})"}
        keeps_table = config["bridge_type"] != "none" or not self.projector
        mode = args.get("tuning_codebook")
        if self.ema:
            decisions["table"] = f"updated by moving averages (their --quantizer_type ema, decay {EMA_DECAY}), " \
                                 "their statistics kept"
        elif keeps_table and mode is not None:
            weights["freeze_table"] = mode in (0, -2)
            decisions["table"] = f"{'frozen' if mode in (0, -2) else 'trained'} (tuning_codebook {mode})"
        return {**config, **weights}, decisions

    def choose_l2_norm(self, saved_args, code_dim: int, flag: bool | None) -> tuple[bool, str]:
        mode = (saved_args or {}).get("tuning_codebook")
        if code_dim == 768 and mode != -1:
            raise ValueError("This VQGAN-LC model has 768-d codes: their code then l2-normalises the latent but not "
                             "the codes (models_vq.py encode, unless tuning_codebook -1), which no quantizer here "
                             "does. Their releases use d = 8 and 4.")
        if flag:
            raise ValueError("codebook_l2_norm=True does not fit a VQGAN-LC checkpoint: their quantizer searches by "
                             "squared L2 without l2-normalising codes or latents (at d < 768).")
        return False, "VQGAN-LC's quantizer: squared-L2 search, no l2-norm (models_vq.py)"


@torch.no_grad()
def fold_projector(state: dict[str, torch.Tensor], kind: str, code_dim: int, config: dict | None) -> None:
    """Replace the projector's weights in `state` (renamed) by the codebook it computes from the table, in place:
    `(K, d) = projection((K, D) table)`, as their quantizer computes it every forward."""
    weights = {k[len("quantizer.bridge."):]: state.pop(k).float() for k in list(state) if k.startswith(PREFIX)}
    table = state[TABLE].float()
    bridge = build_bridge(kind, table.shape[0], code_dim, config, table_dim=table.shape[1])
    expected = bridge.state_dict()
    missing = sorted(set(expected) - set(weights))
    unknown = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(weights) & set(expected) if weights[k].shape != expected[k].shape)
    if missing or unknown or wrong:
        name = {k: "codebook_projection." + k[len("projection."):] for k in (*missing, *unknown, *wrong)}
        details = "; ".join(f"{what}: {[name[k] for k in keys]}" for what, keys in
                            (("missing", missing), ("unknown", unknown), ("wrong shape", wrong)) if keys)
        raise ValueError(f"The codebook projector does not fit their use_cblinear layout of {kind} to d = {code_dim} "
                         f"({details}).")
    bridge.load_state_dict(weights)
    state[TABLE] = bridge.eval()(table)
