"""The FVQ tokenizer: encoder -> (bridged) quantizer -> decoder, as a diffusers model."""

from .fvq_model import FVQDecoderOutput, FVQEncoderOutput, FVQModel, FVQModelOutput

__all__ = ["FVQDecoderOutput", "FVQEncoderOutput", "FVQModel", "FVQModelOutput"]
