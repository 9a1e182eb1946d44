"""Latent diffusion and flow generators on the tokenizer's continuous latents (VQGAN-LC's DiT-LC, SiT-LC and LDM-LC
route): the objectives and samplers (`schedulers`, `objectives`), the diffusers denoisers they train (`generators`),
DiT with the original code's timestep embedding (`dit`) and the conversion of VQGAN-LC's released DiT-LC / SiT-LC
checkpoints (`conversion`). The pipeline is `fvq_hf.pipelines.FVQLatentPipeline`; the trainer `fvq-train-latent`."""

from .conversion import convert_latent_generator, save_latent_generator
from .dit import MappedTimesteps, TimeMappedDiTTransformer2DModel
from .generators import GENERATORS, conditioning, predict, register_generator
from .objectives import target_from_clean, training_pair
from .schedulers import DEFAULT_SAMPLER, OBJECTIVES, SAMPLERS, make_sampler, objective_of

__all__ = ["DEFAULT_SAMPLER", "GENERATORS", "OBJECTIVES", "SAMPLERS", "MappedTimesteps", "TimeMappedDiTTransformer2DModel",
           "conditioning", "convert_latent_generator", "make_sampler", "objective_of", "predict", "register_generator",
           "save_latent_generator", "target_from_clean", "training_pair"]
