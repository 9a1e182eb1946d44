"""The authors' DiT QBridge as a bridge type: their sizes by name, their initialisation, their label rule."""

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.bridges import QBRIDGE_PRESETS, DiTBridge, qbridge_config, resolve_bridge_config

from ..helpers import TINY_BRIDGES, load_fixture, make_tiny_model, perturb_bridge


def test_presets_are_the_authors_sizes():
    # qbridge.py: hidden = head_hidden_size * 4 heads, MLP ratio 2.
    assert qbridge_config("QBridge-L/4") == dict(depth=2, patch_size=4, hidden_size=256, num_heads=4, mlp_ratio=2.0,
                                                 num_labels=1)
    assert QBRIDGE_PRESETS["QBridge-L/8"] == dict(depth=2, patch_size=8, hidden_size=256)
    assert QBRIDGE_PRESETS["QBridge-XS/2"] == dict(depth=2, patch_size=2, hidden_size=32)
    assert qbridge_config("QBridge-S/4", conditional=True)["num_labels"] == 1001
    assert len(QBRIDGE_PRESETS) == 18
    with pytest.raises(ValueError, match="Unknown QBridge preset 'QBridge-M/4'"):
        qbridge_config("QBridge-M/4")


def test_the_fixed_positions_are_the_authors():
    _, tensors = load_fixture("fvq_dit_uncond")  # QBridge-XS/2 at K = 256, made by their code (stored in fp16)
    theirs = tensors["model.quantize.qbridge.pos_embed"]
    bridge = DiTBridge(256, 8, **qbridge_config("QBridge-XS/2"))
    assert bridge.pos_embed.shape == theirs.shape and not bridge.pos_embed.requires_grad
    torch.testing.assert_close(bridge.pos_embed.data, theirs, atol=1e-3, rtol=0)


def test_the_codebook_starts_at_zero_and_every_code_gets_gradient():
    # That every initial value is theirs, to the bit, is test_initialisation_is_theirs.py's.
    torch.manual_seed(0)
    bridge = DiTBridge(256, 8, **qbridge_config("QBridge-XS/2"))
    zero = [bridge.proj_out, bridge.final_modulation, *(block.modulation for block in bridge.blocks)]
    assert all(not layer.weight.any() and not layer.bias.any() for layer in zero)
    table = torch.randn(256, 8, requires_grad=True)
    assert not bridge(table).any()  # adaLN-Zero: the codebook starts at zero, as theirs
    for layer in zero:
        torch.nn.init.normal_(layer.weight, std=0.05)
    bridge(table).square().sum().backward()
    assert table.grad.abs().sum(dim=1).gt(0).all()


def test_the_label_rule_and_its_errors():
    assert resolve_bridge_config("dit", None)["label"] == 0
    assert resolve_bridge_config("dit", {"num_labels": 1001})["label"] == 1000  # the null class
    with pytest.raises(ValueError, match=r"label 3 is outside its label table: it has 1 label row"):
        DiTBridge(256, 8, patch_size=4, hidden_size=32, num_labels=1, label=3)
    with pytest.raises(ValueError, match=r"keys \['heads'\] do not exist for the DiT QBridge"):
        resolve_bridge_config("dit", {"heads": 4})
    with pytest.raises(ValueError, match="cannot lay out codebook_size=256 as a grid of 3x3 patches"):
        DiTBridge(256, 8, patch_size=3, hidden_size=32)
    with pytest.raises(ValueError, match="hidden_size must be a multiple of 4"):
        DiTBridge(256, 8, patch_size=4, hidden_size=30, num_heads=2)
    bridge = DiTBridge(256, 8, patch_size=4, hidden_size=32, num_labels=3)
    with pytest.raises(ValueError, match="Label 5 is outside"):
        bridge(torch.randn(256, 8), label=5)


def test_a_dit_model_saves_loads_and_folds(tmp_path):
    model = make_tiny_model(bridge_type="dit").eval()
    perturb_bridge(model)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ids = model.tokenize(images)
        assert ids.unique().numel() > 1
        assert torch.equal(model.fold_bridge().tokenize(images), ids)
    model.save_pretrained(tmp_path)
    loaded = FVQModel.from_pretrained(tmp_path)
    assert loaded.config.bridge_config["label"] == 0 and loaded.bridge_name.startswith("DiT QBridge")
    with torch.no_grad():
        assert torch.equal(loaded.tokenize(images), ids)


# ---- label_rule: the authors' class-conditional training (tests/quantizers/test_label_dropout.py: the quantizer) ----
def conditional_bridge(**config) -> DiTBridge:
    return DiTBridge(256, 8, patch_size=4, hidden_size=32, num_heads=2, num_labels=3, **config)


def test_the_label_rule_defaults_and_refusals():
    assert {k: resolve_bridge_config("dit", None)[k] for k in ("label_rule", "train_label", "label_dropout")} == {
        "label_rule": "fixed", "train_label": 0, "label_dropout": 0.1}
    with pytest.raises(ValueError, match="one label row .* so there is no null class: use label_rule='fixed'"):
        DiTBridge(256, 8, patch_size=4, hidden_size=32, label_rule="dropout")
    with pytest.raises(ValueError, match="label_rule 'authors' is not one of"):
        conditional_bridge(label_rule="authors")
    with pytest.raises(ValueError, match=r"train_label 3 is outside its label table"):
        conditional_bridge(label_rule="dropout", train_label=3)
    with pytest.raises(ValueError, match=r"label_dropout is a probability in \[0, 1\], got 1.5"):
        conditional_bridge(label_rule="dropout", label_dropout=1.5)


def test_label_dropout_draws_as_their_label_embedder():
    # `label_dropout.safetensors`: which of 4096 zero labels their `LabelEmbedder(1000, 32, 0.1)` dropped in training
    # after `torch.manual_seed(3)` (`benchmarks/authors_training.py labels`).
    _, tensors = load_fixture("label_dropout")
    bridge = DiTBridge(256, 8, **qbridge_config("QBridge-XS/2", conditional=True), label_rule="dropout")
    torch.manual_seed(3)
    labels = bridge.train().image_labels(4096, torch.device("cpu"))
    assert torch.equal(labels == 1000, tensors["dropped"]) and set(labels.tolist()) == {0, 1000}
    torch.manual_seed(0)
    share = float((bridge.image_labels(100_000, torch.device("cpu")) == 1000).float().mean())
    assert share == pytest.approx(0.1, abs=0.003)  # 3 standard deviations


def test_labels_are_drawn_only_in_training_with_autograd():
    bridge = conditional_bridge(label_rule="dropout", train_label=1, label_dropout=0.5)
    torch.manual_seed(0)
    assert set(bridge.train().image_labels(64, torch.device("cpu")).tolist()) == {1, 2}
    assert bridge.eval().image_labels(64, torch.device("cpu")) is None
    with torch.no_grad():
        assert bridge.train().image_labels(64, torch.device("cpu")) is None
    assert conditional_bridge().train().image_labels(64, torch.device("cpu")) is None


def test_a_label_dropout_model_saves_loads_and_folds_at_the_null_class(tmp_path):
    config = {**TINY_BRIDGES["dit"], "num_labels": 3, "label_rule": "dropout", "label_dropout": 0.25}
    model = make_tiny_model(bridge_type="dit", bridge_config=config).eval()
    perturb_bridge(model)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ids = model.tokenize(images)
        assert torch.equal(model.fold_bridge().tokenize(images), ids)
    model.save_pretrained(tmp_path)
    loaded = FVQModel.from_pretrained(tmp_path)
    assert loaded.config.bridge_config == {**resolve_bridge_config("dit", config), "label": 2}
    bridge = loaded.quantizer.bridge.config
    assert (bridge.label_rule, bridge.train_label, bridge.label_dropout) == ("dropout", 0, 0.25)
    with torch.no_grad():
        assert torch.equal(loaded.eval().tokenize(images), ids)
