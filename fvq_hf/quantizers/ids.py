"""Token ids: the check every consumer of ids (quantizers, the prior, metrics) applies to them."""

from __future__ import annotations

import torch


class TokenIdTypeError(TypeError, ValueError):
    """Token ids that are not integers (a TypeError, and a ValueError as `lookup` has always raised)."""


def check_token_ids(ids: torch.Tensor, size: int, hint: str = "") -> None:
    """Integer ids in `[0, size)`, or an error that names the range and what was found (then `hint`)."""
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TokenIdTypeError(f"Expected integer token ids, got dtype {ids.dtype}.")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
        raise ValueError(f"Token ids must lie in [0, {size}); got ids from {int(ids.min())} to {int(ids.max())}.{hint}")
