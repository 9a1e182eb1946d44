"""Gradient checkpointing as diffusers switches it: `ModelMixin.enable_gradient_checkpointing()` finds every module
with a `gradient_checkpointing` attribute, sets it and gives it `_gradient_checkpointing_func`."""

from __future__ import annotations

import torch
from torch import nn


class CheckpointedBlocks:
    """Mixin for an `nn.Module` whose blocks may be recomputed in the backward pass instead of kept in memory."""

    gradient_checkpointing = False

    def run_block(self, block: nn.Module, *args):
        """`block(*args)`, checkpointed when switched on and gradients are being recorded."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return self._gradient_checkpointing_func(block, *args)
        return block(*args)
