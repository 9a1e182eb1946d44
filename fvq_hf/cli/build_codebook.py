r"""`fvq-build-codebook`: a codebook table from a frozen pretrained encoder's pooled features, k-means per class or
global, as VQGAN-LC builds its codebook (see `fvq_hf.codebook_building`); `fvq-train --init-table` reads it.

    # CPU: the main job's tokenizer encoder (8 x 8 x 64 at 64 px), 2 x 2 pooling, one global k-means of 161,280 vectors
    fvq-build-codebook --encoder outputs/fvq-cpu-4k/model --data builtin --random-crops 720 --pool 2 \
        --groups global --codebook-size 4096 --samples-per-group 200000 --output tables/cpu-4k.safetensors
    # VQGAN-LC's codebook: CLIP ViT-L/14 patch tokens (16 x 16 x 768), 4 x 4 pooling, 100 centres per class of 1,000
    accelerate launch --multi_gpu --num_processes 8 -m fvq_hf.cli.build_codebook \
        --encoder openai/clip-vit-large-patch14 --data /data/imagenet/train --pool 4 --groups classes \
        --codebook-size 100000 --output tables/clip-L-100k.safetensors

Memory: each process keeps at most --samples-per-group vectors per group (4 D + 8 bytes each), never all features.
"""

from __future__ import annotations

import argparse
import logging

from ..codebook_building import GROUPINGS, CodebookBuildConfig, build_codebook
from .errors import add_debug_flag, run_command


def main(argv: list[str] | None = None) -> None:
    defaults = {f: getattr(CodebookBuildConfig, f, None) for f in CodebookBuildConfig.__dataclass_fields__}
    p = argparse.ArgumentParser(prog="fvq-build-codebook", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", required=True, help="a transformers CLIP model (folder or hub id; its vision tower's "
                   "projected patch tokens), or an FVQModel folder or hub id (its encoder's features)")
    p.add_argument("--data", default="builtin", help="builtin[:split], an image folder (class sub-folders), a saved "
                   "dataset, hf:<name>[:split], or webdataset tar shards ('shards/{000..099}.tar', streamed)")
    p.add_argument("--streaming", action="store_true", help="read hf:<name> as a stream")
    p.add_argument("--split", default=defaults["split"], help="split of a datasets dataset")
    p.add_argument("--image-column", help="image column of a datasets dataset (default: the first Image column)")
    p.add_argument("--label-column", help="class column of a dataset or stream (default for a dataset: the first "
                   "ClassLabel)")
    p.add_argument("--output", required=True, help="the table file to write (.safetensors)")
    p.add_argument("--codebook-size", type=int, required=True, help="K, the table's rows (per class: K / classes each)")
    p.add_argument("--pool", type=int, default=defaults["pool"], help="average-pool the feature grid in pool x pool "
                   "cells (VQGAN-LC: 4, CLIP's 16 x 16 grid to 4 x 4); must divide the grid")
    p.add_argument("--groups", choices=GROUPINGS, default=defaults["groups"], help="k-means per class (VQGAN-LC's "
                   "default; each builtin photo is a class) or one global k-means")
    p.add_argument("--samples-per-group", type=int, default=defaults["samples_per_group"], help="cap on the pooled "
                   "vectors kept per group, a uniform sample (the memory bound)")
    p.add_argument("--random-crops", type=int, help="random multi-scale crops per image (default: one centre crop)")
    p.add_argument("--kmeans-iterations", type=int, default=defaults["kmeans_iterations"], help="most Lloyd steps "
                   "(fewer when the centres stop moving); 0: no k-means, a random selection of the samples (VQGAN-LC's "
                   "'random selection' ablation)")
    p.add_argument("--seed", type=int, default=defaults["seed"])
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    p.add_argument("--num-workers", type=int, default=defaults["num_workers"])
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    add_debug_flag(p)
    run_command(p, argv, command)


def command(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which of its CPU builds loads, at INFO
    build_codebook(CodebookBuildConfig(
        encoder=args.encoder, data=args.data, output=args.output, codebook_size=args.codebook_size, pool=args.pool,
        groups=args.groups, samples_per_group=args.samples_per_group, kmeans_iterations=args.kmeans_iterations,
        seed=args.seed, random_crops=args.random_crops, split=args.split, streaming=args.streaming,
        image_column=args.image_column, label_column=args.label_column, batch_size=args.batch_size,
        num_workers=args.num_workers, overwrite=args.overwrite))


if __name__ == "__main__":
    main()
