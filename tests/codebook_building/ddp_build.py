"""Run by tests under `torch.distributed.run`: fvq-build-codebook's build of the tiny tokenizer's features over the
image folder argv[2] (3 random crops an image, 70 samples per class, K = 20), each process its share, into argv[3]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from fvq_hf.codebook_building import CodebookBuildConfig, build_codebook  # noqa: E402

if __name__ == "__main__":
    import torch.distributed

    result = build_codebook(CodebookBuildConfig(encoder=sys.argv[1], data=sys.argv[2], output=sys.argv[3],
                                                codebook_size=20, pool=2, random_crops=3, samples_per_group=70,
                                                num_workers=0, overwrite=True))
    from accelerate import PartialState

    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    state = PartialState()  # the build's: its processes, as the build saw them
    sys.stdout.write(f"RANK {rank} WORLD {world} {tuple(result.table.shape)} STATE {state.process_index} "
                     f"{state.num_processes}\n")
