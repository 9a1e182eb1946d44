"""`fvq-convert`: the command line over `FVQModel.from_original_checkpoint` (parity lives in tests/models)."""

from pathlib import Path

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.cli.convert import main
from fvq_hf.conversion.original_info import OriginalCheckpointInfo

from ..helpers import assert_matches_original, load_fixture, original_file, vqgan_lc_file


def test_cli_writes_model_info_and_fold(tmp_path, capsys):
    path, tensors = original_file("fvq_release_vit", tmp_path)
    main([str(path), "--output", str(tmp_path / "out"), "--sample-size", "16", "--fold"])
    out = capsys.readouterr().out
    assert "layout fvq-vit, ema weights, bridge vqbridge, quantizer vq, K = 256" in out and "out-folded" in out
    loaded = FVQModel.from_pretrained(tmp_path / "out")
    assert loaded.config.bridge_type == "vqbridge" and loaded.config.sample_size == 16
    folded = FVQModel.from_pretrained(tmp_path / "out-folded")
    assert folded.config.bridge_type == "none"
    assert_matches_original(folded.eval(), tensors)
    info = OriginalCheckpointInfo.load(tmp_path / "out")
    assert info.source == path.name and info.args["QB_type"] == "QBridge-XS/2"


def test_cli_flags_reach_the_conversion(tmp_path):
    path, _ = original_file("llamagen_vq8", tmp_path)
    main([str(path), "--output", str(tmp_path / "out"), "--no-codebook-l2-norm", "--weights", "model"])
    info = OriginalCheckpointInfo.load(tmp_path / "out")
    assert (info.codebook_l2_norm, info.l2_norm_reason, info.weights) == (False, "given by the caller", "model")


def test_cli_residual_depth_gives_the_residual_tokenizer(tmp_path, capsys):
    path, tensors = original_file("fvq_dit_uncond", tmp_path)
    main([str(path), "--output", str(tmp_path / "out"), "--residual-depth", "4"])
    assert "bridge none, quantizer residual" in capsys.readouterr().out
    assert FVQModel.from_pretrained(tmp_path / "out").quantizer.num_levels == 4
    err = run_error([str(path), "--output", str(tmp_path / "bad"), "--residual-depth", "0"], capsys)
    assert "depth must be an integer >= 1, got 0" in err


def test_cli_scales_of_a_var_file_are_checked_against_its_statistics(tmp_path, capsys):
    path, _ = original_file("var_original", tmp_path)
    main([str(path), "--output", str(tmp_path / "out"), "--scales", "1", "2", "4", "6", "8", "10", "12", "13", "14", "16"])
    assert "layout var, bare weights, bridge none, quantizer multiscale" in capsys.readouterr().out
    assert FVQModel.from_pretrained(tmp_path / "out").quantizer.scales == [1, 2, 4, 6, 8, 10, 12, 13, 14, 16]
    err = run_error([str(path), "--output", str(tmp_path / "bad"), "--scales", "1", "2", "8"], capsys)
    assert "has 10 scales (rows of quantize.ema_vocab_hit_SV), but the scales given [1, 2, 8] are 3" in err
    err = run_error([str(path), "--output", str(tmp_path / "bad"), "--scales", *map(str, range(1, 11))], capsys)
    assert "The last multi-scale scale must be the latent grid, sample_size / 16 = 16; got scales [1, 2, 3" in err


def run_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fvq-convert: error: ") and "Traceback" not in err
    return err


def test_cli_user_errors_exit_2_without_traceback(tmp_path, capsys):
    out = ["--output", str(tmp_path / "out")]
    assert "No checkpoint file at" in run_error([str(tmp_path / "none.pt"), *out], capsys)
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert "Cannot read" in run_error([str(tmp_path / "bad.pt"), *out], capsys)
    torch.save({"model": {}, "args": Path("x")}, tmp_path / "pickle.pt")
    assert "--trust-pickle" in run_error([str(tmp_path / "pickle.pt"), *out], capsys)
    assert "not in the local Hub cache" in run_error(["org/none", "--filename", "vq.pt", *out], capsys)
    assert not (tmp_path / "out").exists()


def test_cli_debug_shows_the_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        main([str(tmp_path / "none.pt"), "--output", str(tmp_path / "out"), "--debug"])


def convert_release_file(tmp_path: Path, fixture: str, release_name: str) -> Path:
    """A fixture written under a release's file name and converted with fvq-convert; returns the output folder."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path, _ = original_file(fixture, tmp_path)
    path = path.rename(tmp_path / release_name)
    main([str(path), "--output", str(tmp_path / "converted")])
    return tmp_path / "converted"


def test_card_of_a_converted_release_says_where_it_comes_from(tmp_path):
    folder = convert_release_file(tmp_path, "llamagen_vq16", "vq_ds16_c2i.pt")
    card = FVQModel.from_pretrained(folder).model_card("org/llamagen-vq16")
    text = str(card)
    assert "## Where the weights come from" in text and "vq_ds16_c2i.pt" in text and "layout `vqgan`" in text
    assert "Reported by the original authors (their numbers, not measured here)" in text and "rFID 2.19" in text
    assert "Codes are l2-normalised (release rule" in text
    assert (card.data.license, card.data.base_model) == ("mit", "FoundationVision/LlamaGen")
    folder = convert_release_file(tmp_path / "fvq", "fvq_dit_uncond", "0400000.pt")
    card = FVQModel.from_pretrained(folder).model_card("org/fvq")
    assert card.data.license == "unknown" and "states no licence" in str(card) and "folded" in str(card)


def test_publish_converted_refuses_a_folder_that_is_not_a_converted_original(tmp_path, capsys):
    from fvq_hf.cli.publish import main as publish_main

    FVQModel.from_pretrained(convert_release_file(tmp_path, "llamagen_vq8", "vq_ds8_c2i.pt")).save_pretrained(
        tmp_path / "resaved")
    with pytest.raises(SystemExit) as exit_info:
        publish_main(["--converted", str(tmp_path / "resaved"), "--repo-id", "org/x"])
    assert exit_info.value.code == 2 and "not a converted original" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        publish_main(["--converted", str(tmp_path / "resaved")])  # no --repo-id
    assert "--repo-id" in capsys.readouterr().err


def test_cli_keep_bridge_keeps_a_dit_bridge_trainable(tmp_path, capsys):
    path, tensors = original_file("fvq_dit_uncond", tmp_path)
    main([str(path), "--output", str(tmp_path / "out"), "--keep-bridge", "--dit-label", "0", "--num-heads", "4",
          "--fold"])
    assert "bridge dit, quantizer vq" in capsys.readouterr().out
    kept = FVQModel.from_pretrained(tmp_path / "out")
    assert kept.config.bridge_type == "dit" and kept.config.bridge_config["label"] == 0
    assert OriginalCheckpointInfo.load(tmp_path / "out").decisions == {"kept_bridge": True}
    assert_matches_original(FVQModel.from_pretrained(tmp_path / "out-folded").eval(), tensors)
    err = run_error([str(original_file("llamagen_vq8", tmp_path)[0]), "--output", str(tmp_path / "bad"),
                     "--keep-bridge"], capsys)
    assert ("keep_bridge is an option of the layouts var+fvq-dit, fvq-dit, vqgan-lc, not of this file's layout "
            "'vqgan'") in err


def test_cli_converts_a_vqgan_lc_release_and_its_card_says_whose_it_is(tmp_path, capsys):
    path, tensors = vqgan_lc_file("vqgan_lc_f16", tmp_path, filename="vqgan-lc-100K-f16-dim8.pth")
    main([str(path), "--output", str(tmp_path / "out"), "--keep-bridge", "--fold"])
    assert "layout vqgan-lc, state_dict weights, bridge lc-linear, quantizer vq, K = 256" in capsys.readouterr().out
    assert_matches_original(FVQModel.from_pretrained(tmp_path / "out-folded").eval(), tensors)
    card = FVQModel.from_pretrained(tmp_path / "out").model_card("org/vqgan-lc")
    text = str(card)
    assert "VQGAN-LC (Zhu et al." in text and "rFID 2.62" in text and "VQGAN-LC repository states no licence" in text
    assert "projector: lc-linear (use_cblinear 1)" in text and card.data.license == "unknown"


def test_cli_has_a_flag_for_the_option_of_a_registered_layout(tmp_path):
    """The example layout's option (`codebook_from_ema`, registered by the test suite) is `--codebook-from-ema`."""
    _, tensors = load_fixture("llamagen_vq16")
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    table = state["quantize.embedding.weight"]
    state.update({"quantize.cluster_size": torch.full((table.shape[0],), 4.0), "quantize.embed_avg": 8 * table})
    torch.save(state, tmp_path / "ema.pt")
    main([str(tmp_path / "ema.pt"), "--output", str(tmp_path / "out"), "--codebook-from-ema", "--codebook-l2-norm"])
    info = OriginalCheckpointInfo.load(tmp_path / "out")
    assert info.decisions == {"codebook": "the EMA statistics (embed_avg / cluster_size)"}
    assert torch.equal(FVQModel.from_pretrained(tmp_path / "out").quantizer.embedding.weight, 2 * table)


def test_output_is_written_all_at_once_and_an_existing_one_only_with_overwrite(tmp_path, capsys, monkeypatch):
    path, _ = original_file("llamagen_vq8", tmp_path)
    out, mine = tmp_path / "out", tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    err = run_error([str(path), "--output", str(mine)], capsys)
    assert f"{mine} exists; choose another output or pass --overwrite to replace it" in err
    err = run_error([str(path), "--output", str(mine), "--overwrite"], capsys)  # not an earlier output: kept
    assert "is not an earlier output of this command" in err and (mine / "notes.txt").read_text() == "mine"
    main([str(path), "--output", str(out), "--fold"])
    inside = out / path.name
    inside.write_bytes(path.read_bytes())
    err = run_error([str(inside), "--output", str(out), "--overwrite"], capsys)  # would delete its own source
    assert "holds the checkpoint" in err and inside.is_file()
    inside.unlink()
    (out / "notes.txt").write_text("old")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a failure mid-write (the folded folder's provenance file) leaves both earlier folders as they were
    calls = []

    def fail_second(self, folder):
        calls.append(folder)
        if len(calls) == 2:
            raise OSError("disk full")
        return save(self, folder)

    save = OriginalCheckpointInfo.save
    monkeypatch.setattr(OriginalCheckpointInfo, "save", fail_second)
    err = run_error([str(path), "--output", str(out), "--overwrite", "--fold"], capsys)
    assert "disk full" in err and {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (tmp_path / "out-folded" / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".tmp", ".old"))] == []  # nothing left aside
    monkeypatch.undo()
    main([str(path), "--output", str(out), "--overwrite"])
    assert not (out / "notes.txt").exists() and (out / "config.json").is_file()
    assert (out / "original_checkpoint.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".tmp", ".old"))] == []
    main([str(path), "--output", str(tmp_path / "empty-is-fine")])  # a new or empty folder needs no flag
