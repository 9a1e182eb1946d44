import math

import pytest
import torch

from fvq_hf.data.spec import DataSpec
from fvq_hf.evaluation.evaluate import evaluate, format_table, run_evaluation
from fvq_hf.evaluation.metrics import METRICS, CodebookUsage, ImageQuality, metric_weight_options
from fvq_hf.evaluation.options import EvaluationOptions
from fvq_hf.evaluation.usage import (
    CodeCounter,
    find_usage_files,
    load_usage_file,
    save_usage_file,
    usage_file_name,
)
from fvq_hf.hub.reports import REPORTS

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


def test_a_usage_file_is_named_after_its_data_and_found_in_its_folder(tmp_path):
    counter = CodeCounter(4)
    counter.update(torch.tensor([0, 0, 3]))
    for data in (DataSpec.parse("builtin:heldout"), "hf:org/set:validation"):
        save_usage_file(tmp_path / usage_file_name(data), counter, "model", str(data))
    found = find_usage_files(tmp_path)
    assert [p.name for p in found] == ["usage-builtin-heldout.json", "usage-hf-org_set-validation.json"]
    assert load_usage_file(found[1], 4).counts.tolist() == [2, 0, 0, 1]
    assert find_usage_files(tmp_path / "not-a-folder") == []


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


def weight_files(folder) -> dict[str, str]:
    """The weight files that can be made here: LPIPS's (random weights in the real layouts) and the example metric's
    scale; not the FID Inception weights."""
    vgg, linear = write_lpips_weights(folder)
    (folder / "l1-scale.txt").write_text("255")
    return {"lpips_vgg": str(vgg), "lpips_linear": str(linear), "l1_scale": str(folder / "l1-scale.txt")}


def test_each_weight_option_is_declared_once_with_its_help():
    options = metric_weight_options()
    assert list(options)[:3] == ["lpips_vgg", "lpips_linear", "inception_weights"]
    assert options["l1_scale"].startswith("a text file") and all(options.values())
    assert [o for cls in METRICS.values() for o in cls.weights] == list(options)  # no metric shares another's


@pytest.mark.parametrize("name", list(METRICS))
def test_every_registered_metric_is_measured_or_says_which_file_is_missing(name, tmp_path):
    """Every metric in the registry (the example "l1" included) is built by the evaluation when its weight files are
    given, or names what it lacks; each one measured reports the keys it declares, and fvq-eval's table shows them."""
    model = make_tiny_model().eval()
    options = EvaluationOptions(weights=weight_files(tmp_path))
    metric, note = METRICS[name].create(model, "cpu", options)
    if metric is None:
        missing = set(METRICS[name].weights) - set(options.weights)
        assert missing and all(f"--{o.replace('_', '-')}" in note for o in missing)  # rFID: no Inception weights
        return
    assert note == ""
    metrics, _ = evaluate(model, [random_images(1)[0] for _ in range(3)], batch_size=2,
                          metrics=[CodebookUsage(model, "cpu"), metric] if name != "usage" else [metric])
    header = format_table({"data": metrics}).splitlines()[0]
    for report in METRICS[name].reports:
        assert REPORTS[report.key] == report and math.isfinite(metrics[report.key])
        assert (f"| {report.key} |" in header) == report.table


def test_the_example_metric_reads_its_weight_file_and_says_when_it_is_missing(tmp_path):
    model = make_tiny_model().eval()
    data = str(write_images(tmp_path / "images", count=3, size=(32, 32)))
    scaled, _ = run_evaluation(model, data, EvaluationOptions(weights=weight_files(tmp_path)), model_name="tiny",
                               progress=False)
    (tmp_path / "unit.txt").write_text("1")
    unit, _ = run_evaluation(model, data, EvaluationOptions(weights={"l1_scale": str(tmp_path / "unit.txt")}),
                             model_name="tiny", progress=False)
    assert scaled["l1"] == pytest.approx(255 * unit["l1"], rel=1e-6) and "| l1 |" in format_table({"d": scaled})
    assert "lpips" in scaled and "lpips" not in unit  # each metric reads its own files only
    without, _ = run_evaluation(model, data, EvaluationOptions(), model_name="tiny", progress=False)
    assert "l1" not in without and "L1 error unavailable: pass --l1-scale FILE" in " ".join(without["notes"])
    assert any("rFID unavailable" in note for note in without["notes"])
