"""fvq-hf: FVQ (FullVQ) image tokenizers with a VQBridge, as Hugging Face diffusers models.

The public names are imported when first used (PEP 562 `__getattr__`), as diffusers' `_LazyModule` keeps
`import diffusers` cheap: `from fvq_hf import FVQModel` loads the tokenizer and what it imports, not the pipelines,
the prior or the conversion.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Each public name -> the module that defines it.
_MODULES = {
    "fvq_hf.bridges": ("DiTBridge", "LinearBridge", "MLPBridge", "VQBridge", "qbridge_config"),
    "fvq_hf.conversion.original_info": ("OriginalCheckpointInfo",),
    "fvq_hf.diffusion.conversion": ("convert_latent_generator",),
    # diffusers loads a pipeline component whose library is fvq_hf from the package root: DiTPipeline.from_pretrained
    "fvq_hf.diffusion.dit": ("TimeMappedDiTTransformer2DModel",),
    "fvq_hf.pipelines": ("FVQGenerationPipeline", "FVQGenerationPipelineOutput", "FVQLatentPipeline",
                         "FVQLatentPipelineOutput", "FVQPipeline", "FVQPipelineOutput"),
    "fvq_hf.prior": ("FVQTransformer", "FVQTransformerOutput", "KVCache"),
    "fvq_hf.quantizers": ("MultiScaleQuantizer", "QuantizerOutput", "ResidualQuantizer", "VectorQuantizer"),
    "fvq_hf.search": ("nearest_code",),
    "fvq_hf.tokenizer": ("FVQDecoderOutput", "FVQEncoderOutput", "FVQModel", "FVQModelOutput"),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "FVQDecoderOutput",
    "FVQEncoderOutput",
    "FVQModel",
    "FVQGenerationPipeline",
    "FVQGenerationPipelineOutput",
    "FVQLatentPipeline",
    "FVQLatentPipelineOutput",
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
    "TimeMappedDiTTransformer2DModel",
    "MultiScaleQuantizer",
    "QuantizerOutput",
    "ResidualQuantizer",
    "VQBridge",
    "VectorQuantizer",
    "convert_latent_generator",
    "nearest_code",
    "qbridge_config",
]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
