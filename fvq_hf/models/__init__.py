"""Models: the VQBridge, the quantizer, the encoder/decoder, the FVQ tokenizer and the autoregressive transformer."""

from .bridge import BRIDGE_TYPES, VQBRIDGE_SIZES, LinearBridge, MLPBridge, VQBridge, code_grid
from .fvq_model import FVQDecoderOutput, FVQEncoderOutput, FVQModel, FVQModelOutput
from .original_checkpoint import OriginalCheckpointInfo
from .quantizer import QuantizerOutput, VectorQuantizer, nearest_code
from .transformer import FVQTransformer, FVQTransformerOutput, KVCache

__all__ = [
    "BRIDGE_TYPES",
    "VQBRIDGE_SIZES",
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
    "nearest_code",
]
