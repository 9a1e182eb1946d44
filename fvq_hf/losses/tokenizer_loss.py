"""The tokenizer's training objective as released: L2 + LPIPS + hinge PatchGAN + quantizer losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .lpips import LPIPS


class TokenizerLoss(nn.Module):
    """Generator and discriminator losses.

    Generator: `reconstruction_weight * L2 + perceptual_weight * LPIPS + disc_weight * hinge_G` (the GAN
    term from `disc_start` on) `+ codebook + commitment`. Discriminator: hinge loss, from `disc_start` on.
    The discriminator is passed in rather than owned so that it can be wrapped for DDP on its own.
    Without LPIPS weights (`lpips=None`) the perceptual term is left out.
    """

    def __init__(self, lpips: LPIPS | None = None, *, reconstruction_weight: float = 1.0,
                 perceptual_weight: float = 1.0, disc_weight: float = 0.5, disc_start: int = 20000) -> None:
        super().__init__()
        if min(reconstruction_weight, perceptual_weight, disc_weight) < 0 or disc_start < 0:
            raise ValueError("Loss weights and disc_start must be >= 0.")
        self.lpips = lpips
        self.reconstruction_weight = reconstruction_weight
        self.perceptual_weight = perceptual_weight
        self.disc_weight = disc_weight
        self.disc_start = disc_start

    def gan_active(self, step: int) -> bool:
        """Whether the GAN terms are on at optimizer step `step` (0-based). The released loops (LlamaGen's, the FVQ
        authors') pass `global_step = step + 1` and start at `global_step >= disc_start`: so does this."""
        return self.disc_weight > 0 and step + 1 >= self.disc_start

    def generator_loss(self, images: torch.Tensor, reconstructions: torch.Tensor, codebook_loss: torch.Tensor,
                       commitment_loss: torch.Tensor, step: int,
                       discriminator: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Images and reconstructions `(B, 3, H, W)` in [-1, 1] -> total loss and its parts for logging."""
        reconstruction = F.mse_loss(reconstructions.float(), images.float())
        loss = self.reconstruction_weight * reconstruction + codebook_loss + commitment_loss
        logs = {"loss/reconstruction": reconstruction.item(), "loss/codebook": codebook_loss.item(),
                "loss/commitment": commitment_loss.item()}
        if self.lpips is not None and self.perceptual_weight > 0:
            perceptual = self.lpips(reconstructions.float(), images.float()).mean()
            loss = loss + self.perceptual_weight * perceptual
            logs["loss/perceptual"] = perceptual.item()
        if discriminator is not None and self.gan_active(step):
            # Detached discriminator parameters: the generator loss must not leave gradients on them.
            params = {name: p.detach() for name, p in discriminator.named_parameters()}
            logits = functional_call(discriminator, {**params, **dict(discriminator.named_buffers())}, (reconstructions,))
            adversarial = -logits.float().mean()
            loss = loss + self.disc_weight * adversarial
            logs["loss/generator_gan"] = adversarial.item()
        logs["loss/total"] = loss.item()
        return loss, logs

    def discriminator_loss(self, images: torch.Tensor, reconstructions: torch.Tensor,
                           discriminator: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss on real images and detached reconstructions."""
        real = discriminator(images).float()
        fake = discriminator(reconstructions.detach()).float()
        loss = 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        return loss, {"loss/discriminator": loss.item(), "disc/logits_real": real.mean().item(),
                      "disc/logits_fake": fake.mean().item()}
