"""Fine-tuning released weights: folders written by `fvq-convert` from the original layouts (the conversion
parity fixtures: LlamaGen's VQ-16 and the FVQ authors' fold), trained a few steps by `fvq-train --init-weights`,
as they are or with a fresh bridge over their codebook (`--add-bridge`)."""

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.cli.convert import main as convert
from fvq_hf.training.trainer import TrainResult, train

from ..helpers import make_tiny_model, original_file
from .runs import saved_weights, tiny_config

LAYOUTS = {"llamagen_vq16": True, "fvq_fold_vqgan": False}  # codebook l2-normalised?


def _converted(name: str, tmp_path) -> str:
    folder = tmp_path / f"converted-{name}"
    convert([str(original_file(name, tmp_path)[0]), "--output", str(folder)])
    return str(folder)


def _fine_tune(tmp_path, folder: str, **changes) -> TrainResult:
    return train(tiny_config(tmp_path, max_steps=2, init_weights=True, config=folder, **changes))


@pytest.mark.parametrize("name", LAYOUTS)
def test_converted_weights_fine_tune_from_where_they_are(name, tmp_path):
    folder = _converted(name, tmp_path)
    converted = saved_weights(folder)
    assert FVQModel.from_pretrained(folder).config.codebook_l2_norm == LAYOUTS[name]
    _fine_tune(tmp_path, folder, lr=1e-9)  # two steps of at most 1e-9 each: the weights barely move
    tuned = saved_weights(tmp_path / "run" / "model")
    assert tuned.keys() == converted.keys()
    for key in converted:
        torch.testing.assert_close(tuned[key], converted[key], rtol=0, atol=1e-8, msg=key)
    assert "Fine-tuned from" in (tmp_path / "run" / "model" / "README.md").read_text()


@pytest.mark.parametrize("name, bridge", [("fvq_fold_vqgan", "vqbridge"), ("llamagen_vq16", "linear")])
def test_a_fresh_bridge_over_a_converted_codebook_trains(name, bridge, tmp_path):
    folder = _converted(name, tmp_path)
    converted = saved_weights(folder)
    model = _fine_tune(tmp_path, folder, add_bridge=bridge, bridge_config={"depth": 1} if bridge == "vqbridge" else {}
                       ).model
    assert model.config.bridge_type == bridge and model.config.codebook_l2_norm == LAYOUTS[name]
    if bridge == "vqbridge":
        assert model.config.bridge_config["depth"] == 1
    else:  # SimVQ's linear bridge freezes its table: the converted codebook, kept as it is
        assert torch.equal(model.quantizer.embedding.weight, converted["quantizer.embedding.weight"])
    tuned = saved_weights(tmp_path / "run" / "model")
    assert {k for k in tuned if k not in converted} == {k for k in tuned if k.startswith("quantizer.bridge.")} != set()
    assert FVQModel.from_pretrained(tmp_path / "run" / "model-folded").config.bridge_type == "none"
    assert f"with a fresh {bridge} bridge" in (tmp_path / "run" / "model" / "README.md").read_text()


def test_a_vqbridge_over_an_l2_normalised_codebook_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="codebook_l2_norm=True cannot be combined with the VQBridge"):
        _fine_tune(tmp_path, _converted("llamagen_vq16", tmp_path), add_bridge="vqbridge")


def test_add_bridge_needs_a_plain_trained_model(tmp_path):
    with pytest.raises(ValueError, match="--add-bridge puts a bridge on trained weights: it needs --init-weights"):
        tiny_config(tmp_path, add_bridge="vqbridge")
    with pytest.raises(ValueError, match="already has a bridge"):
        make_tiny_model().add_bridge("vqbridge")
