"""The tokenizer's training objective as released: L2 (or L1) + LPIPS + hinge PatchGAN (at a fixed or taming's
adaptive weight) + quantizer losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .lpips import LPIPS

RECONSTRUCTION_LOSSES = {"l2": F.mse_loss, "l1": F.l1_loss}


class TokenizerLoss(nn.Module):
    """Generator and discriminator losses.

    Generator: `reconstruction_weight * L2 + perceptual_weight * LPIPS + disc_weight * hinge_G` (the GAN
    term from `disc_start` on) `+ codebook + commitment`. Discriminator: hinge loss, from `disc_start` on.
    `reconstruction_loss="l1"`: the mean absolute error instead of L2 (taming's and VQGAN-LC's). With
    `disc_adaptive`, the GAN term's weight is taming's adaptive one, `disc_weight * clamp(|grad nll| / (|grad
    G| + 1e-4), 0, 1e4)` with both gradients taken at the decoder's last layer (`last_layer`, passed to
    `generator_loss`) and nll the reconstruction + perceptual terms (VQGAN-LC: disc_weight 0.1, their rate_d).
    `perceptual_dropout`: LPIPS' head dropout in the training loss (taming's and VQGAN-LC's 0.5, see `LPIPS`).
    The discriminator is passed in rather than owned so that it can be wrapped for DDP on its own.
    Without LPIPS weights (`lpips=None`) the perceptual term is left out.
    """

    def __init__(self, lpips: LPIPS | None = None, *, reconstruction_weight: float = 1.0,
                 perceptual_weight: float = 1.0, disc_weight: float = 0.5, disc_start: int = 20000,
                 reconstruction_loss: str = "l2", disc_adaptive: bool = False, perceptual_dropout: float = 0.0) -> None:
        super().__init__()
        if min(reconstruction_weight, perceptual_weight, disc_weight) < 0 or disc_start < 0:
            raise ValueError("Loss weights and disc_start must be >= 0.")
        if not 0 <= perceptual_dropout < 1:
            raise ValueError(f"perceptual_dropout must lie in [0, 1), got {perceptual_dropout}.")
        self.perceptual_dropout = perceptual_dropout
        if reconstruction_loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"reconstruction_loss {reconstruction_loss!r}: choose one of "
                             f"{', '.join(RECONSTRUCTION_LOSSES)}.")
        self.reconstruction_loss, self.disc_adaptive = reconstruction_loss, disc_adaptive
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
                       commitment_loss: torch.Tensor, step: int, discriminator: nn.Module | None = None,
                       last_layer: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Images and reconstructions `(B, 3, H, W)` in [-1, 1] -> total loss and its parts for logging.
        `last_layer`: the decoder's last weight, which the adaptive GAN weight needs (`disc_adaptive`)."""
        reconstruction = RECONSTRUCTION_LOSSES[self.reconstruction_loss](reconstructions.float(), images.float())
        nll = self.reconstruction_weight * reconstruction
        logs = {"loss/reconstruction": reconstruction.item(), "loss/codebook": codebook_loss.item(),
                "loss/commitment": commitment_loss.item()}
        if self.lpips is not None and self.perceptual_weight > 0:
            # Images first, as LlamaGen's and VQGAN-LC's losses call it (with dropout, the order decides the draws).
            perceptual = self.lpips(images.float(), reconstructions.float(), self.perceptual_dropout).mean()
            nll = nll + self.perceptual_weight * perceptual
            logs["loss/perceptual"] = perceptual.item()
        loss = nll + codebook_loss + commitment_loss
        if discriminator is not None and self.gan_active(step):
            # Detached discriminator parameters: the generator loss must not leave gradients on them.
            params = {name: p.detach() for name, p in discriminator.named_parameters()}
            logits = functional_call(discriminator, {**params, **dict(discriminator.named_buffers())}, (reconstructions,))
            adversarial = -logits.float().mean()
            weight = self.adaptive_weight(nll, adversarial, last_layer) if self.disc_adaptive else self.disc_weight
            loss = loss + weight * adversarial
            logs["loss/generator_gan"] = adversarial.item()
            if self.disc_adaptive:
                logs["loss/disc_weight"] = float(weight)
        logs["loss/total"] = loss.item()
        return loss, logs

    def adaptive_weight(self, nll: torch.Tensor, adversarial: torch.Tensor,
                        last_layer: torch.Tensor | None) -> torch.Tensor:
        """taming's `calculate_adaptive_weight`: `disc_weight * clamp(|d nll / d w| / (|d G / d w| + 1e-4), 0,
        1e4)` at the decoder's last weight `w`, detached."""
        if last_layer is None:
            raise ValueError("The adaptive GAN weight (disc_adaptive) needs the decoder's last layer: pass last_layer.")
        nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
        adversarial_grad = torch.autograd.grad(adversarial, last_layer, retain_graph=True)[0]
        ratio = torch.linalg.vector_norm(nll_grad) / (torch.linalg.vector_norm(adversarial_grad) + 1e-4)
        return torch.clamp(ratio, 0.0, 1e4).detach() * self.disc_weight

    def discriminator_loss(self, images: torch.Tensor, reconstructions: torch.Tensor,
                           discriminator: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """Hinge loss on real images and detached reconstructions."""
        real = discriminator(images).float()
        fake = discriminator(reconstructions.detach()).float()
        loss = 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        return loss, {"loss/discriminator": loss.item(), "disc/logits_real": real.mean().item(),
                      "disc/logits_fake": fake.mean().item()}
