"""The FVQ authors' first VQBridge, built on DiT blocks (their `qbridge.py`), for converting its checkpoints.

The shipped training scripts (`scripts/recon/FVQ-*.sh` -> `vq_train_qbridge_lr.py`) train this variant; the
paper's and the release's streamlined bridge is `VQBridge` (`qbridge_ViT.py`). Differences to `VQBridge`:
a fixed 2-D sin-cos position embedding added after the patch embedding, a label embedding `c`, and adaLN-Zero
in every block and in the final layer (`x * (1 + scale(c)) + shift(c)`, gated residuals).

With a fixed label the bridge is one fixed function of the table, so conversion runs it once and folds the
result into a plain codebook (as the authors' `convert_fullvq2vq.py` does); it is not a training option here.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .vqbridge import ViTBlock, codebook_grid


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: `(B, T, D)` normalised activations, `(B, D)` shift and scale."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBridgeBlock(ViTBlock):
    """A pre-norm ViT block whose norms are modulated and whose residuals are gated by the label (adaLN-Zero)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__(hidden_size, num_heads, mlp_ratio)
        self.modulation = nn.Linear(hidden_size, 6 * hidden_size)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """`(B, T, D)` tokens, `(B, D)` label embedding -> `(B, T, D)`."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(nn.functional.silu(c)).chunk(6, dim=1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiTBridge(nn.Module):
    """`(K, d)` table and a label -> `(K, d)` codebook, computed as the authors' DiT-based bridge computes it.

    `num_labels` rows of label embedding: 1 for `--is_uncondition` runs (the shipped scripts), 1001 for
    class-conditional ones (1000 classes and the null class). Code k sits at row k // w, column k % w.
    """

    def __init__(self, codebook_size: int, code_dim: int, patch_size: int, hidden_size: int, depth: int,
                 num_heads: int, mlp_ratio: float, num_labels: int) -> None:
        super().__init__()
        self.grid = codebook_grid(codebook_size, patch_size)
        self.patch_size = patch_size
        tokens = (self.grid[0] // patch_size) * (self.grid[1] // patch_size)
        self.patch_embed = nn.Conv2d(code_dim, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, hidden_size), requires_grad=False)
        self.label_embed = nn.Embedding(num_labels, hidden_size)
        self.blocks = nn.ModuleList(DiTBridgeBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj_out = nn.Linear(hidden_size, patch_size * patch_size * code_dim)

    @property
    def num_labels(self) -> int:
        return self.label_embed.num_embeddings

    def forward(self, table: torch.Tensor, label: int) -> torch.Tensor:
        """(K, d) table, an int label in `[0, num_labels)` -> (K, d) codebook."""
        if not 0 <= label < self.num_labels:
            raise ValueError(f"label {label} is out of range: this DiT bridge has {self.num_labels} label rows.")
        (h, w), p = self.grid, self.patch_size
        x = rearrange(table, "(h w) d -> 1 d h w", h=h, w=w)
        x = rearrange(self.patch_embed(x), "1 c gh gw -> 1 (gh gw) c") + self.pos_embed
        c = self.label_embed(torch.tensor([label], device=table.device))
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_modulation(nn.functional.silu(c)).chunk(2, dim=1)
        x = self.proj_out(modulate(self.norm_out(x), shift, scale))
        return rearrange(x, "1 (gh gw) (p q d) -> (gh p gw q) d", gh=h // p, gw=w // p, p=p, q=p)
