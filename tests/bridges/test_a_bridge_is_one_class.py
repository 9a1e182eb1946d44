"""A bridge is one class that owns its config keys, registered by the name it declares; every model path works
with a new one (`tests/examples/bridge.py`, which the matrices of tests/quantizers/test_every_type.py also run)."""

import json

import pytest
import torch
from torch import nn

from fvq_hf import FVQModel
from fvq_hf.bridges import BRIDGES, CodebookBridge, bridge_class, resolve_bridge_config

from ..examples.bridge import ScaleBridge
from ..helpers import make_tiny_model, random_images


def test_an_example_bridge_works_end_to_end(tmp_path):
    model = make_tiny_model(bridge_type="scale", bridge_config={"init_scale": 3.0}).eval()
    assert model.config.bridge_config == {"init_scale": 3.0}
    assert model.bridge_name == "per-dimension affine map (example)"
    images = random_images()
    with torch.no_grad():
        ids = model.tokenize(images)
        torch.testing.assert_close(model.quantizer.codebook(), model.quantizer.embedding.weight * 3.0)
        assert torch.equal(model.fold_bridge().tokenize(images), ids)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["bridge_config"] == {"init_scale": 3.0}
    with torch.no_grad():
        assert torch.equal(FVQModel.from_pretrained(tmp_path).tokenize(images), ids)
    # The bridge trains: the gradient of the codebook loss reaches its scale (an affine map per dimension reaches
    # the hit codes only, unlike the VQBridge).
    model.train()
    model(images).codebook_loss.backward()
    assert model.quantizer.bridge.scale.grad.abs().sum() > 0


def test_config_keys_belong_to_the_bridge():
    with pytest.raises(ValueError, match=r"keys \['hidden_size'\] do not exist for the linear projector"):
        make_tiny_model(bridge_type="linear", bridge_config={"hidden_size": 8})
    with pytest.raises(ValueError, match="plain VQ.*takes no bridge_config"):
        make_tiny_model(bridge_type="none", bridge_config={"depth": 2})
    with pytest.raises(ValueError, match=r"Unknown bridge_type 'vq'; expected one of vqbridge, dit, linear, mlp, "
                                         r"(.*, )?none\."):
        make_tiny_model(bridge_type="vq")
    assert resolve_bridge_config("mlp", {"depth": 4}) == {"hidden_size": 256, "depth": 4}


def test_the_registry_takes_bridges_by_their_declared_name_and_keeps_none_for_plain_vq():
    assert BRIDGES.names()[:4] == ["vqbridge", "dit", "linear", "mlp"] and "scale" in BRIDGES
    assert bridge_class("scale") is ScaleBridge and bridge_class("none") is None
    with pytest.raises(TypeError, match="not a CodebookBridge subclass"):
        BRIDGES.register(nn.Linear)

    class Unnamed(CodebookBridge):
        display_name = "no name"

    class NamedNone(CodebookBridge):
        name = "none"

    class AnotherScale(CodebookBridge):
        name = "scale"

    with pytest.raises(TypeError, match="Unnamed declares no 'name' of its own"):
        BRIDGES.register(Unnamed)
    with pytest.raises(ValueError, match=r"'none' is reserved for plain VQ \(the table is the codebook\)"):
        BRIDGES.register(NamedNone)
    with pytest.raises(ValueError, match="'scale' is taken by tests.examples.bridge.ScaleBridge"):
        BRIDGES.register(AnotherScale)
    with pytest.raises(ValueError, match="'none' is reserved for plain VQ"):
        BRIDGES.get("none")
    assert BRIDGES.register(ScaleBridge) is ScaleBridge and BRIDGES.names().count("scale") == 1  # again: a no-op


@pytest.mark.parametrize("bridge_type, expected", [
    ("vqbridge", {"patch_size": 4, "hidden_size": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}),
    ("mlp", {"hidden_size": 32, "depth": 2}),
    ("linear", {}),
    ("none", {}),
])
def test_configs_of_fvq_hf_0_1_still_load(bridge_type, expected, tmp_path):
    """0.1 wrote every bridge's keys flat; they load into the new shape, with the same weights."""
    model = make_tiny_model(bridge_type=bridge_type, bridge_config=expected or None)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["bridge_config"]
    config.update(bridge_patch_size=4, bridge_hidden_size=32, bridge_depth=2, bridge_num_heads=2, bridge_mlp_ratio=2.0)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = FVQModel.from_pretrained(tmp_path)
    assert loaded.config.bridge_config == expected and "bridge_patch_size" not in loaded.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert FVQModel.from_config(config).config.bridge_config == expected
