"""What every metric declares: the values it reports (`Report`: key, label, Hub model-index id) and how it is made
from a model and the user's options, updated batch by batch, and computed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class Report:
    """One reported value: its key in the results (eval.json, cards), its label in card tables (None: no column of
    its own), its id in the Hub's model-index (None: not there), whether `fvq-eval`'s table shows it, and how it
    is written (`percent`: as a percentage)."""

    key: str
    label: str | None = None
    model_index: str | None = None
    table: bool = True
    percent: bool = False


class Metric:
    """A metric over the images of an evaluation: subclasses set `name` and `reports`, and implement `create`,
    `update` and `compute`. Everything is summed or counted over all images, never averaged over batches."""

    name: ClassVar[str] = ""
    reports: ClassVar[tuple[Report, ...]] = ()

    @classmethod
    def create(cls, model, device: torch.device | str, options: Mapping) -> tuple[Metric | None, str]:
        """`(metric, "")`, or `(None, why it cannot be measured)` (missing weights, say). `options` are the
        evaluation's (`lpips_vgg`, `lpips_linear`, `inception_weights`, ...)."""
        return cls(model, device), ""

    def __init__(self, model, device: torch.device | str) -> None:
        self.device = device

    def update(self, images: torch.Tensor, reconstructions: torch.Tensor, indices: torch.LongTensor) -> None:
        """One batch: `(B, 3, H, W)` images and reconstructions in [-1, 1], the ids they were coded with."""
        raise NotImplementedError

    def sync(self) -> None:
        """Combine the states of every process before `compute` (each has measured its own shard of the images).
        torchmetrics states combine themselves in `compute`; sums kept here use `sum_over_processes`."""

    def compute(self) -> dict:
        """The reported values (keys among `reports`, and any detail keys)."""
        raise NotImplementedError


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed in place over the processes of a distributed run (as is, in one process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() and \
            torch.distributed.get_world_size() > 1:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor
