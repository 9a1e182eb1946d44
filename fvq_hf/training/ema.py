"""The exponential moving average of a tokenizer's weights during training (`fvq-train --ema-decay`).

diffusers' `EMAModel` keeps the average: updated after every optimizer step on every process (DDP leaves the same
weights on all of them, so the averages are the same too, without communication), registered with the
accelerator so that each checkpoint holds it and `--resume` continues it exactly. Its decay at step t is
`min(decay, (1 + t) / (10 + t))`, so short runs are not dominated by the initial weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers.training_utils import EMAModel


def make_ema(model: torch.nn.Module, decay: float | None) -> EMAModel | None:
    """An average of `model`'s parameters (its buffers are taken as they are), or None without `decay`."""
    return EMAModel(model.parameters(), decay=decay) if decay else None


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
