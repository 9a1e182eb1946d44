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

    diffusion: t uniform over the T training steps, `x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) n` from the
    scheduler's betas (whichever DDPM-family scheduler holds them: a saved pipeline's sampler trains as its training
    scheduler did), target by `prediction_type`; flow: s uniform in [0, 1), `x_t = (1 - s) x_0 + s n` at timestep
    `s T`, target `n - x_0`. Draws use `generator` (the global RNG when None, which checkpoints restore).
    """
    device, batch = latents.device, latents.shape[0]
    draw_on = generator.device if generator is not None else device
    noise = torch.randn(latents.shape, generator=generator, device=draw_on).to(latents)
    steps = scheduler.config.num_train_timesteps
    if objective_of(scheduler) == "flow":
        timesteps = torch.rand(batch, generator=generator, device=draw_on).to(device) * steps
    else:
        timesteps = torch.randint(0, steps, (batch,), generator=generator, device=draw_on).to(device)
    a, b = path_coefficients(scheduler, timesteps, latents)
    return a * latents + b * noise, timesteps, target_of(scheduler, latents, noise, timesteps)


def target_of(scheduler: SchedulerMixin, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
              ) -> torch.Tensor:
    """The training target for `clean` latents and `noise` at `timesteps`: epsilon -> noise, v_prediction ->
    `a n - b x_0`, sample -> `x_0`; flow -> `n - x_0`."""
    if objective_of(scheduler) == "flow":
        return noise - clean
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        a, b = path_coefficients(scheduler, timesteps, clean)
        return a * noise - b * clean
    if kind == "sample":
        return clean
    raise ValueError(f"prediction_type {kind!r} of {type(scheduler).__name__} is not trained here "
                     "(epsilon, v_prediction or sample).")


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
    `timesteps` (its noise estimate follows from the path): a baseline with no network (`gaussian_denoiser`)."""
    a, b = path_coefficients(scheduler, timesteps, noisy)
    return target_of(scheduler, clean, (noisy - a * clean) / b.clamp_min(1e-6), timesteps)


def gaussian_denoiser(scheduler: SchedulerMixin, noisy: torch.Tensor, timesteps: torch.Tensor, mean: torch.Tensor,
                      variance: torch.Tensor) -> torch.Tensor:
    """The optimal prediction if each value of `x_0` were Gaussian with `mean` and `variance` (both like `noisy`,
    e.g. its class's per-position statistics): `E[x_0 | x_t] = m + a v / (a^2 v + b^2) (x_t - a m)`, as a target."""
    a, b = path_coefficients(scheduler, timesteps, noisy)
    clean = mean + a * variance / (a * a * variance + b * b) * (noisy - a * mean)
    return target_from_clean(scheduler, noisy, timesteps, clean)
