"""The PatchGAN discriminator of pix2pix / taming-transformers, as used by LlamaGen and FVQ."""

from __future__ import annotations

import torch
from torch import nn


class PatchGANDiscriminator(nn.Module):
    """`(B, 3, H, W)` images -> `(B, 1, h, w)` real/fake logits, one per overlapping patch.

    `num_layers` stride-2 4x4 convs (widths `channels * min(2**i, 8)`) with BatchNorm and LeakyReLU(0.2),
    then a stride-1 conv and a 1-channel output conv.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = channels
        for i in range(1, num_layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
