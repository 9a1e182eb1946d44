"""Frozen pretrained encoders as feature maps, the input of a VQGAN-LC-style codebook (Zhu et al., arXiv 2406.11837,
§3.2 and §4.1), and the average pooling of their feature grids.

An encoder takes `(B, 3, R, R)` images in [-1, 1] at its own resolution R and gives `(B, D, h, w)` features:
- `clip`: a `transformers` CLIP vision tower (a `CLIPVisionModel(WithProjection)` or full `CLIPModel` checkpoint, by
  folder or hub id). Its features are VQGAN-LC's: every **patch** token of the last layer (not the CLS token) through
  the final layer norm and the projection, `visual_projection(post_layernorm(last_hidden_state[:, 1:]))`; transformers
  applies those two to the CLS token only, so they are applied here by hand. Images go through the checkpoint's
  image processor settings (OpenAI's CLIP transform: shorter side resized to 224, bicubic, centre crop 224, CLIP
  mean and std; OpenAI's defaults at the tower's `image_size` when the checkpoint has no processor config).
- `fvq`: this package's own tokenizer, `FVQModel.encoder(x)`: the features before `quant_conv` (`latent_channels`
  of them) at the model's `sample_size`, images resized and centre-cropped by the `data.image_io` policy.

`load_encoder` tells them apart by the checkpoint's `config.json`; a new kind is one `FeatureEncoder` subclass that
recognises its own config, registered in `FEATURE_ENCODERS`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..conversion.loader import resolve_file
from ..data.image_io import pil_to_tensor, resize_center_crop
from ..hub.paths import refuse_missing_folder
from ..registry import Registry

logger = logging.getLogger(__name__)

# OpenAI CLIP's normalisation (clip/clip.py `_transform`), for checkpoints without an image processor config
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FeatureEncoder(nn.Module):
    """A frozen image encoder: `(B, 3, R, R)` images in [-1, 1] -> `(B, dim, *grid)` features.

    Subclasses set `name` (their registry name), `resolution` (R), `grid` (h, w), `dim` and `features` (what the
    features are, in words, for the table's metadata), and implement `recognises`, `load`, `prepare` and `forward`.
    """

    name: str
    resolution: int
    grid: tuple[int, int]
    dim: int
    features: str

    @classmethod
    def recognises(cls, config: dict) -> bool:
        """Whether a checkpoint's `config.json` is one this class loads."""
        raise NotImplementedError

    @classmethod
    def load(cls, name_or_path: str) -> FeatureEncoder:
        raise NotImplementedError

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> `(3, R, R)` in [-1, 1], by the encoder's own resize and centre crop."""
        raise NotImplementedError


FEATURE_ENCODERS: Registry = Registry("encoder", FeatureEncoder)


@FEATURE_ENCODERS.register
class TokenizerFeatures(FeatureEncoder):
    """This package's tokenizer encoder (`FVQModel.encoder`): features before `quant_conv`."""

    name = "fvq"
    features = "FVQModel.encoder(x): the encoder output before quant_conv"

    def __init__(self, encoder: nn.Module, sample_size: int, downsample_factor: int, latent_channels: int) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.resolution, self.dim = sample_size, latent_channels
        self.grid = (sample_size // downsample_factor,) * 2

    @classmethod
    def recognises(cls, config: dict) -> bool:
        return config.get("_class_name") == "FVQModel"

    @classmethod
    def load(cls, name_or_path: str) -> TokenizerFeatures:
        from ..tokenizer import FVQModel

        model = FVQModel.from_pretrained(name_or_path)
        return cls(model.encoder, model.config.sample_size, model.downsample_factor, model.config.latent_channels)

    def prepare(self, image: Image.Image) -> torch.Tensor:
        return pil_to_tensor(resize_center_crop(image, self.resolution))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder(pixels)


@FEATURE_ENCODERS.register
class ClipFeatures(FeatureEncoder):
    """A `transformers` CLIP vision tower; VQGAN-LC's features: projected, layer-normed patch tokens of the last
    layer (see the module docstring). `model` is a `CLIPVisionModelWithProjection`."""

    name = "clip"
    features = "visual_projection(post_layernorm(last_hidden_state[:, 1:])): CLIP patch tokens, as VQGAN-LC's"

    def __init__(self, model: nn.Module, resize: int, crop: int, mean, std, resample: int = 3) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        config = model.config
        if crop % config.patch_size:
            raise ValueError(f"The CLIP crop size {crop} is not a multiple of its patch size {config.patch_size}.")
        self.resize, self.resolution, self.resample = resize, crop, resample
        self.grid = (crop // config.patch_size,) * 2
        self.dim = config.projection_dim
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def recognises(cls, config: dict) -> bool:
        return config.get("model_type") in ("clip", "clip_vision_model")

    @classmethod
    def load(cls, name_or_path: str) -> ClipFeatures:
        try:
            from transformers import AutoImageProcessor, CLIPVisionModelWithProjection
        except ImportError as error:
            raise ImportError("CLIP encoders need `pip install transformers` (in fvq-hf[train]).") from error
        model = CLIPVisionModelWithProjection.from_pretrained(name_or_path)
        size = model.config.image_size
        try:
            processor = AutoImageProcessor.from_pretrained(name_or_path)
        except OSError:  # no preprocessor_config.json: OpenAI's transform at the tower's size
            logger.warning("%s has no image processor config: using OpenAI CLIP's transform at %d px (resize the "
                           "shorter side, bicubic, centre crop, CLIP mean/std).", name_or_path, size)
            return cls(model, size, size, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
        resize = processor.size.get("shortest_edge") or processor.size.get("height")
        if processor.size.get("height") != processor.size.get("width") and not processor.size.get("shortest_edge"):
            raise ValueError(f"{name_or_path}: an image processor that resizes to {dict(processor.size)} is not "
                             "supported (a shortest edge, or a square size).")
        crop = processor.crop_size["height"] if getattr(processor, "do_center_crop", True) else resize
        return cls(model, resize, crop, processor.image_mean, processor.image_std, int(processor.resample))

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """The CLIP transform: the shorter side to `resize` (the longer in proportion, rounded down), bicubic, then
        the centre `R x R` (offsets rounded down), as transformers' CLIP image processor does."""
        width, height = image.size
        scale = self.resize / min(width, height)
        size = (self.resize, int(height * scale)) if width <= height else (int(width * scale), self.resize)
        image = image.resize(size, Image.Resampling(self.resample))
        left, top = (size[0] - self.resolution) // 2, (size[1] - self.resolution) // 2
        return pil_to_tensor(image.crop((left, top, left + self.resolution, top + self.resolution)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        pixel_values = ((pixels + 1) / 2 - self.mean) / self.std  # [-1, 1] -> [0, 1] -> CLIP's normalisation
        tower = self.model.vision_model
        tokens = tower(pixel_values=pixel_values).last_hidden_state[:, 1:]  # the patch tokens, CLS dropped
        features = self.model.visual_projection(tower.post_layernorm(tokens))
        return features.transpose(1, 2).reshape(len(pixels), self.dim, *self.grid)


def read_config(name_or_path: str) -> dict:
    """The `config.json` of an encoder folder or hub id (from the Hub cache when offline); a clear error when there
    is none to be had."""
    refuse_missing_folder(name_or_path, "encoder")
    folder = Path(name_or_path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        hint = " It is a pipeline folder: pass its tokenizer subfolder (e.g. vq/)." if \
            (folder / "model_index.json").is_file() else ""
        raise FileNotFoundError(f"--encoder {name_or_path}: the folder has no config.json.{hint}")
    try:
        path, _ = resolve_file(name_or_path, "config.json")
    except OSError as error:  # not in the cache offline, no such repo, or no network
        kind = FileNotFoundError if isinstance(error, FileNotFoundError) else OSError
        raise kind(f"--encoder {name_or_path}: {error}") from error
    return json.loads(Path(path).read_text())


def load_encoder(name_or_path: str) -> FeatureEncoder:
    """The frozen encoder of a folder or hub id (its kind read off its `config.json`), in eval mode on the CPU."""
    config = read_config(str(name_or_path))
    for cls in FEATURE_ENCODERS.values():
        if cls.recognises(config):
            return cls.load(str(name_or_path))
    kind = config.get("_class_name") or config.get("model_type") or "unknown"
    raise ValueError(f"--encoder {name_or_path} is a {kind!r} model; fvq-build-codebook reads "
                     f"{', '.join(FEATURE_ENCODERS.names())} encoders (a transformers CLIP model, or an FVQModel).")


def check_pooling(grid: tuple[int, int], pool: int, encoder: str) -> tuple[int, int]:
    """The pooled grid `(h / pool, w / pool)`; a ValueError when `pool` does not divide the feature grid."""
    if pool < 1 or grid[0] % pool or grid[1] % pool:
        sizes = [p for p in range(1, min(grid) + 1) if grid[0] % p == 0 and grid[1] % p == 0]
        raise ValueError(f"--pool {pool} does not divide the {grid[0]}x{grid[1]} feature grid of {encoder}: use one "
                         f"of {', '.join(map(str, sizes))}.")
    return grid[0] // pool, grid[1] // pool


def pooled_vectors(features: torch.Tensor, pool: int) -> torch.Tensor:
    """`(B, D, h, w)` features -> `(B, h/pool * w/pool, D)`: each `pool x pool` cell averaged (VQGAN-LC: 4 x 4 over
    CLIP's 16 x 16 grid), cells in row-major order."""
    pooled = F.avg_pool2d(features, pool) if pool > 1 else features
    return pooled.flatten(2).transpose(1, 2)
