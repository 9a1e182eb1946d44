"""`vqgan`: a plain VQGAN of the LlamaGen code (`vq_model.py`: VQ-16, VQ-8) and the FVQ authors' fold (their
released `fullvq2vqgan_*.pt`), kept as `bridge_type="none"`. It recognises any file without bridge keys, so detection
asks it last (`layouts.FALLBACK`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from .base import LAYOUTS, Layout, has_keys

logger = logging.getLogger(__name__)


@LAYOUTS.register
class VQGANLayout(Layout):
    name = "vqgan"
    written_by = "LlamaGen `vq_model.py` (VQ-16, VQ-8) and FVQ's own fold"

    @classmethod
    def recognise(cls, state: Mapping) -> Layout | None:
        return None if has_keys(state, "quantize.qbridge.") or cls.table_key not in state else cls()

    def choose_l2_norm(self, saved_args: Mapping | None, code_dim: int, flag: bool | None) -> tuple[bool, str]:
        """Shapes cannot tell (a trained LlamaGen table is not unit norm: it is normalised when used). Order: the
        caller's `flag`, the file's own `args`, the known release rules; otherwise a ValueError asks for the flag."""
        from_args = saved_args.get("codebook_l2_norm") if saved_args else None
        if flag is not None:
            if from_args is not None and bool(from_args) != flag:
                logger.warning("codebook_l2_norm=%s overrides the checkpoint's own args (codebook_l2_norm=%s).",
                               flag, from_args)
            return flag, "given by the caller"
        if from_args is not None:
            return bool(from_args), "the checkpoint's own args"
        if code_dim == 8:
            return True, "release rule: LlamaGen's d = 8 tokenizers (vq_ds16_c2i, vq_ds8_c2i, vq_ds16_t2i) use l2-norm"
        if code_dim == 256:
            return False, ("release rule: the FVQ authors' VQGAN-format files (d = 256) use no l2-norm; LlamaGen "
                           "released no d = 256 tokenizer")
        raise ValueError(f"Cannot tell whether this d = {code_dim} tokenizer l2-normalised its codes: the file has no "
                         f"args and no release uses d = {code_dim}. Pass codebook_l2_norm=True (LlamaGen's training "
                         "code always does) or False (the FVQ code, its fold) (--codebook-l2-norm / "
                         "--no-codebook-l2-norm on the command line).")
