"""Codebook table files: a `(K, D)` table that initialises a tokenizer's learnable (or frozen) table, as VQGAN-LC's
k-means codebook of CLIP features does (`fvq-build-codebook` writes them, `fvq-train --init-table` reads them).

The format, written and read here only: a safetensors file with one fp32 tensor `"table"` of shape `(K, D)` and
string metadata (`format`: `"fvq-hf-table"`, `version`: `"1"`, and what made it, e.g. `encoder`, `pooling`, `groups`,
`codebook_size`, `seed`; each value a string, JSON for structured ones). `load_table` also reads the VQGAN-LC
authors' files: a `.pth` / `.pt` holding one `(K, D)` tensor (`torch.save(Tensor)`, their `codebook-100K.pth`),
loaded with `weights_only=True`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

FORMAT, VERSION, KEY = "fvq-hf-table", "1", "table"


class TableFileError(ValueError):
    """A table file that cannot be read, or does not fit the model it should initialise (the message says why)."""


def save_table(path: str | Path, table: torch.Tensor, metadata: dict | None = None) -> Path:
    """Write a `(K, D)` table (as fp32) with `metadata` (values as strings; others JSON-encoded), atomically: the
    file appears complete or not at all."""
    if table.ndim != 2 or min(table.shape) < 1:
        raise ValueError(f"A codebook table is (K, D) with K, D >= 1, got shape {tuple(table.shape)}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT, version=VERSION, codebook_size=str(table.shape[0]), table_dim=str(table.shape[1]))
    partial = path.with_name(f".{path.name}.partial")
    save_file({KEY: table.detach().float().contiguous().cpu()}, partial, metadata=meta)
    partial.replace(path)
    return path


def load_table(path: str | Path) -> tuple[torch.Tensor, dict[str, str]]:
    """The `(K, D)` fp32 table of a table file and its metadata (`{}` for a `.pth` tensor); a `TableFileError` names
    the file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise TableFileError(f"No codebook table file at {path}.")
    if path.suffix in (".pth", ".pt", ".bin"):
        try:
            table = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 (pickle and zip errors of every kind: all mean "not a tensor file")
            raise TableFileError(f"{path} is not a torch file holding one tensor ({type(error).__name__}: "
                                 f"{error}).") from error
        metadata: dict[str, str] = {}
    else:
        try:
            with safe_open(path, "pt") as f:
                if KEY not in f.keys():
                    raise TableFileError(f"{path} holds no {KEY!r} tensor (it has {sorted(f.keys())}): not a table "
                                         "file written by fvq-build-codebook.")
                table, metadata = f.get_tensor(KEY), dict(f.metadata() or {})
        except (SafetensorError, OSError) as error:
            raise TableFileError(f"{path} is not a safetensors table file ({error}).") from error
    if not isinstance(table, torch.Tensor) or table.ndim != 2 or not table.is_floating_point():
        described = f"shape {tuple(table.shape)}, {table.dtype}" if isinstance(table, torch.Tensor) else type(table).__name__
        raise TableFileError(f"{path} holds {described}, not a (K, D) floating-point table.")
    return table.float(), metadata


def check_table_fits(table: torch.Tensor, codebook_size: int, table_dim: int, path: str | Path) -> None:
    """A `TableFileError` unless `table` is `(codebook_size, table_dim)`, naming the config keys to change."""
    if tuple(table.shape) != (codebook_size, table_dim):
        raise TableFileError(f"The table in {path} is {tuple(table.shape)} (K, D), but the model's table is "
                             f"({codebook_size}, {table_dim}): set num_vq_embeddings={table.shape[0]} and "
                             f"table_dim={table.shape[1]} in its config, or build a table of that size.")
