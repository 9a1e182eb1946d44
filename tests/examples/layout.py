"""An example original layout: a LlamaGen-style VQGAN whose quantizer kept EMA statistics (`quantize.cluster_size`,
`quantize.embed_avg`, as taming-style EMA quantizers do), with an option of its own: take the codebook from those
statistics (`embed_avg / cluster_size`, what an EMA quantizer's codebook tracks) instead of the saved table. One
module; registered as "vqgan-ema"."""

from __future__ import annotations

import dataclasses

from fvq_hf.conversion.layouts import LAYOUTS, Layout, option
from fvq_hf.conversion.layouts.base import DROPPED, backbone_config

EMA_KEYS = ("quantize.cluster_size", "quantize.embed_avg")


@dataclasses.dataclass(frozen=True)
class EMAOptions:
    codebook_from_ema: bool = option(False, "take the codebook from the EMA statistics (embed_avg / cluster_size)")


@LAYOUTS.register
class VQGANEMALayout(Layout):
    name = "vqgan-ema"
    written_by = "a VQGAN trained with an EMA codebook (example)"
    dropped = (*DROPPED, *EMA_KEYS)  # the model has no place for them: read here, then dropped
    Options = EMAOptions

    def __init__(self, statistics: dict | None = None) -> None:
        self.statistics = statistics or {}

    @classmethod
    def recognise(cls, state):
        return cls({k: state[k] for k in EMA_KEYS}) if all(k in state for k in EMA_KEYS) else None

    def convert(self, state, sample_size, options: EMAOptions):
        if options.codebook_from_ema:
            size, total = self.statistics["quantize.cluster_size"], self.statistics["quantize.embed_avg"]
            state["quantizer.embedding.weight"] = total / size[:, None]
        codebook = "the EMA statistics (embed_avg / cluster_size)" if options.codebook_from_ema else "the saved table"
        return backbone_config(state, sample_size), {"codebook": codebook}

    def choose_l2_norm(self, saved_args, code_dim, flag):
        return (False, "EMA codebooks are not l2-normalised") if flag is None else (flag, "given by the caller")
