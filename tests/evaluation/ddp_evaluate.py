"""Run by tests under `torch.distributed.run`: evaluate the tiny multi-scale tokenizer (plain VQ) on 5 seeded images,
each process its shard, and write this rank's results and code counts to `rank<r>.json` in the folder argv[1]."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `tests` as a package
from fvq_hf.evaluation.evaluate import evaluate  # noqa: E402
from tests.helpers import random_images, typed_model  # noqa: E402

if __name__ == "__main__":
    torch.distributed.init_process_group("gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model = typed_model("multiscale", "none").eval()
    results, counter = evaluate(model, list(random_images(5, model.config.sample_size)), batch_size=2)
    saved = {"results": results, "counts": [counts.tolist() for counts in counter.tensors()]}
    Path(sys.argv[1], f"rank{rank}.json").write_text(json.dumps(saved))
    torch.distributed.destroy_process_group()
    sys.stdout.write(f"RANK {rank} WORLD {world}\n")
