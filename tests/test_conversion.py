"""Conversion from the original FVQ / LlamaGen checkpoint layout, built from key names as the release writes them."""

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.conversion import convert, main

from .conftest import make_tiny_model, perturb_bridge

# fvq_hf name prefix -> the release's (tokenizer/tokenizer_image/vq_model_qbridge_release.py, qbridge_ViT.py)
RELEASE_NAMES = [
    ("quantizer.embedding.", "quantize.embedding."),
    ("quantizer.bridge.patch_embed.", "quantize.qbridge.x_embedder.proj."),
    ("quantizer.bridge.blocks.", "quantize.qbridge.blocks."),
    ("quantizer.bridge.proj_out.", "quantize.qbridge.final_layer.linear."),
    ("quantizer.bridge.layers.", "quantize.qbridge.linear_5."),
    ("quantizer.bridge.linear.", "quantize.qbridge.linear."),
]


def release_checkpoint(model: FVQModel, prefix: str = "") -> dict:
    """A training checkpoint as the release saves it: {"model": ..., "optimizer": ..., "steps": ...}."""
    state = {}
    for key, value in model.state_dict().items():
        for ours, theirs in RELEASE_NAMES:
            if key.startswith(ours):
                key = theirs + key[len(ours):]
                break
        state[prefix + key] = value.clone()
    state[prefix + "quantize.codebook_used"] = torch.zeros(65536)
    return {"model": state, "optimizer": {}, "steps": 400000}


@pytest.mark.parametrize("bridge_type", ["vqbridge", "linear", "mlp", "none"])
def test_every_bridge_layout_converts_exactly(bridge_type):
    # Heads cannot be read off tensor shapes: conversion assumes the published 4.
    model = make_tiny_model(bridge_type=bridge_type, bridge_num_heads=4, bridge_depth=4 if bridge_type == "mlp" else 2,
                            bridge_hidden_size=8 if bridge_type == "mlp" else 32)
    if bridge_type == "vqbridge":
        perturb_bridge(model)
    checkpoint = release_checkpoint(model)
    converted, dropped = convert(checkpoint, sample_size=32)
    assert dropped == ["quantize.codebook_used"]
    assert converted.config.bridge_type == bridge_type
    assert converted.config.block_out_channels == model.config.block_out_channels
    for key, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(converted.eval().tokenize(images), model.eval().tokenize(images))


def test_plain_vqgan_format_and_ddp_prefixes():
    folded = make_tiny_model().fold_bridge()
    converted, _ = convert(release_checkpoint(folded, prefix="module."))
    assert converted.config.bridge_type == "none"


def test_unknown_and_missing_keys_are_named():
    checkpoint = release_checkpoint(make_tiny_model(bridge_type="none"))
    checkpoint["model"]["quantize.extra_projection.weight"] = torch.zeros(2)
    del checkpoint["model"]["decoder.conv_out.bias"]
    with pytest.raises(ValueError, match=r"missing: \['decoder.conv_out.bias'\].*unknown: \['quantize.extra_projection"):
        convert(checkpoint)


def test_config_mismatch_is_named(tmp_path):
    checkpoint = release_checkpoint(make_tiny_model(bridge_type="none"))
    config = {**make_tiny_model(bridge_type="none").config, "num_vq_embeddings": 512}
    with pytest.raises(ValueError, match="wrong shape.*quantizer.embedding.weight"):
        convert(checkpoint, config)


def test_cli(tmp_path, capsys):
    model = make_tiny_model(bridge_num_heads=4)
    perturb_bridge(model)
    torch.save(release_checkpoint(model), tmp_path / "0400000.pt")
    main(["--checkpoint", str(tmp_path / "0400000.pt"), "--output", str(tmp_path / "out"), "--sample-size", "32",
          "--fold"])
    assert "dropped ['quantize.codebook_used']" in capsys.readouterr().out
    loaded = FVQModel.from_pretrained(tmp_path / "out")
    assert loaded.config.bridge_type == "vqbridge" and loaded.config.sample_size == 32
    assert FVQModel.from_pretrained(tmp_path / "out-folded").config.bridge_type == "none"


def test_cli_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        main(["--checkpoint", str(tmp_path / "none.pt"), "--output", str(tmp_path / "out")])
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="Cannot read"):
        main(["--checkpoint", str(tmp_path / "bad.pt"), "--output", str(tmp_path / "out")])
    torch.save({"model": {"args": "x"}}, tmp_path / "notstate.pt")
    with pytest.raises(ValueError, match="Not a state dict"):
        main(["--checkpoint", str(tmp_path / "notstate.pt"), "--output", str(tmp_path / "out")])
