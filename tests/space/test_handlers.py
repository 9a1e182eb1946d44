import json
from pathlib import Path

import handlers
import numpy as np
import pytest
import torch
from PIL import Image

from fvq_hf.data.image_io import load_image, prepare_images
from fvq_hf.evaluation.metrics import ImageQuality
from fvq_hf.evaluation.usage import CodeCounter, save_usage_file, usage_file_name

from ..helpers import ROOT, make_tiny_model, perturb_bridge, typed_model


def _write(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return str(path)


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    return [
        _write(tmp_path, "rgb.png", rgb),
        _write(tmp_path, "gray.png", rgb.convert("L")),
        _write(tmp_path, "rgba.png", rgb.convert("RGBA")),
        _write(tmp_path, "deep.png", Image.fromarray(np.arange(2000, dtype=np.uint16).reshape(40, 50) * 30)),
    ]


def test_reconstruct_every_mode_at_the_image_size(photos, model_dir):
    sheet, original, reconstruction, rows, token_maps, rarity_maps, summary = handlers.reconstruct(photos, model_dir)
    assert len(rows) == len(token_maps) == len(rarity_maps) == 4
    # 50 x 40 photos: reconstructed at their short side, 40 px (a multiple of the downsample factor 4), not 32
    assert original.size == reconstruction.size == (40, 40)
    assert sheet.size == (40 * 6 * 2 + 8, 4 * 40 * 6 + 3 * 8)  # four rows of original | reconstruction
    # the first row: the pipeline's own reconstruction of the photo at 40 px, measured
    pipe, inputs = handlers.get_pipeline(model_dir), prepare_images(load_image(photos[0]), 40)
    with torch.no_grad():
        out = pipe(inputs, output_type="pt", resolution=40)
    quality = ImageQuality()
    quality.update(inputs, out.images)
    expected = quality.compute()
    assert rows[0] == ["rgb.png", 40, round(expected["psnr"], 2), round(expected["ssim"], 4),
                       out.usage[0]["distinct_codes"], round(out.usage[0]["perplexity"], 1)]
    assert token_maps[0][0].size == (250, 250) and rarity_maps[0][0].mode == "RGB"
    assert "distinct codes of 256" in summary and "No saved usage counts next to this model" in summary


def test_a_residual_tokenizer_shows_a_map_per_depth(photos, tmp_path):
    model = make_tiny_model(quantizer_type="residual", quantizer_config={"depth": 3})
    perturb_bridge(model)
    model.save_pretrained(tmp_path / "rq")
    _, _, _, rows, token_maps, rarity_maps, summary = handlers.reconstruct(photos[:2], str(tmp_path / "rq"))
    assert len(rows) == 2 and len(token_maps) == len(rarity_maps) == 6
    assert [label for _, label in token_maps[:3]] == [f"rgb.png: code ids, depth {k}" for k in (1, 2, 3)]
    assert "over 600 tokens" in summary  # 2 images x 10 x 10 positions x 3 depths


def test_a_multiscale_tokenizer_shows_a_map_per_scale_at_its_one_size(photos, tmp_path):
    model = make_tiny_model(quantizer_type="multiscale", quantizer_config={"scales": [1, 3, 8]})
    perturb_bridge(model)
    model.save_pretrained(tmp_path / "ms")
    _, original, _, rows, token_maps, _, summary = handlers.reconstruct(photos[:1], str(tmp_path / "ms"), resolution=40)
    assert original.size == (32, 32) and rows[0][1] == 32  # the only size it takes
    assert [label for _, label in token_maps] == [f"rgb.png: code ids, scale {s}x{s}" for s in (1, 3, 8)]
    assert "over 74 tokens" in summary


def test_a_chosen_resolution_is_rounded_down_to_the_downsample_factor(photos, model_dir):
    _, original, reconstruction, rows, *_ = handlers.reconstruct(photos[:1], model_dir, resolution=30)
    assert original.size == reconstruction.size == (28, 28) and rows[0][1] == 28
    image = Image.new("RGB", (2000, 900))
    assert handlers.reconstruction_size(image, 16) == handlers.MAX_SIDE
    assert handlers.reconstruction_size(Image.new("RGB", (10, 10)), 16) == 16


def test_rarity_against_the_saved_usage_counts(photos, model_dir, tmp_path):
    counts = [0] * 256
    counts[:128] = [1000] * 128  # a reference where half the codes are common and the rest never seen
    (Path(model_dir) / "usage.json").write_text(json.dumps({"counts": counts, "codebook_size": 256}))
    *_, rarity_maps, summary = handlers.reconstruct(photos[:1], model_dir)
    assert "against the model's saved usage counts (`usage.json`, 128,000 tokens, 500.0 per code)" in summary


def test_rarity_against_the_usage_counts_a_training_run_saved_beside_its_model(photos, model_dir):
    counter = CodeCounter(256)
    counter.update(torch.arange(128).repeat(10))
    name = usage_file_name("builtin:heldout")  # as fvq-train names it, next to its output folder's model/
    save_usage_file(Path(model_dir).parent / name, counter, model_dir, "builtin:heldout")
    *_, summary = handlers.reconstruct(photos[:1], model_dir)
    assert f"against the model's saved usage counts (`{name}`, 1,280 tokens, 5.0 per code)" in summary


def test_bad_files_are_messages_not_tracebacks(photos, model_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    *_, summary = handlers.reconstruct([photos[0], str(tmp_path / "notes.txt"), str(tmp_path / "broken.jpg")],
                                       model_dir)
    assert "Skipped" in summary and "notes.txt" in summary and "broken.jpg" in summary
    with pytest.raises(handlers.SpaceError, match="No readable image"):
        handlers.reconstruct([str(tmp_path / "notes.txt")], model_dir)
    with pytest.raises(handlers.SpaceError, match="Upload at least one image"):
        handlers.reconstruct([], model_dir)


def test_huge_images_are_refused_with_a_message(tmp_path, model_dir, monkeypatch):
    import fvq_hf.data.image_io as image_io

    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 100)
    path = _write(tmp_path, "big.png", Image.new("RGB", (20, 20)))
    with pytest.raises(handlers.SpaceError, match="downscale"):
        handlers.reconstruct([path], model_dir)


def test_no_model_says_how_to_get_one(monkeypatch):
    monkeypatch.delenv("FVQ_MODEL", raising=False)
    with pytest.raises(handlers.SpaceError, match="fvq-train --config hub_configs/fvq-cpu-4k"):
        handlers.reconstruct([], None)
    with pytest.raises(handlers.SpaceError, match="Cannot load model"):
        handlers.get_pipeline("/no/such/model")


def test_the_default_model_is_read_from_the_environment(monkeypatch, model_dir):
    monkeypatch.setenv("FVQ_MODEL", model_dir)
    assert handlers.default_model() == model_dir


def test_usage_of_examples_and_uploads_counts_every_token(photos, model_dir):
    heatmap, histogram, summary = handlers.codebook_usage("examples", None, None, model_dir)
    assert heatmap.size == (16 * 32, 16 * 32)  # the 16 x 16 code grid, upscaled
    assert histogram.mode == "RGB" and "codes used" in summary and "too few" in summary
    _, _, summary = handlers.codebook_usage("uploaded images", photos, None, model_dir)
    assert f"{4 * 64:,} tokens" in summary


def test_a_usage_file_gives_the_heatmap_of_its_counts(tmp_path, model_dir):
    counts = [0] * 256
    counts[3], counts[200] = 50, 7
    path = tmp_path / "usage.json"
    path.write_text(json.dumps({"codebook_size": 256, "counts": counts}))
    heatmap, _, summary = handlers.codebook_usage("usage file", None, str(path), model_dir)
    assert "0.78% of 256 codes used (2)" in summary
    pixels = np.asarray(heatmap)
    assert (pixels == [220, 30, 30]).all(axis=-1).mean() == pytest.approx(254 / 256)  # dead codes in red
    path.write_text(json.dumps({"counts": [1, 2, 3]}))
    with pytest.raises(handlers.SpaceError, match="holds 3 counts; this model has 256"):
        handlers.codebook_usage("usage file", None, str(path), model_dir)
    path.write_text("not json")
    with pytest.raises(handlers.SpaceError, match="not a usage file"):
        handlers.codebook_usage("usage file", None, str(path), model_dir)


def test_a_usage_file_with_levels_gives_a_table_per_level(tmp_path):
    """A multi-scale model's usage file (2 images): the heatmap and summary of the pooled counts as before, and one
    row per scale with that scale's figures; the file written before levels were counted has no such table."""
    model = typed_model("multiscale")  # scales 1, 3, 5, 8
    model.save_pretrained(tmp_path / "ms")
    counter = CodeCounter.for_ids(model.quantizer.ids, 256)
    ids = torch.cat([torch.full((2, 1), 7), torch.arange(9).repeat(2, 1), torch.zeros(2, 25 + 64, dtype=torch.long)],
                    dim=1)  # (2, 99): code 7 at 1x1, codes 0-8 once each at 3x3 in each image, code 0 elsewhere
    counter.update(ids, model.quantizer.split_levels(ids))
    save_usage_file(tmp_path / "usage.json", counter, str(tmp_path / "ms"), "two images")
    heatmap, _, summary = handlers.codebook_usage("usage file", None, str(tmp_path / "usage.json"), str(tmp_path / "ms"))
    assert "3.52% of 256 codes used (9)" in summary and "198 tokens" in summary  # pooled: codes 0-8 (and 7)
    assert (np.asarray(heatmap) == [220, 30, 30]).all(axis=-1).mean() == pytest.approx(247 / 256)
    assert "Per scale:" in summary and "| data | scale | usage | perplexity | num_tokens | tokens_per_code |" in summary
    assert "| usage file | scale 1x1 | 0.39% | 1.0000 | 2 | 0.0078 |" in summary
    assert "| usage file | scale 3x3 | 3.52% | 9.0000 | 18 | 0.0703 |" in summary
    assert "| usage file | scale 8x8 | 0.39% | 1.0000 | 128 | 0.5000 |" in summary
    pooled = {"codebook_size": 256, "counts": counter.counts.tolist()}  # the schema before levels
    (tmp_path / "usage.json").write_text(json.dumps(pooled))
    _, _, summary = handlers.codebook_usage("usage file", None, str(tmp_path / "usage.json"), str(tmp_path / "ms"))
    assert "3.52% of 256 codes used (9)" in summary and "Per scale" not in summary


def test_codes_counted_on_images_are_shown_per_depth(photos, tmp_path):
    model = typed_model("residual")  # depth 3
    model.save_pretrained(tmp_path / "rq")
    _, _, summary = handlers.codebook_usage("uploaded images", photos[:2], None, str(tmp_path / "rq"))
    assert "384 tokens" in summary and "Per depth:" in summary  # 2 images x 8 x 8 positions x 3 depths
    rows = [line for line in summary.splitlines() if line.startswith("| uploaded images | depth")]
    assert [row.split(" | ")[1] for row in rows] == ["depth 1", "depth 2", "depth 3"]
    assert all(row.split(" | ")[4] == "128" for row in rows)


def test_code_colors_are_fixed_per_id():
    ids = np.array([[0, 1], [1, 4095]])
    colors = handlers.code_colors(ids, 4096)
    assert colors.shape == (2, 2, 3) and colors.dtype == np.uint8
    assert (colors[0, 1] == colors[1, 0]).all() and not (colors[0, 0] == colors[0, 1]).all()


@pytest.mark.slow
def test_a_262k_code_model_runs_on_a_cpu(tmp_path):
    """The published fvq-262k architecture (148M parameters, untrained) loads and reconstructs in the Space."""

    from fvq_hf import FVQModel

    config = FVQModel.load_config(ROOT / "hub_configs" / "fvq-262k")
    FVQModel.from_config(config).save_pretrained(tmp_path / "fvq-262k")
    photo = _write(tmp_path, "photo.png", Image.new("RGB", (300, 260), (120, 60, 30)))
    sheet, _, _, rows, token_maps, _, summary = handlers.reconstruct([photo], str(tmp_path / "fvq-262k"))
    assert sheet.size == (256 * 2 + 8, 256) and rows[0][1] == 256
    assert "of 262,144" in summary
    heatmap, _, _ = handlers.codebook_usage("uploaded images", [photo], None, str(tmp_path / "fvq-262k"))
    assert heatmap.size == (512, 512)  # the 512 x 512 code grid


def test_an_original_checkpoint_file_is_converted_on_the_fly(photos, tmp_path):
    from ..helpers import original_file

    path, _ = original_file("llamagen_vq8", tmp_path)
    sheet, original, *_ = handlers.reconstruct(photos[:1], str(path))
    assert original.size == (40, 40) and sheet.width > 2 * 40
    assert handlers.get_pipeline(str(path)).vq.config.codebook_l2_norm  # LlamaGen's d = 8 release rule


def test_a_dit_bridge_tokenizer_shows_its_reconstructions(photos, tmp_path):
    model = make_tiny_model(bridge_type="dit")
    perturb_bridge(model)
    model.save_pretrained(tmp_path / "dit")
    _, _, _, rows, token_maps, _, summary = handlers.reconstruct(photos[:1], str(tmp_path / "dit"))
    assert len(rows) == 1 and rows[0][4] > 1 and len(token_maps) == 1  # distinct codes: the bridge spread them
    assert "distinct codes of 256" in summary
