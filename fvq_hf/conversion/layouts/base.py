"""What every original checkpoint layout declares: how it recognises its keys, renames them to `FVQModel`'s, converts
them (the config read off their shapes, with the options of its own) and decides the l2-norm rule. Each layout is
one class in a module of its own, registered in `LAYOUTS` (`layouts/__init__.py` says the detection order).

A layout's options are a frozen dataclass, its `Options`: each field is one option (its type, default and help), so
that the loader can give each layout the caller's options it takes, and `fvq-convert` can make a flag of each.

`encoder.*`, `decoder.*`, `quant_conv.*` and `post_quant_conv.*` keep their names in every layout of the
LlamaGen / FVQ code; `quantize.*` is renamed (each layout adds its own patterns to the shared ones);
`quantize.codebook_used` (a training-time ring buffer of recent ids) is dropped. VAR and VQGAN-LC keep taming's
backbone names, which `taming` maps.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ...registry import Registry

DROPPED = ("quantize.codebook_used",)
# Every QBridge size in the authors' qbridge.py / qbridge_ViT.py has 4 heads; heads cannot be read off shapes.
RELEASE_NUM_HEADS = 4
TABLE = "quantize.embedding.weight"
SHARED_RENAMES = ((r"^quantize\.embedding\.", "quantizer.embedding."),)


def option(default: Any, help: str) -> Any:
    """A field of a layout's `Options`: its default and its help (the `fvq-convert` flag's)."""
    return dataclasses.field(default=default, metadata={"help": help})


def keep_bridge_option() -> Any:
    """The `keep_bridge` option of every layout whose bridge is folded by default (one declaration, one help)."""
    return option(False, "keep the bridge trainable (a DiT bridge as bridge_type dit, VQGAN-LC's projector as "
                         "lc-linear / lc-mlp over its frozen table), to fine-tune with fvq-train --init-weights, "
                         "instead of folding it into a plain codebook")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a layout that has none."""


class Layout:
    """One layout of the original code. Subclasses set `name`, `written_by`, `origin` (whose code writes it, for
    model cards: "fvq", "llamagen"; "" when the layout does not tell) and `renames`, say how they recognise a state
    dict (`recognise`), and declare their `Options` where they take any. A bridge layout that VAR files may hold
    (layout `var+<name>`) says so with `in_var_files`."""

    name: ClassVar[str] = ""
    written_by: ClassVar[str] = ""
    origin: ClassVar[str] = ""
    # The key of the file's codebook table: detection refuses a file with none of the layouts' table keys.
    table_key: ClassVar[str] = TABLE
    renames: tuple[tuple[str, str], ...] = ()
    # Keys left out on purpose: exact names, or every key under a prefix that ends with "." ("discriminator.").
    dropped: ClassVar[tuple[str, ...]] = DROPPED
    in_var_files: ClassVar[bool] = False
    Options: type = NoOptions

    def __repr__(self) -> str:
        return f"<layout {self.name}>"

    @classmethod
    def recognise(cls, state: Mapping[str, torch.Tensor]) -> Layout | None:
        """A layout object (this one, or a composed one) if the original state dict is written in it, else None."""
        raise NotImplementedError

    @classmethod
    def names(cls) -> list[str]:
        """The layout names this class stands for (a composed layout has several)."""
        return [cls.name]

    @classmethod
    def named(cls, name: str) -> Layout | None:
        return cls() if name == cls.name else None

    def rename(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Original keys -> fvq_hf keys; returns the renamed dict and the keys dropped on purpose."""
        renamed, dropped = {}, []
        patterns = (*SHARED_RENAMES, *self.renames)
        prefixes = tuple(d for d in self.dropped if d.endswith("."))
        for key, value in state.items():
            if key in self.dropped or key.startswith(prefixes):
                dropped.append(key)
                continue
            for pattern, replacement in patterns:
                new = re.sub(pattern, replacement, key)
                if new != key:
                    key = new
                    break
            renamed[key] = value
        return renamed, dropped

    def convert(self, state: dict[str, torch.Tensor], sample_size: int, options: Any) -> tuple[dict, dict]:
        """The FVQModel config read off the renamed `state`, and what was decided with `options` (an instance of
        `Options`), which `OriginalCheckpointInfo.decisions` records as it is. `state` is changed in place where
        the layout needs it (a DiT bridge is folded)."""
        return backbone_config(state, sample_size), {}

    def read_args(self, config: dict, saved_args: Mapping | None) -> tuple[dict, dict]:
        """The inferred `config` with what the file's own training `args` say and shapes cannot (VQGAN-LC: its loss
        weights, whether its table was trained), and what was decided with them (added to the decisions); a
        ValueError where the args contradict the shapes. By default the args add nothing."""
        return config, {}

    def choose_l2_norm(self, saved_args: Mapping | None, code_dim: int, flag: bool | None) -> tuple[bool, str]:
        """Whether the original code l2-normalised latents and codes before its search, and why we think so."""
        raise NotImplementedError

    def original_key(self, key: str) -> str:
        """The file's own name of a (renamed) key, for error messages; the same name where the layout keeps it."""
        return key

    def check_config(self, config: Mapping, given: Mapping | None, source: str) -> None:
        """Refuse a config that cannot be this file's (VAR: its number of scales); `given` is the caller's config."""


LAYOUTS = Registry("original layout", Layout)


def option_fields(options_type: type) -> dict[str, dataclasses.Field]:
    """The options of an `Options` dataclass, by name."""
    return {field.name: field for field in dataclasses.fields(options_type)}


def backbone_config(state: Mapping[str, torch.Tensor], sample_size: int) -> dict:
    """The encoder / decoder part of an FVQModel config, read off the (renamed) tensor shapes; plain VQ, no bridge."""
    try:
        codebook_size, code_dim = state["quantizer.embedding.weight"].shape
        widths, level = [], 0
        while f"encoder.conv_blocks.{level}.res.0.conv1.weight" in state:
            widths.append(state[f"encoder.conv_blocks.{level}.res.0.conv1.weight"].shape[0])
            level += 1
        layers = len({k.split(".")[4] for k in state if k.startswith("encoder.conv_blocks.0.res.")})
        latent_channels = state["quant_conv.weight"].shape[1]
    except (KeyError, IndexError) as error:
        raise ValueError(f"Not an FVQ / LlamaGen / VAR / VQGAN-LC tokenizer checkpoint: {error} is missing.") from error
    # Attention where the file has it: the lowest level (the default, None) in LlamaGen's and taming's f16 networks,
    # none at taming's f8 (VQGAN-LC's f8 model).
    attention = [i for i in range(level) if has_keys(state, f"encoder.conv_blocks.{i}.attn.")]
    return dict(sample_size=sample_size, block_out_channels=widths, layers_per_block=layers,
                latent_channels=latent_channels, num_vq_embeddings=codebook_size, vq_embed_dim=code_dim,
                norm_num_groups=32, bridge_type="none", quant_conv_kernel_size=state["quant_conv.weight"].shape[-1],
                attention_levels=None if attention == [level - 1] else attention)


def transformer_bridge_shape(state: Mapping[str, torch.Tensor], prefix: str = "quantizer.bridge.") -> dict:
    """Patch size, width, depth and MLP ratio of a ViT- or DiT-style bridge, from its tensor shapes."""
    hidden, _, patch, _ = state[f"{prefix}patch_embed.weight"].shape
    depth = len({k[len(prefix):].split(".")[1] for k in state if k.startswith(f"{prefix}blocks.")})
    mlp_ratio = state[f"{prefix}blocks.0.mlp.fc1.weight"].shape[0] / hidden
    return dict(patch_size=patch, hidden_size=hidden, depth=depth, mlp_ratio=mlp_ratio)


def has_keys(state: Mapping, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in state)
