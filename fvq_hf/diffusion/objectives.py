"""The training pairs of both objectives (`schedulers`): noisy latents, their timesteps and the model's target,
and the target a denoiser with a given estimate of the clean latents would predict (for computable baselines)."""

from __future__ import annotations

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .schedulers import objective_of


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like)


def training_pair(scheduler: SchedulerMixin, latents: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean `(B, d, h, w)` latents -> `(noisy latents, timesteps (B,), target)`.

    diffusion: t uniform over the T training steps, `add_noise`, target by `prediction_type`; flow: s uniform in
    [0, 1), `x_t = (1 - s) x_0 + s n` at timestep `s T`, target `n - x_0`. Draws use `generator` (the global RNG
    when None, which checkpoints restore).
    """
    device, batch = latents.device, latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=generator.device if generator else device)
    noise = noise.to(latents)
    steps = scheduler.config.num_train_timesteps
    if objective_of(scheduler) == "flow":
        sigma = torch.rand(batch, generator=generator, device=generator.device if generator else device).to(device)
        s = _broadcast(sigma, latents)
        return (1 - s) * latents + s * noise, sigma * steps, noise - latents
    t = torch.randint(0, steps, (batch,), generator=generator, device=generator.device if generator else device)
    t = t.to(device)
    noisy = scheduler.add_noise(latents, noise, t)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    elif kind == "sample":
        target = latents
    else:
        raise ValueError(f"prediction_type {kind!r} of {type(scheduler).__name__} is not trained here "
                         "(epsilon, v_prediction or sample).")
    return noisy, t, target


def path_coefficients(scheduler: SchedulerMixin, timesteps: torch.Tensor, like: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """`(a, b)` of `x_t = a x_0 + b n` at `timesteps`, shaped to broadcast over `like`: `(sqrt(alpha_bar),
    sqrt(1 - alpha_bar))` for diffusion, `(1 - s, s)` for flow."""
    if objective_of(scheduler) == "flow":
        sigma = _broadcast(timesteps.float() / scheduler.config.num_train_timesteps, like)
        return 1 - sigma, sigma
    alpha_bar = _broadcast(scheduler.alphas_cumprod.to(like.device)[timesteps.long()], like)
    return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()


def target_from_clean(scheduler: SchedulerMixin, noisy: torch.Tensor, timesteps: torch.Tensor,
                      clean: torch.Tensor) -> torch.Tensor:
    """The target (`training_pair`'s) that a denoiser whose estimate of `x_0` is `clean` predicts at `noisy`,
    `timesteps`: a baseline with no network (`gaussian_denoiser`)."""
    a, b = path_coefficients(scheduler, timesteps, noisy)
    noise = (noisy - a * clean) / b.clamp_min(1e-6)
    if objective_of(scheduler) == "flow":
        return noise - clean
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return a * noise - b * clean
    return clean


def gaussian_denoiser(scheduler: SchedulerMixin, noisy: torch.Tensor, timesteps: torch.Tensor, mean: torch.Tensor,
                      variance: torch.Tensor) -> torch.Tensor:
    """The optimal prediction if each value of `x_0` were Gaussian with `mean` and `variance` (both like `noisy`,
    e.g. its class's per-position statistics): `E[x_0 | x_t] = m + a v / (a^2 v + b^2) (x_t - a m)`, as a target."""
    a, b = path_coefficients(scheduler, timesteps, noisy)
    clean = mean + a * variance / (a * a * variance + b * b) * (noisy - a * mean)
    return target_from_clean(scheduler, noisy, timesteps, clean)
