"""Evaluation while training (`fvq-train --eval-every N`) and at its end: `run_evaluation`, the code of
`fvq-eval`, on every process (each its shard of the images, the metrics combined: code counts summed), logged to
the trackers, with a grid of reconstructions for TensorBoard."""

from __future__ import annotations

import logging

import torch
from einops import rearrange

from ..data.sources import EvalImages
from ..evaluation.evaluate import run_evaluation
from ..evaluation.options import EvaluationOptions
from ..evaluation.usage import CodeCounter
from ..tokenizer import FVQModel

logger = logging.getLogger(__name__)
GRID_IMAGES = 8


def reconstruction_grid(model: FVQModel, images: torch.Tensor) -> torch.Tensor:
    """`(N, 3, H, W)` images in [-1, 1] -> `(3, 2H, NW)` in [0, 1]: the images above their reconstructions."""
    with torch.no_grad():  # encode / decode, as the evaluation: a compiled forward would compile again for eval
        quantized = model.encode(images.to(model.device)).quantized
        reconstructions = model.decode(quantized, force_not_quantize=True).sample.float().clamp(-1, 1).cpu()
    pair = torch.stack([images.float(), reconstructions])
    return rearrange((pair + 1) / 2, "r n c h w -> c (r h) (n w)")


class TrainingEvaluation:
    """The evaluation of a run on each of its `--eval-data` sets with `options` (every metric `fvq-eval` measures,
    given its weight files; at `options.resolution`, else at `resolution`, the training crop); every process calls
    it at the same steps."""

    def __init__(self, accelerator, data: list[str], options: EvaluationOptions, resolution: int) -> None:
        self.accelerator, self.data, self.options = accelerator, list(data), options
        self.resolution = options.resolution or resolution  # default: the training resolution
        self.images: dict[str, EvalImages] = {}  # each set read once (folders: every file opened and verified)

    def __call__(self, model: FVQModel, step: int, model_name: str, log: bool = True
                 ) -> tuple[dict, dict[str, CodeCounter]]:
        """Measure `model` (in eval mode; the caller restores train mode) on every set; returns the results and the
        code counts of each set (the same on every process). With `log`, they go to the trackers at `step`."""
        options, results, counters = self.options, {}, {}
        model.eval()
        for data in self.data:
            if data not in self.images:
                self.images[data] = EvalImages(data, self.resolution, options.split, options.image_column, options.limit)
            results[data], counters[data] = run_evaluation(model, data, options, model_name=model_name, progress=False,
                                                           images=self.images[data])
            metrics = results[data]
            logger.info("step %d  eval %s: usage %.2f%% at %.1f tokens/code, PSNR %.3f dB, SSIM %.4f", step, data,
                        100 * metrics["usage"], metrics["tokens_per_code"], metrics["psnr"], metrics["ssim"])
        if log and results:
            self.accelerator.log({f"eval/{data}/{key}": value for data, metrics in results.items()
                                  for key, value in metrics.items() if isinstance(value, (int, float))}, step=step)
            self.log_grid(model, step)
        return results, counters

    def log_grid(self, model: FVQModel, step: int) -> None:
        """The first images of the first set above their reconstructions, in TensorBoard (main process)."""
        if not self.accelerator.is_main_process or not any(t.name == "tensorboard" for t in self.accelerator.trackers):
            return
        images = self.images[self.data[0]]
        first = torch.stack([images[i] for i in range(min(GRID_IMAGES, len(images)))])
        writer = self.accelerator.get_tracker("tensorboard", unwrap=True)
        writer.add_image(f"eval/{self.data[0]}/reconstructions", reconstruction_grid(model, first), step)
