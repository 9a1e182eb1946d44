"""Every command's user errors: `fvq-<cmd>: error: <what>` on stderr, exit status 2, no traceback."""

import json

import pytest
import torch

from fvq_hf.cli.build_codebook import main as build_codebook
from fvq_hf.cli.convert import main as convert
from fvq_hf.cli.eval import main as evaluate
from fvq_hf.cli.extract_codes import main as extract_codes
from fvq_hf.cli.publish import main as publish
from fvq_hf.cli.train import main as train
from fvq_hf.cli.train_transformer import main as train_transformer
from fvq_hf.data.table_file import save_table

from ..helpers import make_tiny_model, original_file, vqgan_lc_file, write_config, write_images, write_shards

COMMANDS = {"fvq-train": train, "fvq-train-transformer": train_transformer, "fvq-eval": evaluate,
            "fvq-extract-codes": extract_codes, "fvq-convert": convert, "fvq-publish": publish,
            "fvq-build-codebook": build_codebook}


@pytest.fixture
def files(tmp_path):
    """A tiny config and model, an image folder, an empty folder, corrupt images and truncated weights."""
    write_config(tmp_path / "config")
    write_config(tmp_path / "config-k0", num_vq_embeddings=0)
    write_images(tmp_path / "images", count=4)
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt").mkdir()
    for i in range(3):
        (tmp_path / "corrupt" / f"{i}.png").write_bytes(b"not an image")
    make_tiny_model().save_pretrained(tmp_path / "model")
    make_tiny_model().save_pretrained(tmp_path / "truncated")
    weights = tmp_path / "truncated" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (tmp_path / "not-a-checkpoint.pt").write_text("hello")
    dit = {"bridge_type": "dit"}
    write_config(tmp_path / "dit-key", **dit, bridge_config={"heads": 4})
    write_config(tmp_path / "dit-patch", **dit, bridge_config={"patch_size": 3})
    write_config(tmp_path / "dit-label", **dit, bridge_config={"num_labels": 1, "label": 3})
    original_file("llamagen_vq8", tmp_path)
    path, _ = original_file("fvq_dit_uncond", tmp_path)
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["ema" if "ema" in checkpoint else "model"]["quantize.qbridge.blocks.0.attn.qkv.weight"]
    torch.save(checkpoint, tmp_path / "dit-damaged.pt")
    write_config(tmp_path / "config-type", num_vq_embeddings="many")
    make_tiny_model().save_pretrained(tmp_path / "model-type")
    config = json.loads((tmp_path / "model-type" / "config.json").read_text())
    (tmp_path / "model-type" / "config.json").write_text(json.dumps({**config, "vq_embed_dim": "eight"}))
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / ".fvq-train.lock").write_text(json.dumps({"pid": 1, "host": "another-host",
                                                                     "started": "2026-12-01 09:00:00"}))
    write_shards(tmp_path / "shards", shards=2)
    shard = tmp_path / "shards" / "shard-001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])  # truncated mid-file
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"_class_name": "FVQTransformer"}))
    # VQGAN-LC: a (256, 48) table under their projector; tables that do not fit it; one of their files, damaged
    write_config(tmp_path / "lc", bridge_type="lc-linear", bridge_config=None, table_dim=48)
    save_table(tmp_path / "table-k.safetensors", torch.randn(128, 48))
    save_table(tmp_path / "table-d.safetensors", torch.randn(256, 49))
    torch.save({"weight": torch.randn(256, 48)}, tmp_path / "table-dict.pth")
    path, _ = vqgan_lc_file("vqgan_lc_f16", tmp_path)
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["state_dict"]["codebook_projection.bias"]
    torch.save(checkpoint, tmp_path / "lc-damaged.pth")
    return tmp_path


TRAIN = ["--resolution", "32", "--max-steps", "1", "--num-workers", "0", "--report-to", "none", "--batch-size", "2",
         "--samples-per-epoch", "4"]
BUILD = ["--output", "{t}/table.safetensors", "--data", "{t}/images", "--num-workers", "0", "--codebook-size", "4"]
CASES = [
    ("fvq-train", ["--config", "{t}/config", "--data", "{t}/no-such-folder", *TRAIN], "no-such-folder"),
    ("fvq-train", ["--config", "{t}/no-such-config", "--data", "builtin", *TRAIN], "path does not exist"),
    ("fvq-train", ["--config", "{t}/config", "--data", "{t}/empty", *TRAIN], "empty"),
    ("fvq-train", ["--config", "{t}/config-k0", "--data", "builtin", *TRAIN], "num_vq_embeddings"),
    ("fvq-train", ["--config", "{t}/config", "--data", "builtin", "--lr", "-1", *TRAIN], "--lr must be > 0"),
    ("fvq-train", ["--config", "{t}/gpt", "--data", "builtin", *TRAIN], "not an FVQModel one"),
    ("fvq-train", ["--config", "{t}/config", "--data", "{t}/corrupt", *TRAIN], "corrupt"),
    ("fvq-train", ["--config", "{t}/dit-key", "--data", "builtin", *TRAIN], "['heads'] do not exist for the DiT"),
    ("fvq-train", ["--config", "{t}/dit-patch", "--data", "builtin", *TRAIN], "as a grid of 3x3 patches"),
    ("fvq-train", ["--config", "{t}/dit-label", "--data", "builtin", *TRAIN], "label 3 is outside its label table"),
    ("fvq-train", ["--config", "{t}/lc", "--data", "builtin", "--init-table", "{t}/table-k.safetensors", *TRAIN],
     "is (128, 48) (K, D), but the model's table is (256, 48): set num_vq_embeddings=128"),
    ("fvq-train", ["--config", "{t}/lc", "--data", "builtin", "--init-table", "{t}/table-d.safetensors", *TRAIN],
     "set num_vq_embeddings=256 and table_dim=49"),
    ("fvq-train", ["--config", "{t}/lc", "--data", "builtin", "--init-table", "{t}/table-dict.pth", *TRAIN],
     "holds dict, not a (K, D) floating-point table"),
    ("fvq-train", ["--config", "{t}/lc", "--data", "builtin", "--init-table", "{t}/no-table.safetensors", *TRAIN],
     "No codebook table file at"),
    ("fvq-train", ["--config", "{t}/lc", "--data", "builtin", "--init-table", "{t}/not-a-checkpoint.pt", *TRAIN],
     "not-a-checkpoint.pt is not a torch file holding one tensor"),
    ("fvq-convert", ["{t}/lc-damaged.pth", "--output", "{t}/lc-out"], "missing: ['codebook_projection.bias']"),
    ("fvq-convert", ["{t}/dit-damaged.pt", "--output", "{t}/out", "--keep-bridge"],
     "missing: ['quantizer.bridge.blocks.0.attn.qkv.weight']"),
    ("fvq-train", ["--config", "{t}/config-type", "--data", "builtin", *TRAIN],
     "FVQModel config: 'num_vq_embeddings' must be an integer, got 'many' (str)"),
    ("fvq-train", ["--config", "{t}/config", "--data", "builtin", "--output-dir", "{t}/locked", *TRAIN],
     "is in use by another live run (pid 1 on another-host, since 2026-12-01 09:00:00)"),
    ("fvq-eval", ["--model", "{t}/model-type", "--data", "{t}/images"], "'vq_embed_dim' must be an integer"),
    ("fvq-train", ["--config", "{t}/config", "--data", "{t}/shards/shard-{{000..001}}.tar", *TRAIN],
     "--samples-per-epoch does not apply to streamed data"),
    ("fvq-train", ["--config", "{t}/config", "--data", "builtin", "--streaming", *TRAIN],
     "--streaming reads hf:<name> or tar shards"),
    ("fvq-train", ["--config", "{t}/config", "--data", "{t}/no-shards/{{0..3}}.tar", *TRAIN[:-2]],
     "4 of 4 shards do not exist"),
    ("fvq-train", ["--config", "{t}/config", "--data", "builtin", "--ema-decay", "1", *TRAIN], "--ema-decay must lie"),
    ("fvq-train", ["--config", "{t}/config", "--data", "{t}/shards/shard-{{000..001}}.tar", *TRAIN[:-2],
                   "--max-steps", "50", "--num-workers", "1"], "A tar shard of the training data cannot be read"),
    ("fvq-train", ["--config", "{t}/config", "--data", "builtin", "--init-weights", "--add-bridge", "linear",
                   "--bridge-config", "{{depth", *TRAIN], "argument --bridge-config: not JSON"),
    ("fvq-train", ["--config", "{t}/model", "--data", "builtin", "--init-weights", "--add-bridge", "linear", *TRAIN],
     "already has a bridge"),
    ("fvq-extract-codes", ["--tokenizer", "{t}/model-type", "--data", "{t}/images", "--output-dir", "{t}/c2"],
     "'vq_embed_dim' must be an integer"),
    ("fvq-convert", ["{t}/llamagen_vq8.pt", "--output", "{t}/out", "--config", "{t}/config-type"],
     "'num_vq_embeddings' must be an integer"),
    ("fvq-eval", ["--model", "{t}/no-such-model", "--data", "{t}/images"], "path does not exist"),
    ("fvq-eval", ["--model", "{t}/truncated", "--data", "{t}/images"], "diffusion_pytorch_model.safetensors"),
    ("fvq-eval", ["--model", "{t}/model", "--data", "{t}/corrupt"], "corrupt"),
    ("fvq-convert", ["{t}/not-a-checkpoint.pt", "--output", "{t}/out"], "not a checkpoint"),
    ("fvq-extract-codes", ["--tokenizer", "{t}/no-such-tokenizer", "--data", "{t}/images", "--output-dir", "{t}/c"],
     "path does not exist"),
    ("fvq-train-transformer", ["--config", "{t}/gpt", "--codes", "{t}/no-codes"], "no-codes"),
    ("fvq-publish", ["--converted", "{t}/model"], "--repo-id"),
    ("fvq-build-codebook", ["--encoder", "no-org/no-such-encoder", *BUILD], "--encoder no-org/no-such-encoder: "
     "no-org/no-such-encoder/config.json is not in the local Hub cache and cannot be downloaded now"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD, "--pool", "3"],
     "--pool 3 does not divide the 8x8 feature grid of {t}/model: use one of 1, 2, 4, 8"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD[:-2], "--data", "builtin", "--codebook-size", "8"],
     "--codebook-size 8 is smaller than the 14 groups (classes): each needs at least one centre"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD[:-2], "--codebook-size", "100", "--groups", "global",
                            "--pool", "2"], "Group 'all' has at most 64 samples for its 100 centres"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD[:-2], "--codebook-size", "100", "--pool", "2",
                            "--samples-per-group", "10"], "has at most 10 samples for its 100 centres (the cap"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD[2:], "--output", "{t}/images/img0.png/t.safetensors"],
     "--output {t}/images/img0.png/t.safetensors cannot be written"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD[2:], "--output", "{t}/model/config.json"],
     "exists; choose another path or pass --overwrite"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD[2:], "--output", "{t}/table.pt"],
     "a table file is safetensors; name it {t}/table.safetensors"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD[:-2], "--data", "{t}/shards/shard-{{000..001}}.tar",
                            "--codebook-size", "4"], "a stream has no classes unless --label-column names"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD[:-2], "--codebook-size", "0"],
     "--codebook-size must be >= 1"),
    ("fvq-extract-codes", ["--tokenizer", "{t}/model", "--data", "{t}/shards/shard-{{000..001}}.tar", "--label-column",
                           "nope", "--output-dir", "{t}/codes-streamed", "--num-workers", "0"],
     "--label-column 'nope' is not a column of the stream"),
    ("fvq-build-codebook", ["--encoder", "{t}/model", *BUILD, "--kmeans-iterations", "-1"],
     "--kmeans-iterations must be >= 0 (0: a random selection of samples), got -1"),
]


@pytest.mark.parametrize("command, argv, message", CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_user_errors_exit_2_with_a_message(command, argv, message, files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        COMMANDS[command]([a.format(t=files) for a in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{command}: error: ") and message.format(t=files) in last, err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(files):
    with pytest.raises(FileNotFoundError):
        evaluate(["--model", f"{files}/no-such-model", "--data", f"{files}/images", "--debug"])
