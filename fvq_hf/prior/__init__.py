"""The autoregressive prior over token ids: LlamaGen's class-conditional GPT and its key/value cache."""

from .transformer import FVQTransformer, FVQTransformerOutput, KVCache

__all__ = ["FVQTransformer", "FVQTransformerOutput", "KVCache"]
