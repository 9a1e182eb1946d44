"""Run by tests under `torch.distributed.run`: train, then print this rank's view of the result."""

import hashlib
import sys

import torch

from fvq_hf.cli.train import parse_args
from fvq_hf.training.trainer import train

if __name__ == "__main__":
    result = train(parse_args(sys.argv[1:]))
    weights = torch.cat([p.detach().flatten() for p in result["model"].parameters()])
    digest = hashlib.sha256(weights.numpy().tobytes()).hexdigest()[:16]
    print(f"RANK {result['rank']} WORLD {result['world_size']} USAGE {result['usage_rolling']:.6f} WEIGHTS {digest}",
          flush=True)
