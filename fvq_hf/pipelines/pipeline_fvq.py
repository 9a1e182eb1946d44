"""FVQPipeline: images in, reconstructions, token ids and per-image code usage out; token ids back to images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput

from ..data.image_io import prepare_images
from ..evaluation.usage import image_usage
from ..tokenizer import FVQModel
from .base import HubPipeline, check_output_type, format_images


@dataclass
class FVQPipelineOutput(BaseOutput):
    """
    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` `(B, H, W, 3)` in [0, 1], or `torch.Tensor` `(B, 3, H, W)` in
            [-1, 1]): the reconstructions, as `output_type` asked.
        indices (`torch.LongTensor` of the tokenizer's `quantizer.indices_shape`, `(B, h, w)` for plain VQ): the
            token ids of each image.
        usage (`list[dict]`): per image, `distinct_codes`, `codebook_fraction` (distinct / K) and `perplexity` of
            its own tokens.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    indices: torch.LongTensor
    usage: list[dict]


class FVQPipeline(HubPipeline):
    r"""Tokenize and reconstruct images with an FVQ tokenizer.

    Images may be PIL images, numpy arrays, tensors, file paths or lists of them, of any size and mode:
    they are converted to RGB, resized (shorter side) and centre-cropped to `resolution` (default: the
    model's `sample_size`) as `fvq_hf.data.image_io` documents.

        pipe = FVQPipeline.from_pretrained("org/fvq-262k-pipeline")     # or FVQPipeline(vq=model)
        out = pipe(image)                       # out.images, out.indices (B, h, w), out.usage
        ids = pipe.tokenize(image)              # (B, h, w) token ids only
        again = pipe.detokenize(out.indices)    # the same reconstructions from the token ids

    Like `FVQModel.tokenize` / `detokenize`, but with images (PIL, numpy, ...) where the model takes and gives
    `(B, 3, H, W)` tensors in [-1, 1]. `enable_model_cpu_offload()` works as in diffusers.
    """

    model_cpu_offload_seq = "vq"

    def __init__(self, vq: FVQModel) -> None:
        super().__init__()
        self.register_modules(vq=vq)

    def model_card(self, repo_id: str | None = None, evaluations: dict | None = None):
        """The tokenizer's card in its pipeline form, with the metrics saved next to the tokenizer's weights."""
        return self.vq.model_card(repo_id, evaluations, pipeline=True)

    def _resolution(self, resolution: int | None) -> int:
        size = resolution or self.vq.config.sample_size
        fixed = self.vq.fixed_image_size
        if fixed is not None and size != fixed:
            raise ValueError(f"resolution {size}: this multi-scale tokenizer takes only {fixed} px images.")
        if size % self.vq.downsample_factor:
            raise ValueError(f"resolution {size} is not a multiple of the downsample factor {self.vq.downsample_factor}.")
        return size

    @torch.no_grad()
    def __call__(self, images, output_type: str = "pil", resolution: int | None = None,
                 return_dict: bool = True) -> FVQPipelineOutput | tuple:
        """Reconstruct `images` (see class docstring); returns images, `(B, h, w)` indices and per-image usage."""
        check_output_type(output_type)
        encoded = self.vq.encode(self._prepare(images, resolution))
        reconstruction = self.vq.decode(encoded.quantized, force_not_quantize=True).sample
        self.maybe_free_model_hooks()
        usage = [image_usage(i, self.vq.codebook_size) for i in encoded.indices]
        output = FVQPipelineOutput(format_images(reconstruction, output_type), encoded.indices, usage)
        return output if return_dict else output.to_tuple()

    def _prepare(self, images, resolution: int | None) -> torch.Tensor:
        """Any images -> `(B, 3, r, r)` in [-1, 1] on the execution device, in the model's dtype."""
        return prepare_images(images, self._resolution(resolution)).to(self._execution_device, self.vq.dtype)

    @torch.no_grad()
    def tokenize(self, images, resolution: int | None = None) -> torch.LongTensor:
        """Images (as for `__call__`) -> token ids of `vq.quantizer.indices_shape` (`(B, h, w)` for plain VQ)."""
        indices = self.vq.tokenize(self._prepare(images, resolution))
        self.maybe_free_model_hooks()
        return indices

    @torch.no_grad()
    def detokenize(self, indices: torch.Tensor, output_type: str = "pil"):
        """Token ids of `vq.quantizer.indices_shape`, or one image's (without the batch dimension) -> images, as
        `output_type` asks."""
        indices = torch.as_tensor(indices)
        if indices.ndim == self.vq.quantizer.indices_ndim - 1:
            indices = indices[None]
        images = self.vq.detokenize(indices.to(self._execution_device))
        self.maybe_free_model_hooks()
        return format_images(images, output_type)
