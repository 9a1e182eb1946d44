"""What every codebook bridge declares: a module mapping the learnable `(K, d)` table to the codebook used, and the
`BRIDGES` registry.

A bridge is a `CodebookBridge` (an `nn.Module`) built as `cls(codebook_size, code_dim, **config)` whose
`forward((K, d) table)` returns the `(K, d)` codebook (one that `maps_width` takes a `(K, D)` table; one that gives the images of a training batch codebooks at
different labels says so in `image_labels` and takes `forward(table, label=...)`). Its config keys are the keyword
parameters of its `__init__` after those two, so the class is the one place that knows them; what else the quantizer
needs to know is declared here. `bridge_type="none"` is plain VQ (the table is the codebook): a reserved name, not a
class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from ..config_keys import check_config_types, init_keywords
from ..registry import Registry

NO_BRIDGE = "none"


class CodebookBridge(nn.Module):
    """Base of the bridge modules (put it first among the bases, before diffusers' `ModelMixin`)."""

    # The registry name (`bridge_type`) and what the bridge is, in words.
    name: ClassVar[str] = ""
    display_name: ClassVar[str]
    # Train only the bridge and keep the table as initialised or loaded (SimVQ, VQGAN-LC); `freeze_table` overrides.
    freezes_table: ClassVar[bool] = False
    # Maps a table wider (or narrower) than the codes, `(K, D) -> (K, d)`: `__init__` takes the keyword `table_dim`
    # (D; not a bridge_config key: the model config's `table_dim` gives it). Every other bridge maps (K, d) to (K, d).
    maps_width: ClassVar[bool] = False
    # The bridge's output is all zero at initialisation (a zero-initialised output layer, as VQBridge's): such a
    # codebook has no direction, so it cannot be l2-normalised.
    starts_at_zero: ClassVar[bool] = False

    @classmethod
    def config_defaults(cls) -> dict:
        """The bridge's config keys and their defaults, from its `__init__` (after codebook_size, code_dim)."""
        return init_keywords(cls, exclude=("table_dim",))

    @classmethod
    def resolve_config(cls, config: Mapping | None) -> dict:
        """`config` completed with the defaults; a ValueError names keys this bridge does not have."""
        defaults = cls.config_defaults()
        unknown = sorted(set(config or {}) - set(defaults))
        if unknown:
            raise ValueError(f"bridge_config keys {unknown} do not exist for the {cls.display_name}; its keys are "
                             f"{sorted(defaults) or 'none'}.")
        check_config_types(cls.__init__, config or {}, f"bridge_config of the {cls.display_name}")
        return {**defaults, **(config or {})}

    def image_labels(self, batch_size: int, device: torch.device) -> torch.LongTensor | None:
        """`(B,)` label of each image's codebook for this training batch, or None: one codebook for the batch (every
        bridge but a conditional DiT bridge trained with label dropout). The quantizer then computes the codebook
        once per distinct label, `forward(table, label=...)`."""
        return None

    def init_table(self, weight: torch.Tensor) -> None:
        """Initialise the `(K, d)` table this bridge reads: uniform(-1/K, 1/K), as LlamaGen and FVQ release."""
        nn.init.uniform_(weight, -1.0 / weight.shape[0], 1.0 / weight.shape[0])


BRIDGES: Registry[type[CodebookBridge]] = Registry("bridge_type", CodebookBridge,
                                                  reserved={NO_BRIDGE: "plain VQ (the table is the codebook)"})
