"""FVQPipeline: images in, reconstructions, token ids and per-image code usage out; token ids back to images."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from ..evaluation.metrics import CodeCounter
from ..image_io import prepare_images, tensor_to_pil
from ..model_card import load_evaluation, push_with_card, tokenizer_card
from ..models import FVQModel

OUTPUT_TYPES = ("pil", "np", "pt")


@dataclass
class FVQPipelineOutput(BaseOutput):
    """
    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` `(B, H, W, 3)` in [0, 1], or `torch.Tensor` `(B, 3, H, W)` in
            [-1, 1]): the reconstructions, as `output_type` asked.
        indices (`torch.LongTensor` of shape `(B, h, w)`): the token ids of each image.
        usage (`list[dict]`): per image, `distinct_codes`, `codebook_fraction` (distinct / K) and `perplexity` of
            its own tokens.
    """

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    indices: torch.LongTensor
    usage: list[dict]


def image_usage(indices: torch.Tensor, codebook_size: int) -> dict:
    """Distinct codes, their fraction of K, and the perplexity of one image's `(h, w)` tokens."""
    counter = CodeCounter(codebook_size)
    counter.update(indices.cpu())
    return {"distinct_codes": int((counter.counts > 0).sum()), "codebook_fraction": counter.usage,
            "perplexity": counter.perplexity}


def format_images(images: torch.Tensor, output_type: str):
    """`(B, 3, H, W)` in [-1, 1] -> the pipeline's output types (diffusers' conventions)."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
    images = images.float().clamp(-1, 1)
    if output_type == "pt":
        return images
    if output_type == "np":
        return ((images + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
    return tensor_to_pil(images)


class FVQPipeline(DiffusionPipeline):
    r"""Tokenize and reconstruct images with an FVQ tokenizer.

    Images may be PIL images, numpy arrays, tensors, file paths or lists of them, of any size and mode:
    they are converted to RGB, resized (shorter side) and centre-cropped to `resolution` (default: the
    model's `sample_size`) as `fvq_hf.image_io` documents.

        pipe = FVQPipeline.from_pretrained("org/fvq-262k-pipeline")     # or FVQPipeline(vq=model)
        out = pipe(image)                       # out.images, out.indices (B, h, w), out.usage
        again = pipe.detokenize(out.indices)    # the same reconstructions from the token ids
    """

    model_cpu_offload_seq = "vq"

    def __init__(self, vq: FVQModel) -> None:
        super().__init__()
        self.register_modules(vq=vq)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> FVQPipeline:
        """Load from a folder written by `save_pretrained`, or from a hub id (downloaded or taken from the cache).

        diffusers cannot resolve components defined outside diffusers by hub id, so a hub id is first fetched
        with `huggingface_hub.snapshot_download` (which honours `HF_HUB_OFFLINE` and the local cache).
        """
        path = Path(pretrained_model_name_or_path)
        if not path.is_dir():
            from huggingface_hub import snapshot_download

            download = {k: kwargs.pop(k) for k in ("cache_dir", "revision", "token", "local_files_only") if k in kwargs}
            try:
                path = Path(snapshot_download(str(pretrained_model_name_or_path), **download))
            except Exception as error:
                raise OSError(f"{pretrained_model_name_or_path} is not a local pipeline folder, and it cannot be "
                              f"fetched from the Hub or found in the local cache ({type(error).__name__}: {error}). "
                              "Check the id, or download it once while online.") from error
        if not (path / "model_index.json").exists():
            raise OSError(f"{path} has no model_index.json: it is not a saved pipeline. For a single model folder "
                          "use FVQPipeline(vq=FVQModel.from_pretrained(folder)).")
        return super().from_pretrained(path, **kwargs)

    def push_to_hub(self, repo_id: str, commit_message: str | None = None, private: bool | None = None,
                    token: str | None = None, create_pr: bool = False, evaluations: dict | None = None) -> str:
        """Upload model_index.json, the tokenizer under `vq/`, and a generated model card with the measured metrics."""
        saved, training = load_evaluation(self.vq.config.get("_name_or_path"))
        card = tokenizer_card(self.vq.config, repo_id, evaluations or saved, training, pipeline=True)
        return push_with_card(self, repo_id, card, commit_message or "Upload FVQPipeline", private, token, create_pr)

    def _resolution(self, resolution: int | None) -> int:
        size = resolution or self.vq.config.sample_size
        if size % self.vq.downsample_factor:
            raise ValueError(f"resolution {size} is not a multiple of the downsample factor {self.vq.downsample_factor}.")
        return size

    @torch.no_grad()
    def __call__(self, images, output_type: str = "pil", resolution: int | None = None,
                 return_dict: bool = True) -> FVQPipelineOutput | tuple:
        """Reconstruct `images` (see class docstring); returns images, `(B, h, w)` indices and per-image usage."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        batch = prepare_images(images, self._resolution(resolution)).to(self.device, self.vq.dtype)
        encoded = self.vq.encode(batch)
        reconstruction = self.vq.decode(encoded.latents).sample
        usage = [image_usage(i, self.vq.codebook_size) for i in encoded.indices]
        output = FVQPipelineOutput(format_images(reconstruction, output_type), encoded.indices, usage)
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def detokenize(self, indices: torch.Tensor, output_type: str = "pil"):
        """`(B, h, w)` (or `(h, w)`) token ids -> images, as `output_type` asks."""
        indices = torch.as_tensor(indices)
        if indices.ndim == 2:
            indices = indices[None]
        return format_images(self.vq.detokenize(indices.to(self.device)), output_type)
