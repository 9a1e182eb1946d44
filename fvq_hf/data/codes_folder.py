"""The codes folder: token ids of a data set as written by `fvq-extract-codes` (`training.codes`) and read for
transformer training (`tokens.TokenDataset`). This module writes and reads it; nothing else touches its files.

A codes folder holds, per process R (`shards`: "00000", "00001", ...):
- `codes-R.npy`: `(N_R, A, h, w)` token ids (uint16 when K <= 65536, else int32) with A views per sample;
- `labels-R.npy`: `(N_R,)` int64 class labels;
- with `fvq-extract-codes --latents`, `latents-R.npy`: `(N_R, A, d, h, w)` float32 pre-quantization latents
  (`FVQModel.encode(x).latents`, what a latent diffusion or flow generator models: `data.latents.LatentDataset`);
then `meta.json`, written last (a folder without it is an interrupted extraction and is refused):

    {"tokenizer": str, "codebook_size": K, "token_grid_size": [h, w], "resolution": int, "num_classes": int,
     "class_names": [str], "views": ["image", "hflip"], "data": str, "split": str, "random_crops": int | null,
     "seed": int, "shards": [str], "num_samples": int, "latent_channels": d | null}

Every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

META_FILE = "meta.json"


@dataclass
class CodesMeta:
    """`meta.json` of a codes folder (see the module docstring); `num_samples` is counted when the folder is done."""

    tokenizer: str
    codebook_size: int
    token_grid_size: list[int]
    resolution: int
    num_classes: int
    class_names: list[str]
    views: list[str]
    data: str
    split: str
    random_crops: int | None
    seed: int
    shards: list[str]
    num_samples: int | None = None
    latent_channels: int | None = None  # d when the folder holds latents-R.npy (older folders: None)

    @property
    def id_dtype(self) -> type:
        """The smallest dtype that holds every id."""
        return np.uint16 if self.codebook_size <= 2**16 else np.int32


def shard_name(rank: int) -> str:
    return f"{rank:05d}"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as file:
        write(file)
    os.replace(tmp, path)


def write_shard(folder: str | Path, rank: int, codes: np.ndarray, labels: np.ndarray,
                latents: np.ndarray | None = None) -> None:
    """Process `rank`'s `(N, A, h, w)` ids, `(N,)` labels and (optionally) `(N, A, d, h, w)` latents, each under a
    temporary name, renamed when complete."""
    folder = Path(folder)
    _atomic(folder / f"codes-{shard_name(rank)}.npy", lambda file: np.save(file, codes))
    _atomic(folder / f"labels-{shard_name(rank)}.npy", lambda file: np.save(file, labels.astype(np.int64)))
    if latents is not None:
        _atomic(folder / f"latents-{shard_name(rank)}.npy", lambda file: np.save(file, latents.astype(np.float32)))


def write_meta(folder: str | Path, meta: CodesMeta) -> None:
    """`meta.json`, last: it marks the folder complete. `num_samples` is counted from the shards."""
    folder = Path(folder)
    meta.num_samples = sum(len(np.load(folder / f"labels-{shard}.npy", mmap_mode="r")) for shard in meta.shards)
    text = json.dumps(dataclasses.asdict(meta), indent=2).encode()
    _atomic(folder / META_FILE, lambda file: file.write(text))


def is_codes_folder(folder: str | Path) -> bool:
    """Whether `folder` holds a complete extraction (its `meta.json`)."""
    return (Path(folder) / META_FILE).exists()


def read_meta(folder: str | Path) -> CodesMeta:
    """The `meta.json` of a complete codes folder; an error says what is missing or wrong."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no {META_FILE}: it is not a codes folder, or its extraction was "
                                "interrupted. Run fvq-extract-codes (again) to write it.")
    try:
        saved = json.loads(path.read_text())
        return CodesMeta(**{f.name: saved[f.name] for f in dataclasses.fields(CodesMeta) if f.name in saved})
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path} is not the meta.json of fvq-extract-codes ({error}); extract again.") from error


def read_shard(folder: str | Path, meta: CodesMeta, shard: str) -> tuple[np.ndarray, np.ndarray]:
    """`(codes, labels)` of one shard, memory-mapped, checked against `meta` (shapes, id and label ranges)."""
    folder = Path(folder)
    h, w = meta.token_grid_size
    views = len(meta.views)
    try:
        codes = np.load(folder / f"codes-{shard}.npy", mmap_mode="r")
        labels = np.load(folder / f"labels-{shard}.npy", mmap_mode="r")
    except (OSError, ValueError) as error:
        raise ValueError(f"Shard {shard} of {folder} is missing or corrupt ({error}); extract again.") from error
    if codes.shape[1:] != (views, h, w) or len(labels) != len(codes):
        raise ValueError(f"Shard {shard} of {folder} holds codes {codes.shape} and {len(labels)} labels; "
                         f"meta.json expects (N, {views}, {h}, {w}) and N labels. Extract again.")
    if len(codes) and (int(codes.max()) >= meta.codebook_size or int(labels.max()) >= meta.num_classes
                       or int(labels.min()) < 0):
        raise ValueError(f"Shard {shard} of {folder} holds token ids or labels out of range (codebook "
                         f"{meta.codebook_size}, {meta.num_classes} classes). Extract again.")
    return codes, labels


def read_latent_shard(folder: str | Path, meta: CodesMeta, shard: str) -> np.ndarray:
    """`(N, A, d, h, w)` float32 latents of one shard, memory-mapped, checked against `meta`; a clear error when the
    folder was extracted without `--latents`."""
    if meta.latent_channels is None:
        raise ValueError(f"{folder} holds token ids only: extract it with `fvq-extract-codes --latents` to train a "
                         "latent generator on it.")
    path = Path(folder) / f"latents-{shard}.npy"
    try:
        latents = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise ValueError(f"Latents of shard {shard} of {folder} are missing or corrupt ({error}); extract again.") \
            from error
    h, w = meta.token_grid_size
    expected = (len(meta.views), meta.latent_channels, h, w)
    if latents.ndim != 5 or latents.shape[1:] != expected or latents.dtype != np.float32:
        raise ValueError(f"{path} holds {latents.dtype} latents {latents.shape}; meta.json expects float32 "
                         f"(N, {', '.join(map(str, expected))}). Extract again.")
    return latents
