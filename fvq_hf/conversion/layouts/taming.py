"""taming-transformers' Encoder / Decoder names (`down.{i}.block.{j}`, `mid.block_1`, `up.{i}.attn.{j}`, ...), which
VAR's backbone and VQGAN-LC's (their vendored `encoder_decoder.py`) keep, and this package's (LlamaGen's) names for the
same network: `rename_taming_backbone` maps them, `taming_key` maps one key back (for error messages that name the
file's own keys).

taming numbers the decoder's `up.{i}` from the highest resolution (it builds them lowest first and prepends each);
this package numbers its levels in the order they run, lowest resolution first: `up.{L-1-i}` is `conv_blocks.{i}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

MID = ("block_1", "attn_1", "block_2")


def decoder_levels(keys) -> int:
    """The decoder's number of levels, from its taming `decoder.up.{i}.` keys."""
    return len({k.split(".")[2] for k in keys if k.startswith("decoder.up.")})


def rename_taming_backbone(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """taming's Encoder / Decoder keys -> this package's names; other keys pass unchanged.

    VAR's attention computes q, k, v with one `qkv` conv (channels in that order): it is split here into three.
    """
    levels = decoder_levels(state)
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^(encoder|decoder)\.mid\.(block_1|attn_1|block_2)\.",
                     lambda m: f"{m.group(1)}.mid.{MID.index(m.group(2))}.", key)
        key = re.sub(r"^encoder\.down\.(\d+)\.(block\.)?",
                     lambda m: f"encoder.conv_blocks.{m.group(1)}.{'res.' if m.group(2) else ''}", key)
        key = re.sub(r"^decoder\.up\.(\d+)\.(block\.)?",
                     lambda m: f"decoder.conv_blocks.{levels - 1 - int(m.group(1))}.{'res.' if m.group(2) else ''}", key)
        if re.match(r"^(encoder|decoder)\..*\.qkv\.(weight|bias)$", key):
            stem, kind = key.rsplit(".qkv.", 1)
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                renamed[f"{stem}.{name}.{kind}"] = part
        else:
            renamed[key] = value
    return renamed


def taming_key(key: str, levels: int) -> str:
    """This package's name of a backbone key -> taming's (`levels`: the decoder's); other keys pass unchanged."""
    key = re.sub(r"^(encoder|decoder)\.mid\.(\d)\.", lambda m: f"{m.group(1)}.mid.{MID[int(m.group(2))]}.", key)
    key = re.sub(r"^encoder\.conv_blocks\.(\d+)\.(res\.)?",
                 lambda m: f"encoder.down.{m.group(1)}.{'block.' if m.group(2) else ''}", key)
    return re.sub(r"^decoder\.conv_blocks\.(\d+)\.(res\.)?",
                  lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.{'block.' if m.group(2) else ''}", key)
