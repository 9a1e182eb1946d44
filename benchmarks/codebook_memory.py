"""What bounds `fvq-build-codebook`'s memory: the per-group sample cap, not the data. The builtin photos scaled up by
repetition (more random crops each), the same cap: the vectors offered grow with the crops, what is held does not.

Each size runs in a fresh process: its peak RSS (the whole process: torch, the encoder, the DataLoader), the peak of
the memory `tracemalloc` sees (numpy arrays and Python objects: the sampler, each batch's pooled vectors and keys;
not torch tensors), the vectors offered and held, and the time.

    python benchmarks/codebook_memory.py --encoder outputs/fvq-cpu-4k/model --crops 25 100 400
    python benchmarks/codebook_memory.py --quick       # an untrained fvq-cpu-4k, 2 and 8 crops a photo
    # 100k and 1M images (7,143 and 71,429 crops of each of the 14 photos) into a 100,000-code table, per class, as
    # VQGAN-LC's: an untrained 16 px encoder (16-d features, 8 x 8 pooled 2 x 2 to 16 vectors an image, as their
    # 16 x 16 -> 4 x 4), cap 100,000 vectors a group
    python benchmarks/codebook_memory.py --encoder tiny --crops 7143 71429 --pool 2 --groups classes \
        --codebook-size 100000 --samples-per-group 100000 --kmeans-iterations 5 --json benchmarks/codebook_memory_1m.json

"Images encoded" counts the crops (each random crop is one image through the encoder). The DataLoader's workers are
processes of their own: their peak RSS is reported apart (the largest of them).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import in_fresh_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# `--encoder tiny`: an untrained FVQModel whose encoder is cheap enough for a million images on a laptop CPU.
TINY = dict(block_out_channels=[16, 16], layers_per_block=1, latent_channels=16, norm_num_groups=8, sample_size=16,
            num_vq_embeddings=256, vq_embed_dim=8)


def _build(encoder: str, crops: int, args: dict, output: str) -> dict:
    from fvq_hf.codebook_building import CodebookBuildConfig, build_codebook

    tracemalloc.start()
    start = time.perf_counter()
    result = build_codebook(CodebookBuildConfig(encoder=encoder, data="builtin", output=output, random_crops=crops,
                                                overwrite=True, **args))
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    held, offered = json.loads(result.metadata["samples_per_group"]), json.loads(result.metadata["vectors_per_group"])
    dim = int(result.metadata["feature_dim"])
    return {"crops": crops, "offered": sum(offered), "held": sum(held), "held_mib": sum(held) * (4 * dim + 8) / 2**20,
            "all_features_mib": sum(offered) * 4 * dim / 2**20, "traced_peak_mib": traced_peak / 2**20,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "seconds": seconds,
            "images": sum(offered) // math.prod(json.loads(result.metadata["pooled_grid"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", help="encoder folder or hub id, or `tiny` (default: an untrained fvq-cpu-4k)")
    parser.add_argument("--crops", type=int, nargs="+", default=[25, 100, 400], help="random crops per photo")
    parser.add_argument("--pool", type=int, default=1)
    parser.add_argument("--groups", default="global")
    parser.add_argument("--codebook-size", type=int, default=4096)
    parser.add_argument("--samples-per-group", type=int, default=20_000)
    parser.add_argument("--kmeans-iterations", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 and 8 crops, K = 256, cap 2,000")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    if args.quick:
        args.crops, args.codebook_size, args.samples_per_group = [2, 8], 256, 2_000
    build = dict(pool=args.pool, groups=args.groups, codebook_size=args.codebook_size,
                 samples_per_group=args.samples_per_group, kmeans_iterations=args.kmeans_iterations)
    with tempfile.TemporaryDirectory() as tmp:
        encoder = args.encoder
        if encoder in (None, "tiny"):
            import torch

            from fvq_hf import FVQModel

            torch.manual_seed(0)
            config = TINY if encoder == "tiny" else FVQModel.load_config(ROOT / "hub_configs" / "fvq-cpu-4k")
            FVQModel.from_config(config).save_pretrained(tmp)
            encoder = tmp
        rows = [in_fresh_process(_build, encoder, crops, build, f"{tmp}/table.safetensors") for crops in args.crops]
    print(f"fvq-build-codebook memory, {args.groups}, pool {args.pool}, K = {args.codebook_size}, cap "
          f"{args.samples_per_group:,} per group, encoder {args.encoder or 'fvq-cpu-4k (untrained)'}\n")
    print("| crops / photo | images encoded | vectors offered | held | held MiB | all features MiB | traced peak MiB | peak RSS MiB "
          "| worker peak RSS MiB | s |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r} |")
            continue
        print(f"| {r['crops']} | {r['images']:,} | {r['offered']:,} | {r['held']:,} | {r['held_mib']:.1f} | {r['all_features_mib']:.1f} "
              f"| {r['traced_peak_mib']:.1f} | {r['peak_rss_mib']:.0f} | {r['worker_peak_rss_mib']:.0f} | {r['seconds']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
