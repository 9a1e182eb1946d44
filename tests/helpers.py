"""Helpers shared by tests: tiny config folders, image folders and LPIPS weight files made on the spot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .conftest import TINY_CONFIG


def write_config(folder: Path, **overrides) -> Path:
    """A hub-config folder for the tiny model (sample_size 32, downsample 4, K = 256)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "FVQModel", **TINY_CONFIG, **overrides}
    config["block_out_channels"] = list(config["block_out_channels"])
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def write_images(folder: Path, count: int = 6, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """Smooth random RGB images (so a tokenizer can learn something from them) as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(folder / f"img{i}.png")
    return folder


def write_lpips_weights(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Random weights in torchvision's VGG16 and lpips' vgg.pth layouts (the real ones cannot be fetched here)."""
    from fvq_hf.losses.lpips import LPIPS

    torch.manual_seed(seed)
    model = LPIPS()
    for p in model.parameters():
        p.data.normal_(std=0.05)
    folder.mkdir(parents=True, exist_ok=True)
    vgg = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(1)  # torchvision files hold the classifier too
    linear = {f"lin{i}.model.1.weight": lin.weight.abs() for i, lin in enumerate(model.lins)}
    torch.save(vgg, folder / "vgg16.pth")
    torch.save(linear, folder / "vgg.pth")
    return folder / "vgg16.pth", folder / "vgg.pth"
