import math

import pytest
import torch

from fvq_hf.evaluation import CodeCounter, ImageQuality
from fvq_hf.evaluation.evaluate import evaluate, format_table, run_evaluation
from fvq_hf.evaluation.metrics import METRICS, CodebookUsage

from ..helpers import make_tiny_model, random_images, write_images, write_lpips_weights


def test_counter_usage_and_perplexity():
    counter = CodeCounter(8)
    counter.update(torch.tensor([[0, 1], [2, 3]]))
    counter.update(torch.tensor([0, 1, 2, 3]))
    assert counter.num_tokens == 8 and counter.usage == 0.5
    assert counter.perplexity == pytest.approx(4.0)  # four codes used evenly
    counter.update(torch.arange(8).repeat(2))
    assert counter.usage == 1.0 and counter.summary()["tokens_per_code"] == 3.0
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        counter.update(torch.tensor([8]))
    assert CodeCounter(5).perplexity == 0.0


def test_identical_images_give_infinite_psnr_and_ssim_one():
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    quality = ImageQuality()
    quality.update(images, images.clone())
    result = quality.compute()
    assert math.isinf(result["psnr"]) and result["ssim"] == pytest.approx(1.0)


def test_psnr_of_a_known_error():
    images = torch.zeros(2, 3, 16, 16)
    quality = ImageQuality()
    quality.update(images, images + 0.2)  # 0.1 in [0, 1] units -> MSE 0.01 -> 20 dB
    assert quality.compute()["psnr"] == pytest.approx(20.0, abs=1e-3)


def test_a_model_that_maps_every_token_to_one_code_has_usage_one_over_k():
    model = make_tiny_model(bridge_type="none").eval()
    with torch.no_grad():
        model.quantizer.embedding.weight.fill_(1e4)
        model.quantizer.embedding.weight[7] = 0.0  # the only code anywhere near any latent
    images = torch.utils.data.TensorDataset(torch.rand(5, 3, 32, 32) * 2 - 1)
    metrics, counter = evaluate(model, [t for (t,) in images], batch_size=2)
    assert metrics["usage"] == 1 / 256 and metrics["perplexity"] == pytest.approx(1.0)
    assert metrics["num_tokens"] == 5 * 8 * 8 and counter.counts[7] == 320


@pytest.mark.parametrize("name", list(METRICS))
def test_every_registered_metric_is_measured_or_says_why_not(name, tmp_path):
    """Every metric in the registry (the example "l1" included) is built by the evaluation, or names what it lacks;
    each one measured reports the keys it declares, and fvq-eval's table shows them."""
    model = make_tiny_model().eval()
    vgg, linear = write_lpips_weights(tmp_path)
    options = {"lpips_vgg": str(vgg), "lpips_linear": str(linear), "inception_weights": None}
    metric, note = METRICS[name].create(model, "cpu", options)
    if metric is None:
        assert note and name == "rfid"  # the FID Inception weights cannot exist offline
        return
    metrics, _ = evaluate(model, [random_images(1)[0] for _ in range(3)], batch_size=2,
                          metrics=[CodebookUsage(model, "cpu"), metric] if name != "usage" else [metric])
    for report in METRICS[name].reports:
        assert isinstance(metrics[report.key], int | float), report.key
        assert report.key in format_table({"data": metrics}).splitlines()[0] or not report.table


def test_the_example_metric_is_measured_by_run_evaluation(tmp_path):
    model = make_tiny_model().eval()
    results, _ = run_evaluation(model, str(write_images(tmp_path / "images", count=3, size=(32, 32))),
                                model_name="tiny", progress=False)
    assert 0 < results["l1"] < 1 and "| l1 |" in format_table({"images": results})
    assert any("rFID unavailable" in note for note in results["notes"])
