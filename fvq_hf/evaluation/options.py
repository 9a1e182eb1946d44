"""How an evaluation measures: the options `fvq-eval` and `fvq-train`'s evaluation (during and after training) share,
the weight files of the metrics that need them included, so that both can measure every registered metric."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class EvaluationOptions:
    """Options of `run_evaluation`.

    `weights` maps a metric's weight option (declared by the metric: `lpips_vgg`, `lpips_linear`,
    `inception_weights`, ...) to a file; a metric whose files are missing is left out with a note saying what to
    pass. `resolution` None takes the model's `sample_size`; `split` and `image_column` apply to `datasets` data;
    `limit` evaluates at most that many images.
    """

    batch_size: int = 32
    resolution: int | None = None
    split: str = "validation"
    image_column: str | None = None
    limit: int | None = None
    weights: Mapping[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"The evaluation batch size (fvq-eval --batch-size, fvq-train --eval-batch-size) must be "
                             f">= 1, got {self.batch_size}.")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1 image, got {self.limit}.")
        self.weights = dict(self.weights)
