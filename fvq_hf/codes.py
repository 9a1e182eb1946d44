"""`fvq-extract-codes`: a data set encoded by a trained FVQModel into a codes folder (read by `TokenDataset`).

    # CPU: 200 random crops of each builtin photo (each photo is a class), each crop and its mirror image
    fvq-extract-codes --tokenizer outputs/fvq-cpu-4k/model-folded --data builtin --random-crops 200 \
        --output-dir outputs/codes-cpu-4k
    # 8 GPUs, ImageNet in class folders: one centre crop per image and its flip, as LlamaGen's extract_codes_c2i
    accelerate launch --multi_gpu --num_processes 8 -m fvq_hf.codes --tokenizer org/fvq-262k \
        --data /data/imagenet/train --output-dir codes/imagenet-256

A codes folder holds, per process R, `codes-R.npy` `(N_R, A, h, w)` token ids (uint16 when K <= 65536, else
int32) with A views per sample (the image and its horizontal flip, the paper's augmentation; 1 with
`--no-flip`) and `labels-R.npy` `(N_R,)`, then `meta.json` (tokenizer, codebook size, grid, classes, shards).
Every file is written under a temporary name and renamed when complete, `meta.json` last: a folder
without it is an interrupted extraction and is refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .cli import add_debug_flag, run_command
from .data import RandomCrops, class_labels, open_source, readable
from .image_io import pil_to_tensor, resize_center_crop
from .models import FVQModel
from .token_dataset import META_FILE

logger = logging.getLogger("fvq_hf.codes")
def atomic_save(path: Path, array: np.ndarray) -> None:
    """`np.save` under a temporary name, renamed when complete."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as file:
        np.save(file, array)
    os.replace(tmp, path)


class ExtractionImages(Dataset):
    """Item i: `(image (3, R, R) in [-1, 1], label)`, or None for an unreadable file (skipped, not relabelled).

    Without `random_crops`: one centre crop per image. With it: that many random multi-scale crops per image
    (`RandomCrops` without its flip; the flip is added explicitly as a second view).
    """

    def __init__(self, source, labels: list[int], resolution: int, random_crops: int | None, seed: int) -> None:
        self.source, self.labels, self.resolution = source, labels, resolution
        self.crops = RandomCrops(source, resolution, random_crops * len(source), seed, flip=False) if random_crops \
            else None

    def __len__(self) -> int:
        return len(self.crops) if self.crops else len(self.source)

    def __getitem__(self, index: int):
        image = readable(self.source, index % len(self.source))
        if image is None:
            return None
        tensor = self.crops.crop(image, index) if self.crops else pil_to_tensor(
            resize_center_crop(image, self.resolution))
        return tensor, self.labels[index % len(self.source)]


def collate_readable(items):
    items = [item for item in items if item is not None]
    if not items:
        return None
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


@torch.no_grad()
def extract_codes(tokenizer: str, data: str, output_dir: str | Path, *, split: str = "train", resolution: int | None = None,
                  random_crops: int | None = None, flip: bool = True, batch_size: int = 64, num_workers: int = 2,
                  seed: int = 0, image_column: str | None = None, label_column: str | None = None,
                  overwrite: bool = False) -> dict:
    """Encode `data` with the tokenizer into a codes folder (see module docstring); returns its meta."""
    from accelerate import Accelerator

    accelerator = Accelerator()
    out = Path(output_dir)
    if (out / META_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds extracted codes; choose another --output-dir or pass --overwrite.")
    model = FVQModel.from_pretrained(tokenizer)
    model.require_one_code_per_position("code files and the generator")
    if model.quantizer.bridge is not None:
        model = model.fold_bridge()  # the same indices, without the bridge's cost
    model = model.eval().to(accelerator.device)
    resolution = resolution or model.config.sample_size
    if resolution % model.downsample_factor:
        raise ValueError(f"--resolution {resolution} is not a multiple of the downsample factor {model.downsample_factor}.")
    source = open_source(data, split, image_column)
    labels, class_names = class_labels(source, label_column)
    images = ExtractionImages(source, labels, resolution, random_crops, seed)
    share = torch.utils.data.Subset(images, range(accelerator.process_index, len(images), accelerator.num_processes))
    loader = DataLoader(share, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_readable)
    if accelerator.is_main_process:
        if overwrite and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    dtype = np.uint16 if model.codebook_size <= 2**16 else np.int32
    codes, sample_labels = [], []
    from tqdm.auto import tqdm

    for batch in tqdm(loader, desc="extracting codes", disable=not accelerator.is_local_main_process):
        if batch is None:
            continue
        pixels, batch_labels = batch
        pixels = pixels.to(accelerator.device)
        views = [pixels, pixels.flip(-1)] if flip else [pixels]
        codes.append(torch.stack([model.tokenize(v) for v in views], dim=1).cpu().numpy().astype(dtype))
        sample_labels.append(batch_labels.numpy().astype(np.int64))
    h, w = model.token_grid_size(resolution, resolution)
    rank = f"{accelerator.process_index:05d}"
    atomic_save(out / f"codes-{rank}.npy", np.concatenate(codes) if codes else np.zeros((0, 1 + flip, h, w), dtype))
    atomic_save(out / f"labels-{rank}.npy", np.concatenate(sample_labels) if sample_labels else np.zeros(0, np.int64))
    accelerator.wait_for_everyone()
    meta = {
        "tokenizer": str(Path(tokenizer).resolve()) if Path(tokenizer).is_dir() else str(tokenizer),
        "codebook_size": model.codebook_size, "token_grid_size": [h, w], "resolution": resolution,
        "num_classes": len(class_names), "class_names": class_names,
        "views": ["image", "hflip"] if flip else ["image"], "data": data, "split": split,
        "random_crops": random_crops, "seed": seed,
        "shards": [f"{i:05d}" for i in range(accelerator.num_processes)],
    }
    if accelerator.is_main_process:
        meta["num_samples"] = sum(len(np.load(out / f"labels-{r}.npy", mmap_mode="r")) for r in meta["shards"])
        tmp = out / f".tmp-{META_FILE}"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, out / META_FILE)
        logger.info("Wrote %d samples x %d views of %dx%d tokens (%d classes) to %s.", meta["num_samples"],
                    len(meta["views"]), h, w, len(class_names), out)
    accelerator.wait_for_everyone()
    return meta


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fvq-extract-codes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="trained FVQModel folder or hub id")
    parser.add_argument("--data", default="builtin", help="builtin[:split], an image folder (class sub-folders), a "
                        "saved dataset, or hf:<name>[:split]")
    parser.add_argument("--split", default="train", help="split of a datasets dataset")
    parser.add_argument("--image-column", help="image column of a datasets dataset")
    parser.add_argument("--label-column", help="class column of a datasets dataset (default: the first ClassLabel)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resolution", type=int, help="crop size (default: the tokenizer's sample_size)")
    parser.add_argument("--random-crops", type=int, help="random multi-scale crops per image (default: one centre crop)")
    parser.add_argument("--no-flip", action="store_true", help="do not add the horizontally flipped view")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace codes already in --output-dir")
    add_debug_flag(parser)
    run_command(parser, argv, command)


def command(args: argparse.Namespace) -> None:
    if args.random_crops is not None and args.random_crops < 1:
        raise ValueError("--random-crops must be >= 1.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    extract_codes(args.tokenizer, args.data, args.output_dir, split=args.split, resolution=args.resolution,
                  random_crops=args.random_crops, flip=not args.no_flip, batch_size=args.batch_size,
                  num_workers=args.num_workers, seed=args.seed, image_column=args.image_column,
                  label_column=args.label_column, overwrite=args.overwrite)


if __name__ == "__main__":
    main()
