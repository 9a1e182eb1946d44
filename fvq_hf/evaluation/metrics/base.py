"""What every metric declares: the values it reports (`Report`s, `fvq_hf.hub.reports`), the weight files it needs (its
weight options), and how it is made from a model and the evaluation's options, updated batch by batch, and computed.
`METRICS` is the registry (`@METRICS.register`, which also adds the metric's reports to `REPORTS`)."""

from __future__ import annotations

from typing import ClassVar

import torch

from ...hub.reports import Report, register_reports
from ...registry import Registry
from ..options import EvaluationOptions


class Metric:
    """A metric over the images of an evaluation: subclasses set `name` and `reports`, declare the weight files they
    need (`weights`: option -> help; `fvq-eval` and `fvq-train` make a `--<option>` flag of each, and
    `EvaluationOptions.weights` holds the files given), and implement `create` (when they need weights), `update`
    and `compute`. Everything is summed or counted over all images, never averaged over batches."""

    name: ClassVar[str] = ""
    reports: ClassVar[tuple[Report, ...]] = ()
    weights: ClassVar[dict[str, str]] = {}

    @classmethod
    def create(cls, model, device: torch.device | str, options: EvaluationOptions) -> tuple[Metric | None, str]:
        """`(metric, "")`, or `(None, why it cannot be measured)`: a weight file of its own missing from
        `options.weights`, say."""
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


class MetricRegistry(Registry):
    """The `Registry` of metrics: registering one also declares its reports (`hub.reports.REPORTS`)."""

    def register(self, cls):
        super().register(cls)
        register_reports(*cls.reports)
        return cls


# In registration order: the order of the measurements, of the results' keys and of fvq-eval's table columns.
METRICS = MetricRegistry("metric", Metric)
