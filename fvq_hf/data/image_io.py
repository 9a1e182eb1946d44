"""Reading images and turning them into model inputs, with one documented policy for every entry point.

Policy (training crops aside): any readable image becomes 8-bit RGB, then its shorter side is resized to
the model's resolution (bicubic, antialiased) and the centre is cropped to a square; pixels map to [-1, 1].
- 16-bit and float images ("I;16", "I", "F") are rescaled to 8 bits by their full range.
- Transparent images ("RGBA", "LA", "P" with transparency) are composited onto white.
- Grayscale, palette, CMYK and 1-bit images are converted to RGB.
- Images larger than `MAX_IMAGE_PIXELS` are refused (decompression-bomb guard).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_PIXELS = 64_000_000  # a 8000 x 8000 photo
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

ImageInput = Image.Image | np.ndarray | torch.Tensor


class ImageReadError(ValueError):
    """A file that exists but is not a readable image."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, as the module docstring describes."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as 8-bit RGB (EXIF orientation applied); clear errors for missing or bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No image file at {path}.")
    return read_image(path, str(path))


def read_image(file: str | os.PathLike | BinaryIO, name: str) -> Image.Image:
    """An image file or an open binary stream (`name` says which in errors) -> 8-bit RGB, EXIF orientation applied;
    `ImageReadError` when it is not a readable image."""
    try:
        with Image.open(file) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageReadError(f"{name} is {image.width}x{image.height}, more than {MAX_IMAGE_PIXELS:,} "
                                     "pixels; downscale it first.")
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as error:
        raise ImageReadError(f"Cannot read {name} as an image ({error}); is it a corrupt or non-image file?") from error


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` (bicubic, antialiased) and crop the centre `size x size`."""
    scale = size / min(image.size)
    width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    return image.crop((left, top, left + size, top + size))


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> `(3, H, W)` float tensor in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """`(B, 3, H, W)` or `(3, H, W)` tensor in [-1, 1] -> list of RGB PIL images (values are clamped)."""
    if images.ndim == 3:
        images = images[None]
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a) for a in array.permute(0, 2, 3, 1).cpu().numpy()]


def _to_pil(image: ImageInput) -> Image.Image:
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
            raise ValueError(f"Expected a (C, H, W) image tensor with C in 1, 3, 4; got {tuple(image.shape)}.")
        # Tensors follow diffusers' convention: floats in [-1, 1].
        array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        return to_rgb(Image.fromarray(array[..., 0] if array.shape[2] == 1 else array))
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(f"Expected an (H, W) or (H, W, C) array with C in 1, 3, 4; got {image.shape}.")
        if image.dtype == np.uint8:
            array = image
        elif np.issubdtype(image.dtype, np.floating):  # floats in [0, 1], as diffusers' numpy images
            array = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
        elif image.dtype == np.uint16:
            array = (image / 257.0).round().astype(np.uint8)
        elif image.dtype == np.bool_:
            array = image.astype(np.uint8) * 255
        else:
            raise ValueError(f"Unsupported image array dtype {image.dtype}; use uint8, uint16 or floats in [0, 1].")
        return to_rgb(Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array))
    raise TypeError(f"Unsupported image type {type(image).__name__}; pass PIL images, numpy arrays, torch tensors "
                    "or file paths.")


def prepare_images(images: ImageInput | str | os.PathLike | Sequence, size: int) -> torch.Tensor:
    """Images of any supported type, size and mode -> `(B, 3, size, size)` tensor in [-1, 1].

    Accepts a PIL image, an `(H, W[, C])` numpy array (uint8, uint16, bool or floats in [0, 1]), a `(C, H, W)`
    tensor in [-1, 1], a `(B, C, H, W)` tensor, a file path, or a list of any of these.
    """
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        images = list(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise ValueError("No images given.")
    loaded = [load_image(i) if isinstance(i, (str, os.PathLike)) else _to_pil(i) for i in images]
    return torch.stack([pil_to_tensor(resize_center_crop(image, size)) for image in loaded])
