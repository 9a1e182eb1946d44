"""Run by tests under `torch.distributed.run`: train a latent generator with fvq-train-latent's flags, then print this
rank's view of the result as `RANK r WORLD w KEY value ...` (the EVAL value: compact JSON)."""

import hashlib
import json
import sys

import torch

from fvq_hf.cli.train_latent import build_config
from fvq_hf.training import latent_evaluation, latent_trainer

if __name__ == "__main__":
    calls = []
    predict = latent_trainer.predict

    def counted(model, *args, **kwargs):  # this process's model calls: training steps and held-out evaluation
        calls.append(1)
        return predict(model, *args, **kwargs)

    latent_trainer.predict = latent_evaluation.predict = counted  # the step's and the evaluation's
    result = latent_trainer.train(build_config(sys.argv[1:]))
    digest = hashlib.sha256(torch.cat([p.detach().flatten() for p in result.model.parameters()]).numpy().tobytes())
    sys.stdout.write(f"RANK {result.rank} WORLD {result.world_size} WEIGHTS {digest.hexdigest()[:16]} "
                     f"SCALE {result.scaling_factor:.9g} STEP {result.step} NOISE_SEED {torch.initial_seed()} "
                     f"PREDICTS {len(calls)} EVAL {json.dumps(result.eval, separators=(',', ':'))}\n")
