"""LPIPS (Zhang et al. 2018) with a VGG16 backbone, built from local weight files only.

Two files are needed, neither of which can be downloaded at run time here:
- the VGG16 ImageNet weights in torchvision's layout (`vgg16-397923af.pth`: keys `features.{i}.weight`);
- the LPIPS v0.1 linear heads for VGG (`vgg.pth` of the `lpips` package: keys `lin{k}.model.1.weight`).
Pass them as arguments or set `FVQ_LPIPS_VGG` and `FVQ_LPIPS_LINEAR`. `find_lpips_weights` says what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# VGG16's conv widths; "M" is a 2x2 max-pool. LPIPS taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # indices in `features` of the ReLUs LPIPS reads
_WIDTHS = (64, 128, 256, 512, 512)
# ImageNet normalisation of inputs in [-1, 1], as in LPIPS' ScalingLayer.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def find_lpips_weights(vgg: str | None = None, linear: str | None = None) -> tuple[Path | None, Path | None, str]:
    """Resolve the two weight paths (arguments, then environment); the third value says what is missing."""
    vgg = vgg or os.environ.get("FVQ_LPIPS_VGG")
    linear = linear or os.environ.get("FVQ_LPIPS_LINEAR")
    missing = []
    if not vgg or not Path(vgg).is_file():
        missing.append(f"VGG16 weights ({vgg or 'set --lpips-vgg or FVQ_LPIPS_VGG'}: torchvision's "
                       "vgg16-397923af.pth)")
    if not linear or not Path(linear).is_file():
        missing.append(f"LPIPS linear heads ({linear or 'set --lpips-linear or FVQ_LPIPS_LINEAR'}: vgg.pth of "
                       "the lpips package, v0.1)")
    note = ("LPIPS unavailable: missing " + "; ".join(missing)) if missing else ""
    return (Path(vgg) if vgg and not missing else None, Path(linear) if linear and not missing else None, note)


class LPIPS(nn.Module):
    """Perceptual distance, `(B, 3, H, W), (B, 3, H, W)` in [-1, 1] -> `(B,)`. Frozen; gradients flow to inputs."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for item in _VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(width, item, 3, padding=1), nn.ReLU(inplace=False)]
                width = item
        self.features = nn.Sequential(*layers[: _TAPS[-1] + 1])
        self.lins = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in _WIDTHS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    @classmethod
    def from_files(cls, vgg: str | os.PathLike, linear: str | os.PathLike) -> LPIPS:
        """Load the two weight files; a wrong or corrupt file is an error that names it."""
        model = cls()
        try:
            vgg_state = torch.load(vgg, map_location="cpu", weights_only=True)
            lin_state = torch.load(linear, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"Cannot read LPIPS weights {vgg} / {linear}: {error}") from error
        features = {k[len("features."):]: v for k, v in vgg_state.items() if k.startswith("features.")}
        features = {k: v for k, v in features.items() if int(k.split(".")[0]) <= _TAPS[-1]}
        lins = {f"{k}.weight": lin_state.get(f"lin{k}.model.1.weight") for k in range(5)}
        missing = [k for k, v in lins.items() if v is None]
        if missing or len(features) != 26:
            raise ValueError(f"{vgg} / {linear} are not torchvision VGG16 + LPIPS v0.1 weights "
                             f"(found {len(features)} of 26 VGG tensors, missing heads {missing}).")
        model.features.load_state_dict(features)
        model.lins.load_state_dict(lins)
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor, dropout: float = 0.0) -> torch.Tensor:
        """`dropout`: drop (and rescale) that share of the squared feature differences before each head, as the
        `Dropout()` of LPIPS' heads does in training mode (taming's and VQGAN-LC's training loss; 0: the metric)."""
        h_x, h_y = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = 0.0
        start = 0
        for tap, lin in zip(_TAPS, self.lins):
            for layer in self.features[start : tap + 1]:
                h_x, h_y = layer(h_x), layer(h_y)
            start = tap + 1
            diff = (F.normalize(h_x, dim=1, eps=1e-10) - F.normalize(h_y, dim=1, eps=1e-10)) ** 2
            if dropout:
                diff = F.dropout(diff, dropout, training=True)
            total = total + lin(diff).mean(dim=(2, 3))
        return total.flatten()
