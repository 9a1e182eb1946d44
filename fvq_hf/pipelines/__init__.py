"""diffusers pipelines built on FVQ tokenizers: reconstruction (FVQPipeline) and generation (FVQGenerationPipeline)."""

from .pipeline_fvq import FVQPipeline, FVQPipelineOutput
from .pipeline_generation import FVQGenerationPipeline, FVQGenerationPipelineOutput

__all__ = ["FVQGenerationPipeline", "FVQGenerationPipelineOutput", "FVQPipeline", "FVQPipelineOutput"]
