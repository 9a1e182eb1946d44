"""VQBridge, the paper's "compress - process - recover" projector (Chang et al., arXiv 2509.10140, Sec. 3).

The whole `(K, d)` table is viewed as a d-channel image of h x w codes, patch-embedded, run through a few
pre-norm ViT blocks and recovered by a zero-initialised linear layer. Because attention mixes all patches,
every code of the table receives gradient at every step, not only the codes that were hit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from .base import BRIDGES, CodebookBridge


def codebook_grid(codebook_size: int, patch_size: int) -> tuple[int, int]:
    """The (h, w) layout of the code image: h * w = K, both divisible by `patch_size`, as square as possible.

    A perfect square K gives sqrt(K) x sqrt(K) as in the paper; 2^(2n+1) codes give a 2^n x 2^(n+1) grid.
    """
    if codebook_size < 1 or patch_size < 1:
        raise ValueError(f"codebook_size and patch_size must be positive, got {codebook_size}, {patch_size}.")
    for h in range(math.isqrt(codebook_size), 0, -1):
        if codebook_size % h == 0 and h % patch_size == 0 and (codebook_size // h) % patch_size == 0:
            return h, codebook_size // h
    step = patch_size * patch_size
    lower = max(step, codebook_size // step * step)
    raise ValueError(
        f"The bridge cannot lay out codebook_size={codebook_size} as a grid of {patch_size}x{patch_size} patches: "
        f"the codebook size must be a multiple of patch_size**2 = {step} (e.g. {lower} or "
        f"{lower + step}; squares such as 16384 = 128^2 give the paper's square grid), or use a smaller "
        "patch_size (bridge_config)."
    )


def table_to_patches(table: torch.Tensor, grid: tuple[int, int], patch_embed: nn.Conv2d) -> torch.Tensor:
    """Compress: the `(K, d)` table as a d-channel `h x w` image (code k at row k // w, column k % w) ->
    `(1, T, D)` patch tokens, T = (h / p)(w / p)."""
    x = rearrange(table, "(h w) d -> 1 d h w", h=grid[0], w=grid[1])
    return rearrange(patch_embed(x), "1 c gh gw -> 1 (gh gw) c")


def patches_to_table(x: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Recover: `(1, T, p * p * d)` tokens -> the `(K, d)` codebook, in the table's order (unpatchify)."""
    (h, w), p = grid, patch_size
    return rearrange(x, "1 (gh gw) (p q d) -> (gh p gw q) d", gh=h // p, gw=w // p, p=p, q=p)


def init_transformer_bridge(bridge: nn.Module, patch_embed: nn.Conv2d, zero: tuple[nn.Linear, ...]) -> None:
    """ViT / DiT initialisation, as released: xavier Linears with zero biases, the patch embedding initialised as
    the Linear it is, and the layers in `zero` (the output layer, adaLN modulations) at zero."""
    for module in bridge.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    nn.init.xavier_uniform_(patch_embed.weight.view(patch_embed.weight.shape[0], -1))
    nn.init.zeros_(patch_embed.bias)
    for layer in zero:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (with bias), as in ViT."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}.")
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=True)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        q, k, v = rearrange(self.qkv(x), "b t (three h e) -> three b h t e", three=3, h=self.num_heads)
        return self.proj(rearrange(F.scaled_dot_product_attention(q, k, v), "b h t e -> b t (h e)"))


class Mlp(nn.Module):
    """Linear -> tanh-GELU -> Linear."""

    def __init__(self, hidden_size: int, mlp_hidden_size: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_hidden_size)
        self.fc2 = nn.Linear(mlp_hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class ViTBlock(nn.Module):
    """Pre-norm transformer block; LayerNorms have no affine parameters, as released."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@BRIDGES.register
class VQBridge(CodebookBridge, ModelMixin, ConfigMixin):
    """The paper's VQBridge: maps the whole (K, d) table to the (K, d) codebook in one pass.

    Compress: a p x p patch embedding of the (d, h, w) code image gives (h/p)(w/p) tokens of width D.
    Process: `depth` pre-norm ViT blocks, no positional embedding. Recover: LayerNorm, a zero-initialised
    Linear(D, p*p*d) and unpatchify. Code k sits at row k // w, column k % w of the grid.
    """

    name = "vqbridge"
    display_name = "VQBridge (FVQ)"
    starts_at_zero = True

    @register_to_config
    def __init__(
        self,
        codebook_size: int = 16384,
        code_dim: int = 256,
        patch_size: int = 4,
        hidden_size: int = 256,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__()
        if min(code_dim, hidden_size, depth, num_heads) < 1 or mlp_ratio <= 0:
            raise ValueError(
                "VQBridge needs positive code_dim, hidden_size, depth, num_heads and mlp_ratio, got "
                f"{code_dim}, {hidden_size}, {depth}, {num_heads}, {mlp_ratio}."
            )
        self.grid = codebook_grid(codebook_size, patch_size)
        self.patch_embed = nn.Conv2d(code_dim, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(ViTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.proj_out = nn.Linear(hidden_size, patch_size * patch_size * code_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_transformer_bridge(self, self.patch_embed, zero=(self.proj_out,))  # the recover layer at zero

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        """(K, d) table -> (K, d) codebook."""
        x = table_to_patches(table, self.grid, self.patch_embed)
        for block in self.blocks:
            x = block(x)
        return patches_to_table(self.proj_out(self.norm_out(x)), self.grid, self.config.patch_size)
