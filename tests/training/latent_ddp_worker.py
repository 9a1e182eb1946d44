"""Run by tests under `torch.distributed.run`: train a latent generator with fvq-train-latent's flags, then print this
rank's view of the result."""

import hashlib
import sys

import torch

from fvq_hf.cli.train_latent import build_config
from fvq_hf.training.latent_trainer import train

if __name__ == "__main__":
    result = train(build_config(sys.argv[1:]))
    digest = hashlib.sha256(torch.cat([p.detach().flatten() for p in result.model.parameters()]).numpy().tobytes())
    sys.stdout.write(f"RANK {result.rank} WORLD {result.world_size} WEIGHTS {digest.hexdigest()[:16]} "
                     f"SCALE {result.scaling_factor:.9g} STEP {result.step} NOISE_SEED {torch.initial_seed()}\n")
