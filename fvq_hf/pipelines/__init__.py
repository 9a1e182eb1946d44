"""diffusers pipelines built on FVQ tokenizers."""

from .pipeline_fvq import FVQPipeline, FVQPipelineOutput

__all__ = ["FVQPipeline", "FVQPipelineOutput"]
