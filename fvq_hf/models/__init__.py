"""Models: the VQBridge, the quantizer, the encoder/decoder, the FVQ tokenizer and the autoregressive transformer."""

from .bridges import BRIDGES, CodebookBridge, LinearBridge, MLPBridge, VQBridge, code_grid, register_bridge
from .fvq_model import FVQDecoderOutput, FVQEncoderOutput, FVQModel, FVQModelOutput
from .original_checkpoint import OriginalCheckpointInfo
from .quantizer import QuantizerOutput, VectorQuantizer
from .search import nearest_code
from .transformer import FVQTransformer, FVQTransformerOutput, KVCache

__all__ = [
    "BRIDGES",
    "CodebookBridge",
    "FVQDecoderOutput",
    "FVQEncoderOutput",
    "FVQModel",
    "FVQModelOutput",
    "FVQTransformer",
    "FVQTransformerOutput",
    "KVCache",
    "LinearBridge",
    "OriginalCheckpointInfo",
    "MLPBridge",
    "QuantizerOutput",
    "VQBridge",
    "VectorQuantizer",
    "code_grid",
    "register_bridge",
    "nearest_code",
]
