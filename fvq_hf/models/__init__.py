"""Models: the VQBridge, the quantizer, the encoder/decoder and the FVQ tokenizer."""

from .bridge import BRIDGE_TYPES, VQBRIDGE_SIZES, LinearBridge, MLPBridge, VQBridge, code_grid
from .fvq_model import FVQDecoderOutput, FVQEncoderOutput, FVQModel, FVQModelOutput
from .quantizer import QuantizerOutput, VectorQuantizer, nearest_code

__all__ = [
    "BRIDGE_TYPES",
    "VQBRIDGE_SIZES",
    "FVQDecoderOutput",
    "FVQEncoderOutput",
    "FVQModel",
    "FVQModelOutput",
    "LinearBridge",
    "MLPBridge",
    "QuantizerOutput",
    "VQBridge",
    "VectorQuantizer",
    "code_grid",
    "nearest_code",
]
