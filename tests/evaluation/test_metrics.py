import json
import math
from pathlib import Path

import pytest
import torch

from fvq_hf.data.spec import DataSpec
from fvq_hf.evaluation.evaluate import evaluate, format_level_table, format_table, run_evaluation
from fvq_hf.evaluation.metrics import METRICS, CodebookUsage, ImageQuality, metric_weight_options
from fvq_hf.evaluation.options import EvaluationOptions
from fvq_hf.evaluation.usage import (
    CodeCounter,
    UsageFileError,
    find_usage_files,
    load_usage_file,
    save_usage_file,
    usage_file_name,
)
from fvq_hf.hub.reports import REPORTS
from fvq_hf.quantizers import ResidualQuantizer

from ..helpers import (
    make_tiny_model,
    quantizer_types,
    random_images,
    run_in_two_processes,
    typed_model,
    write_images,
    write_lpips_weights,
)


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


def two_depth_counter() -> CodeCounter:
    """K = 4, residual ids of 2 depths at 2 x 2 positions: depth 1 uses codes 0, 1 twice each, depth 2 code 2 three
    times and code 3 once."""
    counter = CodeCounter.for_ids(ResidualQuantizer.ids_spec({"depth": 2}), 4)
    ids = torch.tensor([[[[0, 2], [0, 2]], [[1, 2], [1, 3]]]])  # (B, h, w, D) = (1, 2, 2, 2)
    counter.update(ids, list(ids.unbind(-1)))
    return counter


def test_a_counter_with_levels_counts_each_level_apart_and_pools_them():
    counter = two_depth_counter()
    assert counter.level_name == "depth" and list(counter.levels) == ["depth 1", "depth 2"]
    assert [c.counts.tolist() for c in counter.levels.values()] == [[2, 2, 0, 0], [0, 0, 3, 1]]
    assert counter.counts.tolist() == [2, 2, 3, 1]
    summary = counter.summary()
    # by hand: depth 1 is two codes used evenly (perplexity 2); depth 2 is p = (3/4, 1/4); pooled (2, 2, 3, 1) / 8
    depth_2 = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    pooled = math.exp(-(2 * 0.25 * math.log(0.25) + 0.375 * math.log(0.375) + 0.125 * math.log(0.125)))
    assert depth_2 == pytest.approx(1.7548, abs=1e-4) and pooled == pytest.approx(3.7467, abs=1e-4)
    assert summary["perplexity"] == pytest.approx(pooled, rel=1e-12) and summary["usage"] == 1.0
    assert summary["levels"] == [
        {"label": "depth 1", "usage": 0.5, "perplexity": pytest.approx(2.0, rel=1e-12), "num_tokens": 4,
         "tokens_per_code": 1.0},
        {"label": "depth 2", "usage": 0.5, "perplexity": pytest.approx(depth_2, rel=1e-12), "num_tokens": 4,
         "tokens_per_code": 1.0}]
    table = format_level_table({"d": summary}).splitlines()
    assert table[0] == "| data | depth | usage | perplexity | num_tokens | tokens_per_code |"
    assert table[3] == "| d | depth 2 | 50.00% | 1.7548 | 4 | 1.0000 |"
    assert format_level_table({"d": CodeCounter(4).summary()}) == ""  # no levels: no table


def test_a_counter_with_levels_refuses_ids_that_are_not_split_into_them():
    counter, ids = two_depth_counter(), torch.zeros(1, 2, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"the 8 ids split into 2 map\(s\) \(depth 1, depth 2\).*got none"):
        counter.update(ids)
    with pytest.raises(ValueError, match="got 2 maps of 6 ids"):
        counter.update(ids, [ids[..., 0], ids[..., 0, 0]])
    with pytest.raises(ValueError, match="Cannot merge counts of levels"):
        counter.merge(CodeCounter(4))
    assert counter.counts.tolist() == [2, 2, 3, 1]  # nothing counted by the refused updates
    plain = CodeCounter(4)
    plain.update(ids, [ids])  # one level: the pooled counts themselves
    assert plain.counts.tolist() == [8, 0, 0, 0] and not plain.levels and "levels" not in plain.summary()


# The tokens of each level for 5 images of the tiny models (8 x 8 latents; helpers.TINY_QUANTIZERS' configs).
LEVEL_TOKENS = {"residual": [5 * 8 * 8] * 3, "multiscale": [5 * s * s for s in (1, 3, 5, 8)],
                "scaled-residual": [5 * 8 * 8] * 2}


@pytest.mark.parametrize("quantizer_type", quantizer_types())
def test_every_type_with_levels_gets_exact_counts_per_level(quantizer_type):
    """Whatever the type (the examples of tests/examples too), a type whose ids have levels gets each level's counts:
    exactly those of the model's own ids, split as its quantizer splits them, summing to the pooled counts."""
    model = typed_model(quantizer_type, "none").eval()  # every type takes no bridge
    images = random_images(5, model.config.sample_size)
    metrics, counter = evaluate(model, list(images), batch_size=2)
    with torch.no_grad():
        ids = model.encode(images).indices
    assert counter.counts.tolist() == torch.bincount(ids.flatten(), minlength=256).tolist()
    if model.quantizer.level_name is None:
        assert not counter.levels and "levels" not in metrics and quantizer_type not in LEVEL_TOKENS
        return
    expected = [torch.bincount(level.flatten(), minlength=256) for level in model.quantizer.split_levels(ids)]
    assert [c.counts.tolist() for c in counter.levels.values()] == [e.tolist() for e in expected]
    assert torch.equal(sum(c.counts for c in counter.levels.values()), counter.counts)
    assert metrics["level_name"] == model.quantizer.level_name
    assert [level["label"] for level in metrics["levels"]] == list(model.quantizer.ids.level_labels)
    assert [level["num_tokens"] for level in metrics["levels"]] == LEVEL_TOKENS[quantizer_type]
    assert [level["tokens_per_code"] for level in metrics["levels"]] == [n / 256 for n in LEVEL_TOKENS[quantizer_type]]
    for level, counts in zip(metrics["levels"], expected):
        assert level["usage"] == int((counts > 0).sum()) / 256 <= metrics["usage"]


@pytest.mark.slow
def test_two_processes_report_the_per_level_counts_and_figures_of_one(tmp_path):
    """Each of two processes evaluates its shard (3 and 2 of the 5 images); both end with the counts of all of them,
    pooled and per scale, and so with the figures of one process."""
    run_in_two_processes(Path(__file__).with_name("ddp_evaluate.py"), [str(tmp_path)])
    model = typed_model("multiscale", "none").eval()
    results, counter = evaluate(model, list(random_images(5, model.config.sample_size)), batch_size=2)
    for rank in (0, 1):
        saved = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert saved["counts"] == [counts.tolist() for counts in counter.tensors()]
        assert saved["results"]["num_images"] == 5 and saved["results"]["levels"] == results["levels"]
        assert [level["num_tokens"] for level in saved["results"]["levels"]] == LEVEL_TOKENS["multiscale"]


def test_a_usage_file_keeps_each_levels_counts(tmp_path):
    counter = two_depth_counter()
    save_usage_file(tmp_path / "usage.json", counter, "model", "data")
    saved = json.loads((tmp_path / "usage.json").read_text())
    assert saved["level_name"] == "depth"
    assert saved["levels"] == [{"label": "depth 1", "counts": [2, 2, 0, 0]}, {"label": "depth 2", "counts": [0, 0, 3, 1]}]
    loaded = load_usage_file(tmp_path / "usage.json", 4)
    assert loaded.summary() == counter.summary() and loaded.counts.tolist() == [2, 2, 3, 1]
    saved["levels"][1]["counts"] = [0, 0, 3, 2]
    (tmp_path / "usage.json").write_text(json.dumps(saved))
    with pytest.raises(UsageFileError, match="per-level counts do not sum to its pooled counts"):
        load_usage_file(tmp_path / "usage.json", 4)
    saved["levels"][1]["counts"] = [0, 0, 3]
    (tmp_path / "usage.json").write_text(json.dumps(saved))
    with pytest.raises(UsageFileError, match="`usage.json`'s level 'depth 2' holds 3 counts; this model has 4"):
        load_usage_file(tmp_path / "usage.json", 4)


def test_a_usage_file_written_before_levels_were_counted_still_loads(tmp_path):
    """The schema before levels: pooled counts only (as fvq-eval and fvq-train wrote them), read as they are."""
    (tmp_path / "usage.json").write_text(json.dumps({"model": "m", "data": "d", "codebook_size": 4,
                                                     "counts": [2, 2, 3, 1]}))
    loaded = load_usage_file(tmp_path / "usage.json", 4)
    assert loaded.counts.tolist() == [2, 2, 3, 1] and not loaded.levels and loaded.level_name is None
    assert loaded.summary() == {key: value for key, value in two_depth_counter().summary().items()
                                if key not in ("level_name", "levels")}


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
