"""What every fvq-hf pipeline shares: loading by hub id, pushing with a generated card, image output types."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from ..data.image_io import tensor_to_pil
from ..hub.mixin import CardPushMixin
from ..hub.remote_code import add_pipeline_class_module, without_remote_module
from ..prior import FVQTransformer
from ..tokenizer import FVQModel

OUTPUT_TYPES = ("pil", "np", "pt")


def format_images(images: torch.Tensor, output_type: str):
    """`(B, 3, H, W)` in [-1, 1] -> the pipeline's output types (diffusers' conventions)."""
    check_output_type(output_type)
    images = images.float().clamp(-1, 1)
    if output_type == "pt":
        return images
    if output_type == "np":
        return ((images + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()
    return tensor_to_pil(images)


def check_output_type(output_type: str) -> None:
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")


class HubPipeline(CardPushMixin, DiffusionPipeline):
    """A `DiffusionPipeline` whose components live in fvq-hf; subclasses provide `model_card(repo_id, evaluations)`."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs):
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
            raise OSError(f"{path} has no model_index.json: it is not a saved pipeline. Build the pipeline from its "
                          f"models instead, e.g. {cls.__name__}(...=Model.from_pretrained(folder)).")
        return super().from_pretrained(path, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """diffusers' `save_pretrained`, plus what `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`
        needs: `_class_name` as `[module, Class]` and that module file (see `fvq_hf.hub.remote_code`)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            add_pipeline_class_module(save_directory)

    @classmethod
    def load_config(cls, *args, **kwargs):
        """The saved model_index.json, with `_class_name` read as this class: loading through the class itself runs
        no file of the repository (the `[module, Class]` form is for diffusers' generic loader)."""
        config = super().load_config(*args, **kwargs)
        modules = {c.__name__: c.__module__ for c in (FVQModel, FVQTransformer)}
        if isinstance(config, tuple):
            return (without_remote_module(config[0], modules), *config[1:])
        return without_remote_module(config, modules)
