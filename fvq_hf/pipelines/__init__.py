"""diffusers pipelines built on FVQ tokenizers: reconstruction (FVQPipeline), generation on tokens
(FVQGenerationPipeline) and on continuous latents (FVQLatentPipeline)."""

from .pipeline_fvq import FVQPipeline, FVQPipelineOutput
from .pipeline_generation import FVQGenerationPipeline, FVQGenerationPipelineOutput
from .pipeline_latent import FVQLatentPipeline, FVQLatentPipelineOutput

__all__ = ["FVQGenerationPipeline", "FVQGenerationPipelineOutput", "FVQLatentPipeline", "FVQLatentPipelineOutput",
           "FVQPipeline", "FVQPipelineOutput"]
