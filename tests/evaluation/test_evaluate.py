import json
import math

import pytest

from fvq_hf.cli.eval import main
from fvq_hf.evaluation.evaluate import load_model, run_evaluation
from fvq_hf.evaluation.options import EvaluationOptions
from fvq_hf.evaluation.usage import load_usage_file

from ..helpers import make_tiny_model, typed_model, write_images, write_lpips_weights


@pytest.fixture
def saved_model(tmp_path):
    make_tiny_model().save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_cli_reports_every_metric_and_what_is_missing(tmp_path, saved_model, capsys, monkeypatch):
    monkeypatch.delenv("FVQ_LPIPS_VGG", raising=False)
    data = write_images(tmp_path / "data", count=4)
    (data / "corrupt.jpg").write_bytes(b"\xff\xd8\xff broken")
    main(["--model", str(saved_model), "--data", str(data), "--json", str(tmp_path / "eval.json"),
          "--save-usage", str(tmp_path / "usage.json"), "--batch-size", "3"])
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["num_tokens"] == 4 * 8 * 8 and metrics["num_images"] == 4 and metrics["codebook_size"] == 256
    assert "psnr" in metrics and "ssim" in metrics
    assert "lpips" not in metrics and "rfid" not in metrics and "l1" not in metrics
    notes = " ".join(metrics["notes"])
    assert "corrupt.jpg" in notes and "LPIPS unavailable" in notes and "rFID unavailable" in notes
    assert "L1 error unavailable: pass --l1-scale FILE" in notes
    counts = json.loads((tmp_path / "usage.json").read_text())["counts"]
    assert len(counts) == 256 and sum(counts) == metrics["num_tokens"]
    # the JSON's usage and perplexity are those of the saved counts
    assert metrics["usage"] == sum(c > 0 for c in counts) / 256
    entropy = -sum(c / sum(counts) * math.log(c / sum(counts)) for c in counts if c)
    assert metrics["perplexity"] == pytest.approx(math.exp(entropy), rel=1e-9)
    out = capsys.readouterr().out
    assert "| usage |" in out and out.count("| data |") == 1  # plain VQ: no table per level
    assert "levels" not in metrics and "levels" not in json.loads((tmp_path / "usage.json").read_text())


def test_cli_reports_each_scale_of_a_multiscale_tokenizer(tmp_path, capsys):
    """A second table, one row per scale of each data set, as in the JSON; the usage file sums each scale's counts
    over the data sets."""
    typed_model("multiscale").save_pretrained(tmp_path / "ms")  # scales 1, 3, 5, 8
    first, second = write_images(tmp_path / "a", count=3), write_images(tmp_path / "b", count=2, seed=1)
    main(["--model", str(tmp_path / "ms"), "--data", str(first), str(second), "--json", str(tmp_path / "eval.json"),
          "--save-usage", str(tmp_path / "usage.json"), "--batch-size", "2"])
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "eval.json").read_text())
    assert "| data | scale | usage | perplexity | num_tokens | tokens_per_code |" in out
    for data, images in ((first, 3), (second, 2)):
        levels = results[str(data)]["levels"]
        assert [level["num_tokens"] for level in levels] == [images * s * s for s in (1, 3, 5, 8)]
        for level in levels:
            assert (f"| {data} | {level['label']} | {level['usage']:.2%} | {level['perplexity']:.4f} | "
                    f"{level['num_tokens']} | {level['tokens_per_code']:.4f} |") in out
    saved = load_usage_file(tmp_path / "usage.json", 256)
    assert list(saved.levels) == ["scale 1x1", "scale 3x3", "scale 5x5", "scale 8x8"]
    assert [level.num_tokens for level in saved.levels.values()] == [5 * s * s for s in (1, 3, 5, 8)]


def test_lpips_is_reported_when_its_weights_are_given(tmp_path, saved_model):
    vgg, linear = write_lpips_weights(tmp_path / "lpips")
    data = write_images(tmp_path / "data", count=2)
    main(["--model", str(saved_model), "--data", str(data), "--json", str(tmp_path / "eval.json"),
          "--lpips-vgg", str(vgg), "--lpips-linear", str(linear)])
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert not any("LPIPS" in n for n in metrics["notes"])
    options = EvaluationOptions(weights={"lpips_vgg": str(vgg), "lpips_linear": str(linear)})
    expected, _ = run_evaluation(load_model(str(saved_model)), str(data), options, model_name="m", progress=False)
    assert metrics["lpips"] == expected["lpips"]  # the flags reach the metric


def test_a_metrics_own_weight_file_is_its_flag(tmp_path, saved_model):
    """The example metric's `l1_scale` option is `--l1-scale FILE`, made from what it declares."""
    data = write_images(tmp_path / "data", count=2)
    for scale in (1, 255):
        (tmp_path / f"scale-{scale}.txt").write_text(str(scale))
        main(["--model", str(saved_model), "--data", str(data), "--json", str(tmp_path / f"eval-{scale}.json"),
              "--l1-scale", str(tmp_path / f"scale-{scale}.txt")])
    unit, scaled = (json.loads((tmp_path / f"eval-{s}.json").read_text()) for s in (1, 255))
    assert scaled["l1"] == pytest.approx(255 * unit["l1"], rel=1e-6)
    assert not any("L1" in note for note in unit["notes"])


def test_training_output_folder_is_accepted(tmp_path, saved_model):
    assert load_model(str(tmp_path)).config.num_vq_embeddings == 256  # finds tmp_path/model


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [("missing", FileNotFoundError, "neither"), ("empty", ValueError, "No image files")],
)
def test_missing_or_empty_data_is_an_error_that_says_so(tmp_path, saved_model, data, error, match):
    (tmp_path / "empty").mkdir()
    with pytest.raises(error, match=match):
        main(["--model", str(saved_model), "--data", str(tmp_path / data), "--debug"])  # the exception itself


def test_a_model_that_does_not_exist_is_an_error_that_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local model folder nor a hub id"):
        load_model(str(tmp_path / "nope"))
