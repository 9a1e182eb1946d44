"""Building blocks shared by the tokenizer and the prior."""

from .checkpointing import CheckpointedBlocks

__all__ = ["CheckpointedBlocks"]
