import json

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.evaluation.evaluate import run_evaluation
from fvq_hf.evaluation.options import EvaluationOptions
from fvq_hf.training.evaluation import reconstruction_grid
from fvq_hf.training.trainer import train

from ..helpers import make_tiny_model, random_images
from .runs import run_two_processes, tiny_config, train_args


def test_reconstruction_grid_puts_images_above_their_reconstructions():
    model = make_tiny_model().eval()
    images = random_images(3, 32)
    grid = reconstruction_grid(model, images)
    assert grid.shape == (3, 64, 96)
    assert torch.allclose(grid[:, :32, 32:64], (images[1] + 1) / 2)
    with torch.no_grad():
        reconstructions = model.decode(model.encode(images).quantized, force_not_quantize=True).sample.clamp(-1, 1)
    assert torch.equal(grid[:, 32:, 32:64], (reconstructions[1] + 1) / 2)


def test_periodic_evaluation_is_logged_with_a_grid_and_the_final_one_matches_fvq_eval(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, data = tmp_path / "run", str(tmp_path / "images")
    result = train(tiny_config(tmp_path, max_steps=4, eval_every=2, eval_data=[data], output_dir=str(out),
                               report_to="tensorboard"))
    events = EventAccumulator(str(next((out / "logs").rglob("events.out.*")).parent), size_guidance={"images": 0})
    events.Reload()
    usage = events.Scalars(f"eval/{data}/usage")
    assert [e.step for e in usage] == [2, 4]  # every 2 steps, the last one being the end-of-run evaluation
    assert [e.step for e in events.Scalars(f"eval/{data}/tokens_per_code")] == [2, 4]
    assert [e.step for e in events.Images(f"eval/{data}/reconstructions")] == [2, 4]
    again, _ = run_evaluation(FVQModel.from_pretrained(out / "model"), data, EvaluationOptions(), model_name="again",
                              progress=False)
    saved = json.loads((out / "eval.json").read_text())[data]
    for key in ("num_tokens", "usage", "perplexity", "psnr", "ssim"):
        assert saved[key] == pytest.approx(again[key], rel=1e-6) == pytest.approx(result.eval[data][key], rel=1e-6)
    assert usage[-1].value == pytest.approx(saved["usage"])


@pytest.mark.slow
def test_two_processes_evaluate_their_shards_and_sum_the_counts(tmp_path):
    """Each rank measures half the images; both report the one-process evaluation of the saved model (the EMA,
    the same on both ranks)."""
    data, out = str(tmp_path / "images"), tmp_path / "ddp"
    lines = run_two_processes(train_args(tmp_path, "--max-steps", "2", "--eval-every", "1", "--eval-data", data,
                                         "--ema-decay", "0.5", "--output-dir", str(out)))
    assert lines[0][7:] == lines[1][7:] and lines[0][-1] != "None"  # weights, evaluation, EMA
    single, _ = run_evaluation(FVQModel.from_pretrained(out / "model"), data, EvaluationOptions(), model_name="one",
                               progress=False)
    num_tokens, usage, psnr = lines[0][9:12]
    assert int(num_tokens) == single["num_tokens"] == 8 * 8 * 8  # every token of the 8 images, counted once
    assert float(usage) == pytest.approx(single["usage"], abs=1e-12)
    assert float(psnr) == pytest.approx(single["psnr"], rel=1e-6)
