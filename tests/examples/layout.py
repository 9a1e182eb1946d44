"""An example original layout: a LlamaGen-style VQGAN whose quantizer kept EMA statistics (`quantize.cluster_size`,
`quantize.embed_avg`, as taming-style EMA quantizers do). One module; registered as "vqgan-ema"."""

from __future__ import annotations

from fvq_hf.conversion.layouts import Layout
from fvq_hf.conversion.layouts.base import DROPPED

EMA_KEYS = ("quantize.cluster_size", "quantize.embed_avg")


class VQGANEMALayout(Layout):
    name = "vqgan-ema"
    written_by = "a VQGAN trained with an EMA codebook (example)"
    dropped = (*DROPPED, *EMA_KEYS)

    def recognise(self, state):
        return self if all(k in state for k in EMA_KEYS) else None

    def choose_l2_norm(self, args, code_dim, flag):
        return (False, "EMA codebooks are not l2-normalised") if flag is None else (flag, "given by the caller")
