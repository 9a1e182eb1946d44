"""Codebook usage, counted in one place: per-code counts over every token (`CodeCounter`), the rolling indicator of
training (`UsageWindow`), one image's usage (`image_usage`), and the usage files that `fvq-eval --save-usage` and
`fvq-train` write and the Space reads (`save_usage_file`, `load_usage_file`; their names: `usage_file_name`,
`find_usage_files`).

A usage file is JSON: `{"model": str, "data": str, "codebook_size": K, "counts": [K ints]}`. `fvq-train` writes one
per evaluated data set next to its output folder's `model/`, named `usage-<data>.json` (`usage_file_name`: the data
with `:` as `-` and `/` as `_`, e.g. `usage-builtin-heldout.json`); `fvq-eval --save-usage PATH` writes one where told
(`usage.json` in the model folder, for the Space, which looks in the model's folder, then in the folder around it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..data.spec import DataSpec
from ..quantizers.ids import check_token_ids


class CodeCounter:
    """Counts how often each of K codes is used over all tokens seen (int64 counts, not a rolling buffer)."""

    def __init__(self, codebook_size: int, device: torch.device | str = "cpu") -> None:
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}.")
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.long, device=device)

    def update(self, indices: torch.Tensor) -> None:
        """Add token ids of any shape; ids outside [0, K) are an error."""
        flat = indices.reshape(-1).to(self.counts.device, torch.long)
        check_token_ids(flat, self.codebook_size)
        self.counts += torch.bincount(flat, minlength=self.codebook_size)

    def merge(self, other: CodeCounter) -> None:
        """Add another counter's counts (summed, never averaged: processes and data sets combine exactly)."""
        if other.codebook_size != self.codebook_size:
            raise ValueError(f"Cannot merge counts of {other.codebook_size} codes into {self.codebook_size}.")
        self.counts += other.counts.to(self.counts.device)

    @property
    def num_tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def distinct_codes(self) -> int:
        return int((self.counts > 0).sum())

    @property
    def usage(self) -> float:
        """Distinct codes used / K."""
        return self.distinct_codes / self.codebook_size

    @property
    def tokens_per_code(self) -> float:
        """Tokens counted per code: a usage figure is only telling with tens of them."""
        return self.num_tokens / self.codebook_size

    @property
    def perplexity(self) -> float:
        """exp(entropy) of the code histogram: K for perfectly even use, 1 for a single code."""
        total = self.num_tokens
        if total == 0:
            return 0.0
        p = self.counts[self.counts > 0].double() / total
        return math.exp(float(-(p * p.log()).sum()))

    def summary(self) -> dict[str, float | int]:
        return {"usage": self.usage, "perplexity": self.perplexity, "num_tokens": self.num_tokens,
                "codebook_size": self.codebook_size, "tokens_per_code": self.tokens_per_code}


def image_usage(indices: torch.Tensor, codebook_size: int) -> dict:
    """One image's ids (any shape) -> `distinct_codes`, `codebook_fraction` (distinct / K) and `perplexity`."""
    counter = CodeCounter(codebook_size, indices.device)
    counter.update(indices)
    return {"distinct_codes": counter.distinct_codes, "codebook_fraction": counter.usage,
            "perplexity": counter.perplexity}


class UsageWindow:
    """Rolling training-time usage: the fraction of codes hit in the last `window` steps (all processes).

    Only an indicator: the honest figure counts every token of held-out data (`fvq-eval`).
    """

    def __init__(self, codebook_size: int, window: int, device) -> None:
        self.window = window
        self.last_seen = torch.full((codebook_size,), -(10**9), dtype=torch.long, device=device)
        self.tokens_per_step = 0

    def update(self, indices: torch.Tensor, step: int) -> None:
        self.last_seen[indices.reshape(-1)] = step
        self.tokens_per_step = indices.numel()

    def usage(self, step: int) -> float:
        return (self.last_seen > step - self.window).float().mean().item()

    def tokens_per_code(self, step: int) -> float:
        """Tokens per code in the window: a usage figure is only telling with tens of them."""
        return min(step, self.window) * self.tokens_per_step / self.last_seen.numel()

    def state_dict(self) -> dict:
        return {"last_seen": self.last_seen.cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.last_seen.copy_(state["last_seen"])


class UsageFileError(ValueError):
    """A file that is not a usage file, or whose counts do not fit the model."""


def save_usage_file(path: str | Path, counter: CodeCounter, model: str, data: str) -> None:
    """Write the per-code counts of `counter` as a usage file."""
    Path(path).write_text(json.dumps({"model": model, "data": data, "codebook_size": counter.codebook_size,
                                      "counts": counter.counts.tolist()}))


def usage_file_name(data: str | DataSpec) -> str:
    """The name of the usage file of one evaluated data set (its `--data` text) in a training output folder."""
    return f"usage-{str(data).replace(':', '-').replace('/', '_')}.json"


def find_usage_files(folder: str | Path) -> list[Path]:
    """The usage files in `folder` (`usage.json`, `usage-<data>.json`), sorted by name; none when it is no folder."""
    return sorted(Path(folder).glob("usage*.json")) if Path(folder).is_dir() else []


def load_usage_file(path: str | Path, codebook_size: int) -> CodeCounter:
    """The counts of a usage file as a `CodeCounter`, checked against the model's K (a `UsageFileError` says why not)."""
    name = Path(path).name
    try:
        saved = json.loads(Path(path).read_text())
        counts = torch.tensor(saved["counts"], dtype=torch.long)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageFileError(f"`{name}` is not a usage file written by `fvq-eval --save-usage` ({error}).") from error
    if counts.ndim != 1 or counts.numel() != codebook_size or bool((counts < 0).any()):
        raise UsageFileError(f"`{name}` holds {counts.numel()} counts; this model has {codebook_size} codes.")
    counter = CodeCounter(codebook_size)
    counter.counts += counts
    return counter
