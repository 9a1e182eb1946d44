"""The two objectives a latent generator trains with, named by its diffusers scheduler, and the samplers of each.

- "diffusion": a DDPM-family scheduler (`DDPMScheduler`, `DDIMScheduler`, ...) with `alphas_cumprod`; the model
  predicts its `prediction_type` (epsilon, v_prediction or sample) at integer timesteps in [0, T) (DiT, LDM).
- "flow": `FlowMatchEulerDiscreteScheduler`'s linear path `x_t = (1 - s) x_0 + s n` at timestep `s T`; the model
  predicts the velocity `n - x_0` (SiT's linear path and velocity, in diffusers' direction: s = 1 is noise).

A sampler is a name for the scheduler that draws samples, built from the training scheduler's config, so that
its betas or shift are the ones the model was trained with.
"""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

OBJECTIVES = ("diffusion", "flow")
SAMPLERS: dict[str, dict[str, type[SchedulerMixin]]] = {
    "diffusion": {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "dpm": DPMSolverMultistepScheduler,
                  "euler": EulerDiscreteScheduler},
    "flow": {"euler": FlowMatchEulerDiscreteScheduler, "heun": FlowMatchHeunDiscreteScheduler},
}
DEFAULT_SAMPLER = {"diffusion": "ddim", "flow": "euler"}
SAMPLER_NAMES = tuple(sorted({name for names in SAMPLERS.values() for name in names}))


def objective_of(scheduler: SchedulerMixin) -> str:
    """"flow" for diffusers' flow-matching schedulers, "diffusion" for those with `alphas_cumprod`; else an error."""
    if type(scheduler).__name__.startswith("FlowMatch"):
        return "flow"
    if hasattr(scheduler, "alphas_cumprod"):
        return "diffusion"
    raise ValueError(f"{type(scheduler).__name__} is neither a DDPM-family scheduler (with alphas_cumprod) nor a "
                     "flow-matching one: a latent generator trains with DDPMScheduler or FlowMatchEulerDiscreteScheduler.")


def sampler_name(scheduler: SchedulerMixin) -> str:
    """The sampler name of a scheduler instance ("ddim", "euler", ...), or its class name if it has none here."""
    objective = objective_of(scheduler)
    return next((name for name, cls in SAMPLERS[objective].items() if type(scheduler) is cls),
                type(scheduler).__name__)


def make_sampler(scheduler: SchedulerMixin, name: str | None = None) -> SchedulerMixin:
    """The scheduler that samples with `name` (default: DDIM for diffusion, Euler for flow) from the training
    scheduler's config (its betas, shift and spacing); a ValueError names the samplers of the objective."""
    objective = objective_of(scheduler)
    name = name or DEFAULT_SAMPLER[objective]
    choices = SAMPLERS[objective]
    if name not in choices:
        raise ValueError(f"sampler {name!r} does not sample a {objective} model: choose one of {', '.join(choices)}.")
    cls = choices[name]
    # DiT's learned variance (`variance_type` learned_range) is DDPM's alone: DDIM and Euler would get 2d channels
    # and DPM-Solver cuts its output to 3 channels (diffusers hard-codes SD's), so the others sample with its mean.
    extra = {"variance_type": None} if cls is not DDPMScheduler and "variance_type" in scheduler.config else {}
    return cls.from_config(scheduler.config, **extra)


def uses_learned_variance(scheduler: SchedulerMixin) -> bool:
    """Whether the sampler's step takes DiT's 2d outputs (noise and variance range): DDPM with a learned variance."""
    return isinstance(scheduler, DDPMScheduler) and scheduler.config.get("variance_type") in ("learned",
                                                                                               "learned_range")
