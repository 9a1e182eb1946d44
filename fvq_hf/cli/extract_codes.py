r"""`fvq-extract-codes`: a data set encoded by a trained FVQModel into a codes folder (read by `TokenDataset`).

    # CPU: 200 random crops of each builtin photo (each photo is a class), each crop and its mirror image
    fvq-extract-codes --tokenizer outputs/fvq-cpu-4k/model-folded --data builtin --random-crops 200 \
        --output-dir outputs/codes-cpu-4k
    # 8 GPUs, ImageNet in class folders: one centre crop per image and its flip, as LlamaGen's extract_codes_c2i
    accelerate launch --multi_gpu --num_processes 8 -m fvq_hf.cli.extract_codes --tokenizer org/fvq-262k \
        --data /data/imagenet/train --output-dir codes/imagenet-256

A codes folder holds, per process R, `codes-R.npy` `(N_R, A, h, w)` token ids (uint16 when K <= 65536, else
int32) with A views per sample (the image and its horizontal flip, the paper's augmentation; 1 with
`--no-flip`) and `labels-R.npy` `(N_R,)`; with `--latents` also `latents-R.npy` `(N_R, A, d, h, w)` float32
pre-quantization latents (for `fvq-train-latent`); then `meta.json` (tokenizer, codebook size, grid, classes, shards).
Every file is written under a temporary name and renamed when complete, `meta.json` last: a folder
without it is an interrupted extraction and is refused.
"""

from __future__ import annotations

import argparse
import logging

from ..training.codes import extract_codes
from .errors import add_debug_flag, run_command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fvq-extract-codes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="trained FVQModel folder or hub id")
    parser.add_argument("--data", default="builtin", help="builtin[:split], an image folder (class sub-folders), a "
                        "saved dataset, hf:<name>[:split], or webdataset tar shards ('shards/{000..099}.tar', streamed)")
    parser.add_argument("--streaming", action="store_true", help="read hf:<name> as a stream (each process reads its "
                        "share once; classes from --label-column)")
    parser.add_argument("--split", default="train", help="split of a datasets dataset")
    parser.add_argument("--image-column", help="image column of a datasets dataset")
    parser.add_argument("--label-column", help="class column of a dataset or a stream (default: the first ClassLabel; "
                        "a stream without one is one class)")
    parser.add_argument("--num-classes", type=int, help="a stream whose label column holds integers (webdataset .cls "
                        "files): the number of classes")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resolution", type=int, help="crop size (default: the tokenizer's sample_size)")
    parser.add_argument("--random-crops", type=int, help="random multi-scale crops per image (default: one centre crop)")
    parser.add_argument("--no-flip", action="store_true", help="do not add the horizontally flipped view")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace codes already in --output-dir")
    parser.add_argument("--latents", action="store_true", help="also write each view's pre-quantization latents "
                        "(float32, d x h x w per view), for fvq-train-latent")
    add_debug_flag(parser)
    run_command(parser, argv, command)


def command(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    extract_codes(args.tokenizer, args.data, args.output_dir, split=args.split, resolution=args.resolution,
                  random_crops=args.random_crops, flip=not args.no_flip, batch_size=args.batch_size,
                  num_workers=args.num_workers, seed=args.seed, image_column=args.image_column,
                  label_column=args.label_column, overwrite=args.overwrite,
                  latents=args.latents, streaming=args.streaming, num_classes=args.num_classes)


if __name__ == "__main__":
    main()
