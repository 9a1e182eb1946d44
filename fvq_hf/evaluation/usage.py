"""Codebook usage, counted in one place: per-code counts over every token (`CodeCounter`, pooled and, for ids with
levels, per residual depth or scale), the rolling indicator of training (`UsageWindow`), one image's usage
(`image_usage`), and the usage files that `fvq-eval --save-usage` and `fvq-train` write and the Space reads
(`save_usage_file`, `load_usage_file`; their names: `usage_file_name`, `find_usage_files`).

A usage file is JSON:

    {"model": str, "data": str, "codebook_size": K, "counts": [K ints],      # pooled over every token
     "level_name": "scale", "levels": [{"label": "scale 1x1", "counts": [K ints]}, ...]}

`level_name` and `levels` are there for ids with levels (a residual or multi-scale tokenizer: `quantizer.ids`), one
entry per level in level order, and their counts sum to the pooled `counts`; a file without them (plain VQ, or one
written before levels were counted) reads as pooled counts only. `fvq-train` writes one per evaluated data set next
to its output folder's `model/`, named `usage-<data>.json` (`usage_file_name`: the data with `:` as `-` and `/` as
`_`, e.g. `usage-builtin-heldout.json`); `fvq-eval --save-usage PATH` writes one where told (`usage.json` in the
model folder, for the Space, which looks in the model's folder, then in the folder around it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.spec import DataSpec
from ..quantizers.ids import IdsSpec, check_token_ids


class CodeCounter:
    """Counts how often each of K codes is used over all tokens seen (int64 counts, not a rolling buffer).

    With `level_labels` (ids with levels: residual depths, scales), it also counts each level apart: `levels` maps
    each label, in level order, to a `CodeCounter` of that level's tokens, and the pooled counts are their sum.
    `CodeCounter.for_ids(quantizer.ids, K)` makes the one that a quantizer's ids need.
    """

    def __init__(self, codebook_size: int, device: torch.device | str = "cpu", level_name: str | None = None,
                 level_labels: Sequence[str] = ()) -> None:
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}.")
        if len(set(level_labels)) != len(level_labels):
            raise ValueError(f"Level labels must differ from each other, got {list(level_labels)}.")
        self.codebook_size = codebook_size
        self.counts = torch.zeros(codebook_size, dtype=torch.long, device=device)
        self.level_name = level_name if level_labels else None
        self.levels = {label: CodeCounter(codebook_size, device) for label in level_labels}

    @classmethod
    def for_ids(cls, ids: IdsSpec, codebook_size: int, device: torch.device | str = "cpu") -> CodeCounter:
        """An empty counter for ids described by `ids` (`quantizer.ids`): one counter per level where they have
        levels (`ids.level_name`: even a residual depth of 1), pooled counts only otherwise."""
        labels = ids.level_labels if ids.level_name else ()
        return cls(codebook_size, device, ids.level_name, labels)

    def update(self, indices: torch.Tensor, levels: Sequence[torch.Tensor] | None = None) -> None:
        """Add token ids of any shape; ids outside [0, K) are an error. `levels`: the same ids split per level, in
        level order (`quantizer.split_levels(indices)`), which a counter with levels needs; a counter without levels
        takes a single one, which is `indices` itself."""
        flat = indices.reshape(-1).to(self.counts.device, torch.long)
        check_token_ids(flat, self.codebook_size)
        if self.levels or levels is not None:
            expected = len(self.levels) or 1
            if levels is None or len(levels) != expected or sum(ids.numel() for ids in levels) != flat.numel():
                got = "none" if levels is None else f"{len(levels)} maps of {sum(i.numel() for i in levels)} ids"
                maps = ", ".join(self.levels) or "the ids themselves"
                raise ValueError(f"Expected `levels`: the {flat.numel()} ids split into {expected} map(s) ({maps}), as "
                                 f"`quantizer.split_levels(indices)` gives them; got {got}.")
        self.counts += torch.bincount(flat, minlength=self.codebook_size)
        for counter, ids in zip(self.levels.values(), levels or ()):
            counter.update(ids)

    def merge(self, other: CodeCounter) -> None:
        """Add another counter's counts (summed, never averaged: processes and data sets combine exactly)."""
        if other.codebook_size != self.codebook_size:
            raise ValueError(f"Cannot merge counts of {other.codebook_size} codes into {self.codebook_size}.")
        if list(other.levels) != list(self.levels):
            raise ValueError(f"Cannot merge counts of levels {list(other.levels)} into levels {list(self.levels)}.")
        self.counts += other.counts.to(self.counts.device)
        for counter, level in zip(self.levels.values(), other.levels.values()):
            counter.merge(level)

    def tensors(self) -> list[torch.Tensor]:
        """The count tensors, pooled then each level's (what a distributed run sums over its processes)."""
        return [self.counts, *(counter.counts for counter in self.levels.values())]

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

    def summary(self) -> dict:
        """`usage`, `perplexity`, `num_tokens`, `codebook_size`, `tokens_per_code` of the pooled counts; with levels,
        also `level_name` and `levels`: `[{"label", "usage", "perplexity", "num_tokens", "tokens_per_code"}]`, one
        per level in level order."""
        pooled = {"usage": self.usage, "perplexity": self.perplexity, "num_tokens": self.num_tokens,
                  "codebook_size": self.codebook_size, "tokens_per_code": self.tokens_per_code}
        if not self.levels:
            return pooled
        levels = [{"label": label, "usage": c.usage, "perplexity": c.perplexity, "num_tokens": c.num_tokens,
                   "tokens_per_code": c.tokens_per_code} for label, c in self.levels.items()]
        return {**pooled, "level_name": self.level_name, "levels": levels}


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
    """Write the per-code counts of `counter` as a usage file (and each level's, where it counts levels)."""
    saved = {"model": model, "data": data, "codebook_size": counter.codebook_size, "counts": counter.counts.tolist()}
    if counter.levels:
        saved.update(level_name=counter.level_name, levels=[{"label": label, "counts": level.counts.tolist()}
                                                            for label, level in counter.levels.items()])
    Path(path).write_text(json.dumps(saved))


def usage_file_name(data: str | DataSpec) -> str:
    """The name of the usage file of one evaluated data set (its `--data` text) in a training output folder."""
    return f"usage-{str(data).replace(':', '-').replace('/', '_')}.json"


def find_usage_files(folder: str | Path) -> list[Path]:
    """The usage files in `folder` (`usage.json`, `usage-<data>.json`), sorted by name; none when it is no folder."""
    return sorted(Path(folder).glob("usage*.json")) if Path(folder).is_dir() else []


def load_usage_file(path: str | Path, codebook_size: int) -> CodeCounter:
    """The counts of a usage file as a `CodeCounter` (with its levels, where the file has them), checked against the
    model's K; a `UsageFileError` says why not."""
    name = Path(path).name
    try:
        saved = json.loads(Path(path).read_text())
        counts = _counts(saved["counts"], codebook_size, f"`{name}`")
        levels = [(str(level["label"]), _counts(level["counts"], codebook_size, f"`{name}`'s level {level['label']!r}"))
                  for level in saved.get("levels") or []]
        counter = CodeCounter(codebook_size, level_name=saved.get("level_name"),
                              level_labels=[label for label, _ in levels])
    except UsageFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageFileError(f"`{name}` is not a usage file written by `fvq-eval --save-usage` ({error}).") from error
    if levels and not torch.equal(sum(level_counts for _, level_counts in levels), counts):
        raise UsageFileError(f"`{name}`'s per-level counts do not sum to its pooled counts.")
    counter.counts += counts
    for level, (_, level_counts) in zip(counter.levels.values(), levels):
        level.counts += level_counts
    return counter


def _counts(values, codebook_size: int, where: str) -> torch.Tensor:
    """One list of K counts from a usage file as a tensor, or a `UsageFileError` naming `where` it does not fit."""
    counts = torch.tensor(values, dtype=torch.long)
    if counts.ndim != 1 or counts.numel() != codebook_size or bool((counts < 0).any()):
        raise UsageFileError(f"{where} holds {counts.numel()} counts; this model has {codebook_size} codes.")
    return counts
