"""The convolutional encoder and decoder of LlamaGen's VQ-8 / VQ-16 tokenizers (taming-transformers style).

Module names follow LlamaGen's state-dict layout (`conv_blocks.{i}.res.{j}`, `mid.{k}`, ...), so its
checkpoints load by name. Each level of `block_out_channels` but the last halves (encoder) or doubles
(decoder) the resolution: 5 levels give downsample 16 (VQ-16), 4 give 8 (VQ-8).

Self-attention follows every residual block of the levels in `attention_levels` (encoder levels: 0 is the full
resolution; the decoder attends at the same resolutions), and always sits in the middle block. The default is the
lowest level, as LlamaGen and taming's f16 config (`attn_resolutions: [16]` at 256 px); taming's f8 config never
reaches its attention resolution, so VQGAN-LC's f8 model has none (`attention_levels=[]`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..layers.checkpointing import CheckpointedBlocks


def check_block_channels(block_out_channels: Sequence[int], norm_num_groups: int) -> None:
    """Raise ValueError unless every level's width is a positive multiple of `norm_num_groups`."""
    if not block_out_channels:
        raise ValueError("block_out_channels must name at least one level, e.g. [128, 128, 256, 256, 512].")
    bad = [c for c in block_out_channels if c < 1 or c % norm_num_groups]
    if norm_num_groups < 1 or bad:
        raise ValueError(
            f"Every entry of block_out_channels must be a positive multiple of norm_num_groups="
            f"{norm_num_groups} (GroupNorm); {bad or block_out_channels} is not."
        )


def resolve_attention_levels(levels: int, attention_levels: Sequence[int] | None) -> frozenset[int]:
    """The levels with self-attention (None: the lowest one); a ValueError for a level the network does not have."""
    if attention_levels is None:
        return frozenset({levels - 1})
    bad = [level for level in attention_levels if not 0 <= level < levels]
    if bad:
        raise ValueError(f"attention_levels {list(attention_levels)} name levels {bad} that do not exist: with "
                         f"{levels} levels (block_out_channels) they are 0 (full resolution) to {levels - 1}; [] "
                         "gives attention in the middle block only.")
    return frozenset(attention_levels)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, with a 1x1 shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(x))


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = (rearrange(f(h), "b c h w -> b 1 (h w) c") for f in (self.q, self.k, self.v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b 1 (h w) c -> b c h w", h=x.shape[2])
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv with asymmetric (right/bottom) padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 followed by a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _middle(channels: int, groups: int, dropout: float) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(channels, channels, groups, dropout), AttnBlock(channels, groups),
                          ResnetBlock(channels, channels, groups, dropout)])


def _level(in_channels: int, out_channels: int, num_blocks: int, attention: bool, groups: int,
           dropout: float) -> nn.Module:
    """One resolution level: `num_blocks` ResnetBlocks, each followed by attention if `attention`."""
    level = nn.Module()
    widths = [in_channels] + [out_channels] * num_blocks
    level.res = nn.ModuleList(ResnetBlock(a, b, groups, dropout) for a, b in zip(widths[:-1], widths[1:]))
    level.attn = nn.ModuleList(AttnBlock(out_channels, groups) for _ in range(num_blocks if attention else 0))
    return level


def _run_level(level: nn.Module, h: torch.Tensor, run) -> torch.Tensor:
    for i, res in enumerate(level.res):
        h = run(res, h)
        if len(level.attn):
            h = run(level.attn[i], h)
    return h


class Encoder(CheckpointedBlocks, nn.Module):
    """`(B, in_channels, H, W)` images -> `(B, latent_channels, H/f, W/f)`, f = 2 ** (levels - 1)."""

    def __init__(self, in_channels: int, latent_channels: int, block_out_channels: Sequence[int],
                 layers_per_block: int, norm_num_groups: int = 32, dropout: float = 0.0,
                 attention_levels: Sequence[int] | None = None) -> None:
        super().__init__()
        check_block_channels(block_out_channels, norm_num_groups)
        levels = len(block_out_channels)
        attention = resolve_attention_levels(levels, attention_levels)
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        width = block_out_channels[0]
        for i, out in enumerate(block_out_channels):
            level = _level(width, out, layers_per_block, i in attention, norm_num_groups, dropout)
            if i != levels - 1:
                level.downsample = Downsample(out)
            self.conv_blocks.append(level)
            width = out
        self.mid = _middle(width, norm_num_groups, dropout)
        self.norm_out = _norm(width, norm_num_groups)
        self.conv_out = nn.Conv2d(width, latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = _run_level(level, h, self.run_block)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        for block in self.mid:
            h = self.run_block(block, h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(CheckpointedBlocks, nn.Module):
    """`(B, latent_channels, h, w)` -> `(B, out_channels, h*f, w*f)`; mirrors `Encoder` with one more block a level."""

    def __init__(self, out_channels: int, latent_channels: int, block_out_channels: Sequence[int],
                 layers_per_block: int, norm_num_groups: int = 32, dropout: float = 0.0,
                 attention_levels: Sequence[int] | None = None) -> None:
        super().__init__()
        check_block_channels(block_out_channels, norm_num_groups)
        levels = len(block_out_channels)
        attention = resolve_attention_levels(levels, attention_levels)
        width = block_out_channels[-1]
        self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.mid = _middle(width, norm_num_groups, dropout)
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(levels)):
            out = block_out_channels[i]
            level = _level(width, out, layers_per_block + 1, i in attention, norm_num_groups, dropout)
            if i != 0:
                level.upsample = Upsample(out)
            self.conv_blocks.append(level)
            width = out
        self.norm_out = _norm(width, norm_num_groups)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = self.run_block(block, h)
        for level in self.conv_blocks:
            h = _run_level(level, h, self.run_block)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
