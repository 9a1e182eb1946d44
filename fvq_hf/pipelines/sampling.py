"""Autoregressive sampling of token grids from an FVQTransformer: guidance, temperature, top-k, top-p, KV cache."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..prior.transformer import FVQTransformer


def check_sampling_args(guidance_scale: float, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """ValueError naming the first argument outside its range."""
    if guidance_scale < 0:
        raise ValueError(f"guidance_scale must be >= 0 (1 = no guidance), got {guidance_scale}.")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1] or be None, got {top_p}.")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """`(N, V)` logits with everything outside the top-k and the top-p nucleus set to -inf.

    The nucleus is the smallest set of the most likely tokens whose probability reaches `top_p`; the most
    likely token is always kept.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)  # mass of the tokens ahead
        drop = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, before >= top_p)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_tokens(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.LongTensor:
    """`(N, V)` logits -> `(N,)` sampled ids; `temperature=0` takes the argmax."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def guided_logits(transformer: FVQTransformer, step_input: dict, guidance_scale: float, batch: int, cache) -> torch.Tensor:
    """Last-position logits `(B, V)`; with guidance the batch is `[conditional; null]` and mixed as in LlamaGen."""
    logits = transformer(**step_input, cache=cache).logits[:, -1]
    if guidance_scale == 1:
        return logits
    cond, uncond = logits[:batch], logits[batch:]
    return uncond + guidance_scale * (cond - uncond)


@torch.no_grad()
def generate_tokens(transformer: FVQTransformer, class_labels: torch.LongTensor, guidance_scale: float = 1.0,
                    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                    generator: torch.Generator | None = None, use_cache: bool = True,
                    callback: Callable[[int, int], None] | None = None) -> torch.LongTensor:
    """Sample `(B, h, w)` token grids for `(B,)` class labels, one token per step in raster order.

    With `use_cache` each step feeds only the newest token (a `KVCache` holds the rest); without, each step
    re-runs the whole prefix (for checking and benchmarking the cache). `callback(step, total)` after each token.
    """
    check_sampling_args(guidance_scale, temperature, top_k, top_p)
    transformer.check_class_labels(class_labels, allow_null=False)
    batch, total = class_labels.shape[0], transformer.num_tokens
    labels = class_labels
    if guidance_scale != 1:
        labels = torch.cat([class_labels, torch.full_like(class_labels, transformer.null_class)])
    cache = transformer.make_cache(labels.shape[0], class_labels.device) if use_cache else None
    tokens = torch.empty(batch, 0, dtype=torch.long, device=class_labels.device)
    for step in range(total):
        if step == 0:
            step_input = {"input_ids": None, "class_labels": labels}
        elif use_cache:
            step_input = {"input_ids": tokens[:, -1:].repeat(labels.shape[0] // batch, 1), "class_labels": None}
        else:
            step_input = {"input_ids": tokens.repeat(labels.shape[0] // batch, 1), "class_labels": labels}
        logits = guided_logits(transformer, step_input, guidance_scale, batch, cache)
        tokens = torch.cat([tokens, next_tokens(logits, temperature, top_k, top_p, generator)[:, None]], dim=1)
        if callback is not None:
            callback(step + 1, total)
    return tokens.reshape(batch, *transformer.config.token_grid_size)
