"""Run by tests under `torch.distributed.run`: each rank quantizes its half of a fixed batch with an EMA table
(`table_update="ema"`) in training mode, twice, and saves the table and its statistics to `<out>/rank<r>.pt`."""

import sys

import torch
import torch.distributed as dist

from fvq_hf.quantizers import quantizer_class

if __name__ == "__main__":
    quantizer_type, out = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    quantizer = quantizer_class(quantizer_type).build(64, 4, {"depth": 2} if quantizer_type == "residual" else {},
                                                      table_update="ema").train()
    latents = torch.randn(4, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * 0.05
    for _ in range(2):
        quantizer(latents.chunk(world)[rank])
    torch.save({"table": quantizer.embedding.weight.detach(), **quantizer.ema.state_dict()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()
    sys.stdout.write(f"RANK {rank} WORLD {world}\n")
