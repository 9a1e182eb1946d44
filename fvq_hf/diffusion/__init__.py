"""Latent diffusion and flow generators on the tokenizer's continuous latents (VQGAN-LC's DiT-LC, SiT-LC and LDM-LC
route): the objectives and samplers (`schedulers`, `objectives`) and the diffusers denoisers they train
(`generators`). The pipeline is `fvq_hf.pipelines.FVQLatentPipeline`; the trainer `fvq-train-latent`."""

from .generators import GENERATORS, conditioning, predict, register_generator
from .objectives import target_from_clean, training_pair
from .schedulers import DEFAULT_SAMPLER, OBJECTIVES, SAMPLERS, make_sampler, objective_of

__all__ = ["DEFAULT_SAMPLER", "GENERATORS", "OBJECTIVES", "SAMPLERS", "conditioning", "make_sampler", "objective_of",
           "predict", "register_generator", "target_from_clean", "training_pair"]
