"""What every original checkpoint layout declares: how it recognises its keys, renames them to `FVQModel`'s, infers
the config and decides the l2-norm rule. Each layout is one object (a module each); `layouts/__init__.py` holds
the ordered table that detection walks.

`encoder.*`, `decoder.*`, `quant_conv.*` and `post_quant_conv.*` keep their names in every layout of the
LlamaGen / FVQ code; `quantize.*` is renamed (each layout adds its own patterns to the shared ones);
`quantize.codebook_used` (a training-time ring buffer of recent ids) is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

DROPPED = ("quantize.codebook_used",)
# Every QBridge size in the authors' qbridge.py / qbridge_ViT.py has 4 heads; heads cannot be read off shapes.
RELEASE_NUM_HEADS = 4
SHARED_RENAMES = ((r"^quantize\.embedding\.", "quantizer.embedding."),)
# Where the weights of each family come from (for model cards).
ORIGINS = ("fvq", "llamagen", "var")


class Layout:
    """One layout of the original code. Subclasses set `name`, `written_by`, `origin` and `renames`, and say how
    they recognise a state dict (`recognise`)."""

    name: str = ""
    written_by: str = ""
    origin: str = ""
    renames: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = DROPPED

    def __repr__(self) -> str:
        return f"<layout {self.name}>"

    def recognise(self, state: Mapping[str, torch.Tensor]) -> Layout | None:
        """This layout (or a composed one) if the original state dict is written in it, else None."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """The layout names this object stands for (a composed layout has several)."""
        return [self.name]

    def named(self, name: str) -> Layout | None:
        return self if name == self.name else None

    def num_scales(self, state: Mapping[str, torch.Tensor]) -> int | None:
        """How many scales the file says it was trained with (VAR's hit statistics), if it says so."""
        return None

    def rename(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Original keys -> fvq_hf keys; returns the renamed dict and the keys dropped on purpose."""
        renamed, dropped = {}, []
        patterns = (*SHARED_RENAMES, *self.renames)
        for key, value in state.items():
            if key in self.dropped:
                dropped.append(key)
                continue
            for pattern, replacement in patterns:
                new = re.sub(pattern, replacement, key)
                if new != key:
                    key = new
                    break
            renamed[key] = value
        return renamed, dropped

    def prepare(self, state: dict[str, torch.Tensor], num_heads: int, dit_label: int | None,
                keep_bridge: bool = False) -> tuple[int | None, str | None]:
        """Change the renamed `state` in place where the layout needs it (a DiT bridge is folded, unless
        `keep_bridge`); returns the DiT bridge's label (folded at, or kept at) and why, or `(None, None)`."""
        if dit_label is not None:
            raise ValueError(f"dit_label is for DiT-bridge checkpoints; this one is {self.name!r}.")
        if keep_bridge:
            raise ValueError(f"keep_bridge is for checkpoints with a codebook bridge; this one ({self.name!r}) has "
                             "a plain codebook.")
        return None, None

    def choose_l2_norm(self, args: Mapping | None, code_dim: int, flag: bool | None) -> tuple[bool, str]:
        """Whether the original code l2-normalised latents and codes before its search, and why we think so."""
        raise NotImplementedError

    def infer_config(self, state: Mapping[str, torch.Tensor], sample_size: int, num_heads: int,
                     num_scales: int | None) -> dict:
        """An FVQModel config read off the (renamed) tensor shapes."""
        return backbone_config(state, sample_size)

    def check_config(self, config: Mapping, num_scales: int | None, given: bool, source: str) -> None:
        """Refuse a config that cannot be this file's (VAR: its number of scales)."""


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
        raise ValueError(f"Not an FVQ / LlamaGen / VAR tokenizer checkpoint: {error} is missing.") from error
    return dict(sample_size=sample_size, block_out_channels=widths, layers_per_block=layers,
                latent_channels=latent_channels, num_vq_embeddings=codebook_size, vq_embed_dim=code_dim,
                norm_num_groups=32, bridge_type="none", quant_conv_kernel_size=state["quant_conv.weight"].shape[-1])


def transformer_bridge_shape(state: Mapping[str, torch.Tensor], prefix: str = "quantizer.bridge.") -> dict:
    """Patch size, width, depth and MLP ratio of a ViT- or DiT-style bridge, from its tensor shapes."""
    hidden, _, patch, _ = state[f"{prefix}patch_embed.weight"].shape
    depth = len({k[len(prefix):].split(".")[1] for k in state if k.startswith(f"{prefix}blocks.")})
    mlp_ratio = state[f"{prefix}blocks.0.mlp.fc1.weight"].shape[0] / hidden
    return dict(patch_size=patch, hidden_size=hidden, depth=depth, mlp_ratio=mlp_ratio)


def has_keys(state: Mapping, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in state)
