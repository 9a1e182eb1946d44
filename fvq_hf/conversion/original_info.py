"""What a conversion of an original checkpoint read and decided (`OriginalCheckpointInfo`), its file
(`original_checkpoint.json`, written next to converted weights by `fvq-convert`; `save` and `load` are its writer and
reader) and the facts of the releases it may come from (`KNOWN_RELEASES`, for model cards). Torch-free: model cards
read it without loading a layout.

`original_checkpoint.json`:

    {"source": str,                 # the file converted: its name, or repo_id/filename for a Hub file
     "layout": str,                 # the original layout (`fvq_hf.conversion.layouts`), e.g. "vqgan", "var+fvq-dit"
     "weights": str,                # the checkpoint entry taken: "ema", "model", "state_dict" or "bare"
     "codebook_l2_norm": bool, "l2_norm_reason": str,
     "dropped_keys": [str],         # original keys left out on purpose
     "args": {...} | null,          # the training arguments saved in the checkpoint (JSON-safe values)
     "origin": str | null,          # whose code wrote the layout: "fvq", "vqgan-lc", ... (null: the layout does not
                                    # tell)
     "decisions": {...}}            # what the layout decided with its options, as it said it (e.g. a DiT bridge:
                                    # {"folded_label": 1000, "folded_label_reason": "..."} or {"kept_bridge": true})

Files written before `origin` and `decisions` existed (fvq-hf 0.1) hold the DiT decisions as top-level keys
(`folded_label`, `folded_label_reason`, `kept_bridge`) and no origin: `load` reads them as decisions, and takes the
origin from the layout's name (the FVQ authors' layouts were the ones named `fvq-*`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

ORIGINAL_FILE = "original_checkpoint.json"

LLAMAGEN = dict(origin="LlamaGen (Sun et al., *Autoregressive Model Beats Diffusion*, arXiv 2406.06525; "
                "github.com/FoundationVision/LlamaGen)", base_model="FoundationVision/LlamaGen", license="mit",
                license_note="LlamaGen's repository is MIT-licensed (\"the majority of this project\"); its "
                "README gives no separate licence for the weights.")
FVQ = dict(origin="FVQ (Chang et al., *Scalable Training for Vector-Quantized Networks with 100% Codebook "
           "Utilization*, arXiv 2509.10140; github.com/yfChang-cv/FVQ)", base_model="yfChang/FVQ", license="unknown",
           license_note="The FVQ repository states no licence: ask the authors before redistributing these weights.")
VQGAN_LC = dict(origin="VQGAN-LC (Zhu et al., *Scaling the Codebook Size of VQGAN to 100,000 with a Utilization Rate "
                "of 99%*, arXiv 2406.11837; github.com/zh460045050/VQGAN-LC)", base_model=None, license="unknown",
                license_note="The VQGAN-LC repository states no licence, and its weights are on the authors' Google "
                "Drive, not the Hub: ask the authors before redistributing these weights.")
# Whose code a layout's `origin` names: what a card says of weights that are no known release.
ORIGINS = {"fvq": FVQ, "llamagen": LLAMAGEN, "vqgan-lc": VQGAN_LC}
# What the original authors reported for their released files (their numbers, ImageNet val; not measured here),
# by the start of the file name.
KNOWN_RELEASES = {
    "vq_ds16_c2i": (LLAMAGEN, ["rFID 2.19 at 256 px (16 x 16 tokens), 0.94 at 384 px, 0.70 at 512 px "
                               "(LlamaGen README)"]),
    "vq_ds8_c2i": (LLAMAGEN, ["rFID 0.59 at 256 px (32 x 32 tokens) (LlamaGen README)"]),
    "vq_ds16_t2i": (LLAMAGEN, []),
    "fullvq2vqgan": (FVQ, ["100% codebook usage at codebook sizes up to 262,144 and a headline rFID of 0.88 "
                           "(arXiv 2509.10140; see the paper for the setting of each figure)"]),
    "vqgan-lc-100K-f16": (VQGAN_LC, ["rFID 2.62, codebook usage 99.9%, LPIPS 0.12, PSNR 23.8, SSIM 58.9 at 256 px "
                                     "(16 x 16 tokens) (arXiv 2406.11837, Table 2)"]),
    "vqgan-lc-16384-f16": (VQGAN_LC, ["rFID 3.01, codebook usage 99.9%, LPIPS 0.13, PSNR 23.2, SSIM 56.4 at 256 px "
                                      "(16 x 16 tokens) (arXiv 2406.11837, Table 2, K = 16,384; this file was "
                                      "released after the paper)"]),
    "vqgan-lc-100K-f8": (VQGAN_LC, ["rFID 1.29, codebook usage 99.5%, LPIPS 0.07, PSNR 27.0, SSIM 71.6 at 256 px "
                                    "(32 x 32 tokens) (arXiv 2406.11837, Table 2)"]),
}


@dataclasses.dataclass
class OriginalCheckpointInfo:
    """What a conversion read and decided (see the module docstring); saved as `original_checkpoint.json` next to
    converted weights."""

    source: str
    layout: str
    weights: str
    codebook_l2_norm: bool
    l2_norm_reason: str
    dropped_keys: list[str]
    args: dict | None = None
    origin: str | None = None
    decisions: dict = dataclasses.field(default_factory=dict)

    def save(self, folder: str | os.PathLike) -> None:
        Path(folder, ORIGINAL_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, folder: str | os.PathLike | None) -> OriginalCheckpointInfo | None:
        """The info saved in `folder`, or None when there is none (no folder, or not a converted original)."""
        path = Path(folder, ORIGINAL_FILE) if folder else None
        if path is None or not path.is_file():
            return None
        saved = json.loads(path.read_text())
        fields = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in saved.items() if k in fields}
        if "decisions" not in saved:  # fvq-hf 0.1: the DiT decisions at the top level, no origin
            known["decisions"] = {k: v for k, v in saved.items() if k not in fields}
            known["origin"] = "fvq" if saved["layout"].startswith("fvq-") else None
        return cls(**known)

    def release(self) -> tuple[dict | None, list[str]]:
        """`(origin facts, reported numbers)`: a known release by its file name, else whose code the layout is."""
        name = Path(self.source).name
        for prefix, (origin, reported) in KNOWN_RELEASES.items():
            if name.startswith(prefix):
                return origin, reported
        return ORIGINS.get(self.origin or ""), []
