"""fvq-hf: FVQ (FullVQ) image tokenizers with a VQBridge, as Hugging Face diffusers models."""

from .models import (
    FVQDecoderOutput,
    FVQEncoderOutput,
    FVQModel,
    FVQModelOutput,
    FVQTransformer,
    FVQTransformerOutput,
    KVCache,
    LinearBridge,
    MLPBridge,
    OriginalCheckpointInfo,
    QuantizerOutput,
    VectorQuantizer,
    VQBridge,
    nearest_code,
)
from .pipelines import FVQGenerationPipeline, FVQGenerationPipelineOutput, FVQPipeline, FVQPipelineOutput

__version__ = "0.1.0"

__all__ = [
    "FVQDecoderOutput",
    "FVQEncoderOutput",
    "FVQModel",
    "FVQGenerationPipeline",
    "FVQGenerationPipelineOutput",
    "FVQModelOutput",
    "FVQPipeline",
    "FVQPipelineOutput",
    "FVQTransformer",
    "FVQTransformerOutput",
    "KVCache",
    "LinearBridge",
    "MLPBridge",
    "OriginalCheckpointInfo",
    "QuantizerOutput",
    "VQBridge",
    "VectorQuantizer",
    "nearest_code",
]
