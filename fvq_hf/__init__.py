"""fvq-hf: FVQ (FullVQ) image tokenizers with a VQBridge, as Hugging Face diffusers models."""

from .models import (
    FVQDecoderOutput,
    FVQEncoderOutput,
    FVQModel,
    FVQModelOutput,
    LinearBridge,
    MLPBridge,
    QuantizerOutput,
    VectorQuantizer,
    VQBridge,
    nearest_code,
)
from .pipelines import FVQPipeline, FVQPipelineOutput

__version__ = "0.1.0"

__all__ = [
    "FVQDecoderOutput",
    "FVQEncoderOutput",
    "FVQModel",
    "FVQModelOutput",
    "FVQPipeline",
    "FVQPipelineOutput",
    "LinearBridge",
    "MLPBridge",
    "QuantizerOutput",
    "VQBridge",
    "VectorQuantizer",
    "nearest_code",
]
