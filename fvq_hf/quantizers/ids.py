"""Token ids: what a quantizer type's ids are (`IdsSpec`, computed once from its config) and the check every
consumer of ids (quantizers, the prior, metrics) applies to them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class IdsSpec:
    """What the ids of a quantizer config are: one value, computed once by the type (`Quantizer.ids_spec`) and held
    by each instance (`quantizer.ids`), which every description of the ids reads (errors, the model card, the
    usage metric, the Space).

    It holds for every image size the config takes; `image_shape(side)` and `describe(side, size)` give one
    image's ids at a `side x side` latent grid.

    Args:
        dims: the dimensions of a batch of ids, by name or size: `("B", "h", "w")`, `("B", "h", "w", "4")`,
            `("B", "680")`. "h" and "w" are the latent grid's.
        order: how the ids are ordered, in words, where the shape does not say it (`""`, or e.g.
            `" (scales [1, 2], coarsest first)"`), appended to the shape in errors.
        level_name: what one level of the ids is ("depth", "scale"); None for a type with one level.
        level_labels: one label per level, in level order (`level_maps` gives the maps under them): `("",)` for one
            level.
        one_code_per_position: whether each latent position gets exactly one code (what the prior and code files
            take).
        tokens_described: how many codes an image gets, in words (for errors that refuse a type).
        fixed_latent_side: the one latent grid side the config takes (a multi-scale quantizer's last scale); None
            when any side works.
        per_image: one image's ids in words for the model card, with `{h}` and `{w}` for the grid: `"{h} x {w}"`.
        note: words after "per N px image" on the card (`""`, or e.g. ": multi-scale (VAR), scales [...]").
    """

    dims: tuple[str, ...] = ("B", "h", "w")
    order: str = ""
    level_name: str | None = None
    level_labels: tuple[str, ...] = ("",)
    one_code_per_position: bool = True
    tokens_described: str = "one code per position"
    fixed_latent_side: int | None = None
    per_image: str = "{h} x {w}"
    note: str = ""

    @property
    def shape(self) -> str:
        """The shape of a batch of ids, in words: `(B, h, w)`."""
        return f"({', '.join(self.dims)})"

    @property
    def ndim(self) -> int:
        """Dimensions of a batch of ids (one image's have one fewer)."""
        return len(self.dims)

    @property
    def num_levels(self) -> int:
        """Levels of the ids: residual depths, scales; 1 for plain VQ."""
        return len(self.level_labels)

    def image_shape(self, side: int) -> tuple[int, ...]:
        """The shape of one image's ids at a `side x side` latent grid: `(16, 16)`, `(16, 16, 4)`, `(680,)`."""
        return tuple(side if dim in ("h", "w") else int(dim) for dim in self.dims[1:])

    def batch_shape(self, batch: int, height: int, width: int) -> tuple[int, ...]:
        """The shape of a batch of `batch` images' ids at an `height x width` latent grid: `(B, h, w)`, `(B, h, w, 4)`,
        `(B, 680)`."""
        sizes = {"B": batch, "h": height, "w": width}
        return tuple(sizes[dim] if dim in sizes else int(dim) for dim in self.dims)

    def tokens_per_image(self, side: int) -> int:
        """How many ids one image has at a `side x side` latent grid."""
        return math.prod(self.image_shape(side))

    def describe(self, side: int, size: int) -> tuple[str, str]:
        """`(shape, words)` of the ids of one `size` px image at a `side x side` latent grid, for model cards:
        `("16, 16", "16 x 16 per 256 px image")` for plain VQ."""
        shape = ", ".join(str(n) for n in self.image_shape(side))
        return shape, f"{self.per_image.format(h=side, w=side)} per {size} px image{self.note}"


class TokenIdTypeError(TypeError, ValueError):
    """Token ids that are not integers (a TypeError, and a ValueError as `lookup` has always raised)."""


def check_token_ids(ids: torch.Tensor, size: int, hint: str = "") -> None:
    """Integer ids in `[0, size)`, or an error that names the range and what was found (then `hint`)."""
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TokenIdTypeError(f"Expected integer token ids, got dtype {ids.dtype}.")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
        raise ValueError(f"Token ids must lie in [0, {size}); got ids from {int(ids.min())} to {int(ids.max())}.{hint}")
