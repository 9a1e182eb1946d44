"""fvq-hf: FVQ (FullVQ) image tokenizers with a VQBridge, as Hugging Face diffusers models."""

from .bridges import DiTBridge, LinearBridge, MLPBridge, VQBridge, qbridge_config
from .conversion.loader import OriginalCheckpointInfo
from .pipelines import FVQGenerationPipeline, FVQGenerationPipelineOutput, FVQPipeline, FVQPipelineOutput
from .prior import FVQTransformer, FVQTransformerOutput, KVCache
from .quantizers import MultiScaleQuantizer, QuantizerOutput, ResidualQuantizer, VectorQuantizer
from .search import nearest_code
from .tokenizer import FVQDecoderOutput, FVQEncoderOutput, FVQModel, FVQModelOutput

__version__ = "0.1.0"

__all__ = [
    "FVQDecoderOutput",
    "FVQEncoderOutput",
    "FVQModel",
    "FVQGenerationPipeline",
    "FVQGenerationPipelineOutput",
    "FVQModelOutput",
    "DiTBridge",
    "FVQPipeline",
    "FVQPipelineOutput",
    "FVQTransformer",
    "FVQTransformerOutput",
    "KVCache",
    "LinearBridge",
    "MLPBridge",
    "OriginalCheckpointInfo",
    "MultiScaleQuantizer",
    "QuantizerOutput",
    "ResidualQuantizer",
    "VQBridge",
    "VectorQuantizer",
    "nearest_code",
    "qbridge_config",
]
