"""Run by tests under `torch.distributed.run`: train, then print this rank's view of the result."""

import hashlib
import sys

import torch

from fvq_hf.cli.train import build_config
from fvq_hf.data.spec import DataSpec
from fvq_hf.data.streams import StreamedCrops, open_stream
from fvq_hf.training.trainer import train


def tensors_digest(tensors) -> str:
    return hashlib.sha256(torch.cat([t.detach().flatten() for t in tensors]).numpy().tobytes()).hexdigest()[:16]


def shards_read(data: DataSpec, rank: int, world_size: int) -> str:
    """With tar shards: " SHARDS 000,001", the shards this rank's stream reads (keys are NNN-MMM)."""
    if not data.streaming:
        return ""
    stream, column = open_stream(data)
    keys = [key for key, _ in StreamedCrops(stream, column, 8, rank=rank, world_size=world_size).examples()]
    return " SHARDS " + ",".join(sorted({key.split("-")[0] for key in keys}))


if __name__ == "__main__":
    config = build_config(sys.argv[1:])  # fvq-train's flags, as the command builds its config
    result = train(config)
    digest = tensors_digest(result.model.parameters())
    ema = tensors_digest(result.ema.shadow_params) if result.ema else None
    evaluation = next(iter(result.eval.values()), {})
    line = (f"RANK {result.rank} WORLD {result.world_size} USAGE {result.usage_rolling:.6f} WEIGHTS {digest} "
            f"EVAL {evaluation.get('num_tokens')} {evaluation.get('usage')} {evaluation.get('psnr')}"
            f"{shards_read(config.data, result.rank, result.world_size)} EMA {ema}")
    sys.stdout.write(line + "\n")  # one write: torchrun runs workers unbuffered, and print writes the end apart
