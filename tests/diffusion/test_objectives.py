import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler

from fvq_hf.diffusion import make_sampler, objective_of, target_from_clean, training_pair
from fvq_hf.diffusion.objectives import gaussian_denoiser, path_coefficients

SCHEDULERS = {"epsilon": DDPMScheduler(prediction_type="epsilon"), "v": DDPMScheduler(prediction_type="v_prediction"),
              "sample": DDPMScheduler(prediction_type="sample"), "flow": FlowMatchEulerDiscreteScheduler()}


def test_the_flow_pair_is_the_linear_path_with_diffusers_velocity():
    x = torch.randn(4, 3, 2, 2)
    generator = torch.Generator().manual_seed(0)
    noisy, t, target = training_pair(SCHEDULERS["flow"], x, generator)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=generator)
    s = torch.rand(4, generator=generator)
    assert torch.allclose(t, s * 1000)
    assert torch.allclose(noisy, (1 - s.view(-1, 1, 1, 1)) * x + s.view(-1, 1, 1, 1) * noise)
    assert torch.allclose(target, noise - x)
    # diffusers' Euler step with the true velocity lands on the clean latents from any sigma
    scheduler = make_sampler(SCHEDULERS["flow"])
    scheduler.set_timesteps(1)
    one = noisy[:1] * 0 + noise[:1]  # sigma = 1: pure noise
    assert torch.allclose(scheduler.step(noise[:1] - x[:1], scheduler.timesteps[0], one).prev_sample, x[:1], atol=1e-5)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_a_denoiser_that_knows_the_clean_latents_predicts_the_target(name):
    scheduler = SCHEDULERS[name]
    x = torch.randn(6, 3, 4, 4)
    noisy, t, target = training_pair(scheduler, x, torch.Generator().manual_seed(1))
    # timesteps near 0 divide by a tiny noise scale: compare relatively
    assert torch.allclose(target_from_clean(scheduler, noisy, t, x), target, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["epsilon", "flow"])
def test_the_gaussian_denoiser_beats_the_mean_on_gaussian_data(name):
    scheduler = SCHEDULERS[name]
    mean, std = torch.randn(1, 2, 4, 4), 0.5
    x = mean + std * torch.randn(512, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    noisy, t, target = training_pair(scheduler, x, torch.Generator().manual_seed(3))
    means, variances = mean.expand_as(x), torch.full_like(x, std ** 2)
    gaussian = torch.mean((gaussian_denoiser(scheduler, noisy, t, means, variances) - target) ** 2)
    mean_only = torch.mean((target_from_clean(scheduler, noisy, t, means) - target) ** 2)
    assert gaussian < mean_only
    # with no variance it is the mean's prediction
    assert torch.allclose(gaussian_denoiser(scheduler, noisy, t, means, torch.zeros_like(x)),
                          target_from_clean(scheduler, noisy, t, means))


@pytest.mark.parametrize("name", ["sample", "flow"])
def test_the_gaussian_denoiser_is_the_posterior_mean_by_quadrature(name):
    """E[x_0 | x_t] for x_0 ~ N(m, v), integrated numerically over a grid of x_0, at timesteps across the range."""
    scheduler = SCHEDULERS[name]
    m, v = 0.7, 0.3
    t = torch.tensor([50, 300, 600, 900, 990]).double() if name == "sample" else torch.tensor([50., 300, 600, 900])
    noisy = torch.tensor([-1.0, 0.2, 0.9, 2.5]).double()
    grid = torch.linspace(m - 12 * v ** 0.5, m + 12 * v ** 0.5, 40001, dtype=torch.float64)
    for step in t:
        steps = step.reshape(1)
        a, b = path_coefficients(scheduler, steps.long() if name == "sample" else steps, noisy[:1])
        a, b = a.double().item(), b.double().item()
        for x in noisy:
            weight = torch.exp(-(grid - m) ** 2 / (2 * v) - (x - a * grid) ** 2 / (2 * b * b))
            expected = (grid * weight).sum() / weight.sum()
            ones = torch.ones(1, dtype=torch.float64)
            clean = gaussian_denoiser(scheduler, x.reshape(1), steps.long() if name == "sample" else steps,
                                      m * ones, v * ones)
            if name == "flow":  # the target is v = n - x_0, and x_t = x_0 + s v
                clean = x - step / 1000 * clean
            assert clean.item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-6), (step, x)


def test_objectives_and_samplers_are_named_by_the_scheduler():
    assert objective_of(DDPMScheduler()) == "diffusion" and objective_of(FlowMatchEulerDiscreteScheduler()) == "flow"
    assert isinstance(make_sampler(DDPMScheduler()), DDIMScheduler)
    assert make_sampler(DDPMScheduler(beta_end=0.03), "ddpm").config.beta_end == 0.03  # the training betas
    with pytest.raises(ValueError, match="does not sample a flow model: choose one of euler, heun"):
        make_sampler(FlowMatchEulerDiscreteScheduler(), "ddim")
    with pytest.raises(ValueError, match="neither a DDPM-family"):
        objective_of(object())
