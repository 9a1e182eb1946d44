"""FVQTransformer: a LlamaGen-style class-conditional decoder-only transformer over FVQ token ids.

The sequence is `[class token, t_0, ..., t_{n-2}]` and position j predicts token `t_j` of the `h x w` token
grid in raster order (LlamaGen's c2i layout). Blocks are pre-norm with RMSNorm, SwiGLU feed-forward and 2-D
rotary position embedding: half of each head's rotary pairs turn with the token's row, half with its
column; the class token is not rotated. Class id `num_classes` is the null class of classifier-free
guidance. A `KVCache` makes sampling cost one token's work per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from ..hub.evaluation_file import load_evaluation
from ..hub.mixin import StrictHubMixin
from ..hub.model_card import generator_card
from ..layers.checkpointing import CheckpointedBlocks
from ..quantizers.ids import check_token_ids

# Config keys a training run takes from its codes (the data), not from the preset (the architecture).
DATA_KEYS = ("vocab_size", "num_classes", "token_grid_size", "class_names")


@dataclass
class FVQTransformerOutput(BaseOutput):
    """
    Args:
        logits (`torch.Tensor` of shape `(B, T, vocab_size)`, float32): next-token logits at each position fed,
            where T counts the class token when it is fed: `(B, L + 1, vocab_size)` for `class_labels` and `(B, L)`
            `input_ids`; `(B, 1, vocab_size)` for a new id with a cache.
    """

    logits: torch.Tensor


class KVCache:
    """Keys and values of every layer for `batch_size` sequences of up to `max_length` positions.

    Filled left to right: `length` positions are cached; a forward pass with the cache appends its positions.
    """

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, max_length: int, head_dim: int,
                 device=None, dtype=None) -> None:
        shape = (num_layers, batch_size, num_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def max_length(self) -> int:
        return self.keys.shape[3]

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store `(B, H, L, D)` keys/values after the cached positions; return all `(B, H, length + L, D)`."""
        end = self.length + keys.shape[2]
        self.keys[layer, :, :, self.length:end] = keys
        self.values[layer, :, :, self.length:end] = values
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


def find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - n % k


def rope_2d_angles(grid: tuple[int, int], head_dim: int, theta: float, positions: torch.Tensor) -> torch.Tensor:
    """Rotation angles `(L, head_dim / 2)` for sequence positions (0 = the class token, p >= 1 = grid cell p - 1)."""
    quarter = head_dim // 4
    freqs = 1.0 / theta ** (torch.arange(quarter, dtype=torch.float32, device=positions.device) / quarter)
    cell = (positions - 1).clamp(min=0)
    rows, cols = (cell // grid[1]).float(), (cell % grid[1]).float()
    angles = torch.cat([rows[:, None] * freqs, cols[:, None] * freqs], dim=1)
    return angles * (positions > 0)[:, None]


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of `(B, H, L, D)` by `(L, D / 2)` angles, in float32."""
    pairs = rearrange(x.float(), "... (d two) -> ... d two", two=2)
    cos, sin = angles.cos(), angles.sin()
    rotated = torch.stack([pairs[..., 0] * cos - pairs[..., 1] * sin, pairs[..., 0] * sin + pairs[..., 1] * cos], -1)
    return rearrange(rotated, "... d two -> ... (d two)").type_as(x)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, angles: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        """`(B, L, dim)` -> `(B, L, dim)`, attending causally to the cached positions and to itself."""
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        q, k = apply_rope(q, angles), apply_rope(k, angles)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        length, total = q.shape[2], k.shape[2]
        mask = None
        if 1 < length < total:  # a block appended to a non-empty cache: causal with an offset
            mask = torch.ones(length, total, dtype=torch.bool, device=x.device).tril(total - length)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=length > 1 and length == total)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.dropout(F.silu(self.gate(x)) * self.up(x)))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, hidden: int, norm_eps: float, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.attention = Attention(dim, num_heads)
        self.ffn_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.feed_forward = SwiGLU(dim, hidden, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, angles: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), angles, cache, layer))
        return x + self.dropout(self.feed_forward(self.ffn_norm(x)))


def next_token_loss(model: nn.Module, tokens: torch.LongTensor, class_labels: torch.LongTensor) -> torch.Tensor:
    """Mean next-token cross-entropy of `(B, h*w)` tokens given `(B,)` labels (teacher forcing).

    `model` may be an FVQTransformer or a wrapper of one (DDP), so that gradients synchronise.
    """
    logits = model(tokens[:, :-1], class_labels).logits
    return F.cross_entropy(rearrange(logits, "b l v -> (b l) v"), tokens.reshape(-1))


class FVQTransformer(CheckpointedBlocks, StrictHubMixin, ModelMixin, ConfigMixin):
    r"""Class-conditional autoregressive prior over the token grid of an FVQ tokenizer (LlamaGen's GPT for c2i).

    Parameters:
        vocab_size: token ids in `[0, vocab_size)`; equal to the tokenizer's codebook size K.
        num_classes: class labels in `[0, num_classes)`; `num_classes` itself is the null (unconditional) class.
        token_grid_size: `(h, w)` tokens per image, e.g. (16, 16) for 256 px with a downsample-16 tokenizer.
        hidden_size, num_layers, num_attention_heads: width, depth and heads (LlamaGen GPT-B: 768, 12, 12;
            GPT-L: 1024, 24, 16). The head size must be a multiple of 4 (2-D rotary pairs).
        intermediate_size: SwiGLU width; default LlamaGen's 8/3 x hidden_size rounded up to a multiple of 256.
        rope_theta: rotary base.
        norm_eps: RMSNorm epsilon.
        dropout: dropout on embeddings, residual branches and inside the feed-forward (LlamaGen trains with 0.1).
        initializer_range: std of the normal initialisation (the output layer starts at zero, as in LlamaGen).
        class_names: optional names of the classes, so that pipelines take names as well as ids.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        vocab_size: int = 16384,
        num_classes: int = 1000,
        token_grid_size: Sequence[int] = (16, 16),
        hidden_size: int = 768,
        num_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int | None = None,
        rope_theta: float = 10000.0,
        norm_eps: float = 1e-5,
        dropout: float = 0.0,
        initializer_range: float = 0.02,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        token_grid_size = tuple(int(s) for s in token_grid_size)
        self.register_to_config(token_grid_size=token_grid_size)  # JSON gives a list back
        if len(token_grid_size) != 2 or min(token_grid_size) < 1:
            raise ValueError(f"token_grid_size must be (h, w) with h, w >= 1, got {token_grid_size}.")
        if min(vocab_size, num_classes, hidden_size, num_layers, num_attention_heads) < 1:
            raise ValueError("vocab_size, num_classes, hidden_size, num_layers and num_attention_heads must be >= 1.")
        if hidden_size % num_attention_heads or (hidden_size // num_attention_heads) % 4:
            raise ValueError(f"hidden_size {hidden_size} / num_attention_heads {num_attention_heads} must give a head "
                             "size that is a multiple of 4 (2-D rotary embedding turns pairs by row and by column).")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}.")
        hidden = intermediate_size or find_multiple(int(2 * 4 * hidden_size / 3), 256)
        self.class_embedding = nn.Embedding(num_classes + 1, hidden_size)
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(hidden_size, num_attention_heads, hidden, norm_eps, dropout)
                                    for _ in range(num_layers))
        self.norm = nn.RMSNorm(hidden_size, eps=norm_eps)
        self.output = nn.Linear(hidden_size, vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.RMSNorm):
                nn.init.ones_(module.weight)
        nn.init.zeros_(self.output.weight)

    @property
    def num_tokens(self) -> int:
        """Tokens per image, h * w."""
        return math.prod(self.config.token_grid_size)

    @property
    def null_class(self) -> int:
        """The class id of the unconditional (guidance) branch."""
        return self.config.num_classes

    def make_cache(self, batch_size: int, device: torch.device | str | None = None) -> KVCache:
        """An empty cache for sampling `batch_size` sequences of one image each, on `device` (default: the
        model's; with CPU offload the weights wait on the CPU, so pipelines pass their execution device)."""
        config, param = self.config, self.output.weight
        return KVCache(config.num_layers, batch_size, config.num_attention_heads, self.num_tokens,
                       config.hidden_size // config.num_attention_heads, device or param.device, param.dtype)

    def check_class_labels(self, class_labels: torch.Tensor, allow_null: bool = True) -> None:
        """ValueError unless every label lies in `[0, num_classes)` (or is the null class, when allowed)."""
        top = self.null_class + 1 if allow_null else self.null_class
        if class_labels.ndim != 1:
            raise ValueError(f"class_labels must be a 1-D tensor (B,), got shape {tuple(class_labels.shape)}.")
        bad = class_labels[(class_labels < 0) | (class_labels >= top)]
        if bad.numel():
            raise ValueError(f"Class label(s) {sorted(set(bad.tolist()))} out of range: this model has "
                             f"{self.config.num_classes} classes, ids 0..{self.config.num_classes - 1}"
                             + (f" (and {self.null_class} for the null class)." if allow_null else "."))

    def forward(self, input_ids: torch.LongTensor | None = None, class_labels: torch.LongTensor | None = None,
                cache: KVCache | None = None, return_dict: bool = True) -> FVQTransformerOutput | tuple:
        """Next-token logits.

        Without a cache (training, scoring): `class_labels` `(B,)` and `input_ids` `(B, L)` with `L < h*w`, the
        first L tokens in raster order -> logits `(B, L + 1, vocab_size)`; position j predicts token j.
        With a cache (sampling): the first call takes `class_labels` (and optionally a prefix of tokens); later
        calls take only the new `input_ids` `(B, 1)`, and return the logits of the next token.
        """
        start = cache.length if cache is not None else 0
        parts = []
        if start == 0:
            if class_labels is None:
                raise ValueError("class_labels (B,) are needed to start a sequence (the null class "
                                 f"{self.null_class} for unconditional).")
            self.check_class_labels(class_labels)
            parts.append(self.class_embedding(class_labels)[:, None])
        elif class_labels is not None:
            raise ValueError("class_labels start a sequence; this cache already holds one. Pass only the new ids.")
        if input_ids is not None:
            if input_ids.ndim != 2:
                raise ValueError(f"input_ids must be (B, L) token ids, got shape {tuple(input_ids.shape)}.")
            if cache is None:  # a cache is fed by the sampler's own ids; checking them would sync every step
                check_token_ids(input_ids, self.config.vocab_size,
                                " (the vocabulary is the tokenizer's codebook size)")
            parts.append(self.token_embedding(input_ids))
        if not parts:
            raise ValueError("Nothing to process: pass input_ids.")
        hidden = self.embedding_dropout(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
        length = hidden.shape[1]
        if start + length > self.num_tokens:
            raise ValueError(f"Sequence of {start + length} positions exceeds the {self.num_tokens} of a "
                             f"{self.config.token_grid_size} token grid (class token + h*w - 1 tokens).")
        positions = torch.arange(start, start + length, device=hidden.device)
        angles = rope_2d_angles(self.config.token_grid_size, self.config.hidden_size // self.config.num_attention_heads,
                                self.config.rope_theta, positions)
        for layer, block in enumerate(self.blocks):
            hidden = self.run_block(block, hidden, angles, cache, layer)
        if cache is not None:
            cache.length += length
        logits = self.output(self.norm(hidden)).float()
        return FVQTransformerOutput(logits=logits) if return_dict else (logits,)

    def model_card(self, repo_id: str | None = None, evaluations: dict | None = None):
        """A `huggingface_hub.ModelCard` with the config and the metrics saved next to the weights."""
        saved, training = load_evaluation(self.config.get("_name_or_path"))
        return generator_card(self.config, repo_id, evaluations or saved, training)
