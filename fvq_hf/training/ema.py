"""The exponential moving average of a tokenizer's weights during training (`fvq-train --ema-decay`).

diffusers' `EMAModel` keeps the average: updated after every optimizer step on every process (DDP leaves the same
weights on all of them, so the averages are the same too, without communication), registered with the
accelerator so that each checkpoint holds it and `--resume` continues it exactly. Two schedules of its decay:
- warmup (the default, diffusers'): `min(decay, (1 + t) / (10 + t))` at step t, the first step copying the weights,
  so that short runs are not dominated by the initial weights;
- constant (`--no-ema-warmup`): `decay` from the first step, on an average that starts as the initial weights: the
  FVQ authors' `utils/ema.py` (`update_ema(ema, model, decay=0.9999)` after every step, LlamaGen's). After 1,000
  steps at 0.9999 their average still holds 90% of the initial weights; the two schedules agree only after ~100k.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers.training_utils import EMAModel


def make_ema(model: torch.nn.Module, decay: float | None, warmup: bool = True) -> EMAModel | None:
    """An average of `model`'s parameters (its buffers are taken as they are), or None without `decay`; `warmup`
    False keeps `decay` constant from the first step (see the module docstring)."""
    if not decay:
        return None
    if warmup:
        return EMAModel(model.parameters(), decay=decay)
    # min_decay pins every step's decay to `decay`; update_after_step=-1 makes the first step one of them too
    # (diffusers' first step would copy the weights: a decay of 0).
    return EMAModel(model.parameters(), decay=decay, min_decay=decay, update_after_step=-1)


@contextmanager
def averaged_weights(ema: EMAModel | None, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` with the averaged weights in place of its own for the duration of the block (as is without `ema`)."""
    if ema is None:
        yield model
        return
    parameters = list(model.parameters())
    # In-place copies into the parameters themselves, not EMAModel.copy_to's `.data`: they bump each parameter's
    # version, which invalidates the codebook a quantizer caches outside training.
    with torch.no_grad():
        own = [p.detach().clone() for p in parameters]
        for parameter, average in zip(parameters, ema.shadow_params):
            parameter.copy_(average)
    try:
        yield model
    finally:
        with torch.no_grad():
            for parameter, saved in zip(parameters, own):
                parameter.copy_(saved)
