"""The FVQ authors' first VQBridge, built on DiT blocks (their `qbridge.py`): the bridge their shipped training
scripts train (`scripts/recon/FVQ-*.sh` -> `vq_train_qbridge_lr.py`, also their VAR and residual variants).

The paper's and the release's streamlined bridge is `VQBridge` (`qbridge_ViT.py`). Differences to it: a fixed
2-D sin-cos position embedding added after the patch embedding, a label embedding `c`, and adaLN-Zero in every
block and in the final layer (`x * (1 + scale(c)) + shift(c)`, gated residuals), all zero-initialised.

The codebook is computed at one label (`label`): 0 for the unconditional bridge of the shipped scripts
(`--is_uncondition`, one label row), the null class for a class-conditional one, as the authors'
`convert_fullvq2vq.py` folds it (`vq_model.eval()`, `get_codebook(torch.full((1,), 1000))`).

`label_rule` says which label the codebook is computed at in training. "fixed" (the default): `label`, always.
"dropout": the authors' class-conditional training (yfChang-cv/FVQ at 577b848c):
- `vq_train_qbridge_lr.py` (`main`) calls the model with `labels = torch.zeros_like(y)`;
- `vq_model_qbridge.py` (`VectorQuantizer.forward`, its conditional branch) repeats the table once per image, runs
  the bridge on that batch with the labels and searches each image's tokens in its own `(K, d)` codebook (distances
  `(B, h*w, K)`); the two losses are means over the batch, the straight-through step is the usual one;
- `qbridge.py` (`DiT.forward` -> `LabelEmbedder.forward(labels, self.training)` -> `token_drop`), in training mode
  only and with `class_dropout_prob=0.1`, sets a label to the null class (1000) where
  `torch.rand(B, device=labels.device) < 0.1`.
So each image is quantized at label 0 (p 0.9) or at the null class (p 0.1); their fold (`convert_fullvq2vq.py`) and
`eval_fid_usage_lpips.py` then take the null class in eval mode (their `eval_fid.py` passes the images' classes). Here, while the bridge is in training mode and autograd
is on, `image_labels` draws the labels as `token_drop` does (`train_label`, or the null class where one `torch.rand`
on the latents' device, from the global generator, is below `label_dropout`), and `TableQuantizer.forward` computes
one codebook per distinct label (two bridge forwards at most) and quantizes each image with its label's. In eval
mode, under `torch.no_grad()` (where theirs would still draw in training mode) and when folding: `label`.

Sizes are theirs by name (`QBRIDGE_PRESETS`, their `QB_type` strings): `bridge_config=qbridge_config("QBridge-L/4")`.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .base import BRIDGES, CodebookBridge
from .vqbridge import ViTBlock, codebook_grid, init_transformer_bridge, patches_to_table, table_to_patches

# The authors' DiT sizes (`qbridge.py`'s `QBridge_models`): every one has 4 heads and an MLP ratio of 2; the hidden
# size is 4 x their head_hidden_size.
QBRIDGE_PRESETS: dict[str, dict] = {
    name: dict(depth=depth, patch_size=patch, hidden_size=4 * head)
    for name, depth, patch, head in (
        ("QBridge-XS/2", 2, 2, 8), ("QBridge-S/2", 2, 2, 16), ("QBridge-S/4", 2, 4, 16), ("QBridge-S/8", 2, 8, 16),
        ("Qbridge-S/4-d4", 4, 4, 16), ("QBridge-B/2", 2, 2, 32), ("QBridge-B/4", 2, 4, 32), ("QBridge-B/8", 2, 8, 32),
        ("QBridge-B/4-d1", 1, 4, 32), ("QBridge-B/4-d4", 4, 4, 32), ("QBridge-L/2", 2, 2, 64),
        ("QBridge-L/4", 2, 4, 64), ("QBridge-L/8", 2, 8, 64), ("QBridge-L/2-d4", 4, 2, 64),
        ("QBridge-L/4-d1", 1, 4, 64), ("QBridge-L/4-d4", 4, 4, 64), ("QBridge-XL/4", 2, 4, 128),
        ("QBridge-XL/4-d4", 4, 4, 128),
    )
}
# `--is_uncondition` (one label row) and the class-conditional table (1000 ImageNet classes and the null class).
UNCONDITIONAL_LABELS, CLASS_CONDITIONAL_LABELS = 1, 1001
# Which label the codebook is computed at in training: "fixed" (`label`, as in eval) or "dropout" (per image,
# `train_label` or the null class with probability `label_dropout`: the authors' conditional training).
LABEL_RULES = ("fixed", "dropout")


def default_label(num_labels: int) -> int:
    """The label the authors' code takes a codebook at: 0 with one label row (`--is_uncondition`), else the null
    class (the last row), as their `convert_fullvq2vq.py` folds it."""
    return 0 if num_labels == 1 else num_labels - 1


def check_label_rule(label_rule: str, num_labels: int, train_label: int, label_dropout: float) -> None:
    """Raise a ValueError naming what is wrong with the training label rule of a table of `num_labels` rows."""
    if label_rule not in LABEL_RULES:
        raise ValueError(f"The DiT bridge's label_rule {label_rule!r} is not one of {LABEL_RULES} (fixed: the "
                         "codebook at `label`; dropout: per image, train_label or the null class, as the authors' "
                         "class-conditional training).")
    if isinstance(train_label, bool) or not isinstance(train_label, int) or not 0 <= train_label < num_labels:
        raise ValueError(f"The DiT bridge's train_label {train_label!r} is outside its label table: it has "
                         f"{num_labels} label row(s), so it must be an integer in [0, {num_labels - 1}].")
    if not 0 <= label_dropout <= 1:
        raise ValueError(f"The DiT bridge's label_dropout is a probability in [0, 1], got {label_dropout!r}.")
    if label_rule == "dropout" and num_labels < 2:
        raise ValueError("label_rule='dropout' drops labels to the null class (the last row of a class-conditional "
                         "label table, num_labels=1001 in the authors' code), but this DiT bridge has one label row "
                         "(unconditional, their --is_uncondition), so there is no null class: use label_rule='fixed' "
                         "or num_labels > 1.")


def qbridge_config(name: str, conditional: bool = False) -> dict:
    """The `bridge_config` of the authors' `QB_type` `name` (e.g. "QBridge-L/4"), unconditional unless asked."""
    if name not in QBRIDGE_PRESETS:
        raise ValueError(f"Unknown QBridge preset {name!r}; the authors' DiT sizes are {sorted(QBRIDGE_PRESETS)}.")
    labels = CLASS_CONDITIONAL_LABELS if conditional else UNCONDITIONAL_LABELS
    return {**QBRIDGE_PRESETS[name], "num_heads": 4, "mlp_ratio": 2.0, "num_labels": labels}


def sincos_position_embedding(dim: int, height: int, width: int) -> torch.Tensor:
    """`(height * width, dim)` fixed 2-D sin-cos embedding (MAE's, as the authors' DiT): the first half encodes
    the column, the second the row; each half is `[sin(p w_k), cos(p w_k)]`, `w_k = 10000^(-k / (dim / 4))`.
    Computed in float64, as their numpy code."""
    if dim % 4:
        raise ValueError(f"The DiT bridge's hidden_size must be a multiple of 4 (its sin-cos embedding), got {dim}.")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")

    def embed(position: torch.Tensor) -> torch.Tensor:
        angles = position.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([embed(cols), embed(rows)], dim=1).float()


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


@BRIDGES.register
class DiTBridge(CodebookBridge, ModelMixin, ConfigMixin):
    """`(K, d)` table -> `(K, d)` codebook, computed as the authors' DiT QBridge computes it at label `label`.

    Compress: a p x p patch embedding of the (d, h, w) code image plus the fixed sin-cos positions. Process:
    `depth` adaLN-Zero DiT blocks conditioned on the label embedding. Recover: a modulated LayerNorm, a
    zero-initialised Linear(D, p*p*d) and unpatchify. Code k sits at row k // w, column k % w. The defaults are
    their default `QB_type`, QBridge-S/4, unconditional.

    `num_labels` rows of label embedding: 1 for `--is_uncondition` runs (the shipped scripts), 1001 for
    class-conditional ones (1000 classes and the null class). `label`: the row the codebook is computed at
    (None: 0 with one row, else the null class, the last row). `label_rule` (see the module docstring): "fixed"
    computes it at `label` in training too; "dropout" (a conditional table only) gives each image of a training
    batch the codebook at `train_label`, or at the null class with probability `label_dropout`.
    """

    name = "dit"
    display_name = "DiT QBridge (FVQ qbridge.py)"
    starts_at_zero = True

    @register_to_config
    def __init__(
        self,
        codebook_size: int = 16384,
        code_dim: int = 256,
        patch_size: int = 4,
        hidden_size: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        num_labels: int = 1,
        label: int | None = None,
        label_rule: str = "fixed",
        train_label: int = 0,
        label_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if min(code_dim, hidden_size, depth, num_heads, num_labels) < 1 or mlp_ratio <= 0:
            raise ValueError("The DiT bridge needs positive code_dim, hidden_size, depth, num_heads, num_labels and "
                             f"mlp_ratio, got {code_dim}, {hidden_size}, {depth}, {num_heads}, {num_labels}, "
                             f"{mlp_ratio}.")
        label = default_label(num_labels) if label is None else label
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_labels:
            raise ValueError(f"The DiT bridge's label {label!r} is outside its label table: it has {num_labels} "
                             f"label row(s), so the label must be an integer in [0, {num_labels - 1}].")
        self.register_to_config(label=label)
        check_label_rule(label_rule, num_labels, train_label, label_dropout)
        self.grid = codebook_grid(codebook_size, patch_size)
        self.patch_size = patch_size
        patches = (self.grid[0] // patch_size, self.grid[1] // patch_size)
        self.patch_embed = nn.Conv2d(code_dim, hidden_size, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(sincos_position_embedding(hidden_size, *patches)[None], requires_grad=False)
        self.label_embed = nn.Embedding(num_labels, hidden_size)
        self.blocks = nn.ModuleList(DiTBridgeBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj_out = nn.Linear(hidden_size, patch_size * patch_size * code_dim)
        self.reset_parameters()

    @classmethod
    def resolve_config(cls, config) -> dict:
        """The config completed with the defaults, `label` included (its rule applied), so that a saved config
        says the label it was trained at."""
        config = super().resolve_config(config)
        if config["label"] is None and isinstance(config["num_labels"], int):
            config["label"] = default_label(config["num_labels"])
        return config

    @property
    def num_labels(self) -> int:
        return self.label_embed.num_embeddings

    def image_labels(self, batch_size: int, device: torch.device) -> torch.LongTensor | None:
        """`(B,)` label of each image's codebook under the "dropout" rule while training (bridge in training mode,
        autograd on): `train_label`, or the null class where `torch.rand(B) < label_dropout`, drawn as their
        `LabelEmbedder.token_drop` draws it. None otherwise: the whole batch at `label`."""
        config = self.config
        if config.label_rule != "dropout" or not (self.training and torch.is_grad_enabled()):
            return None
        dropped = torch.rand(batch_size, device=device) < config.label_dropout
        return torch.where(dropped, self.num_labels - 1, config.train_label)

    def reset_parameters(self) -> None:
        """The authors' `initialize_weights`: as the VQBridge's, plus the label embedding at N(0, 0.02) and every
        adaLN modulation at zero (with the output layer)."""
        zero = (*(block.modulation for block in self.blocks), self.final_modulation, self.proj_out)
        init_transformer_bridge(self, self.patch_embed, zero)
        nn.init.normal_(self.label_embed.weight, std=0.02)

    def forward(self, table: torch.Tensor, label: int | None = None) -> torch.Tensor:
        """(K, d) table -> (K, d) codebook at `label` (default: the configured one)."""
        label = self.config.label if label is None else label
        if not 0 <= label < self.num_labels:
            raise ValueError(f"Label {label} is outside the DiT bridge's label table of {self.num_labels} row(s).")
        x = table_to_patches(table, self.grid, self.patch_embed) + self.pos_embed
        c = self.label_embed.weight[label][None]
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.final_modulation(nn.functional.silu(c)).chunk(2, dim=1)
        return patches_to_table(self.proj_out(modulate(self.norm_out(x), shift, scale)), self.grid, self.patch_size)
