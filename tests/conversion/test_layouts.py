"""The table of original layouts: every registered layout is found by its name and recognised from its keys, and a
layout added from outside (the example "vqgan-ema", registered by the test suite) converts like the shipped ones."""

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.conversion.layouts import LAYOUTS, detect_layout, layout_named, layout_names

from ..examples.layout import EMA_KEYS
from ..helpers import assert_matches_original, load_fixture


@pytest.mark.parametrize("name", layout_names())
def test_every_layout_is_found_by_its_name(name):
    layout = layout_named(name)
    assert layout is not None and layout.name == name and layout.written_by


def test_detection_order_ends_with_the_plain_vqgan_fallback():
    assert LAYOUTS[-1].name == "vqgan" and LAYOUTS[0].name == "var"
    assert layout_named("no-such-layout") is None


def test_a_registered_layout_converts_to_the_original_ids(tmp_path):
    _, tensors = load_fixture("llamagen_vq16")
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    state.update({key: torch.ones(3) for key in EMA_KEYS})
    assert detect_layout(state).name == "vqgan-ema"
    torch.save(state, tmp_path / "ema.pt")
    # The example says "no l2-norm"; the fixture was made with it: its rule is applied, so the ids differ...
    model, info = FVQModel.from_original_checkpoint(tmp_path / "ema.pt", output_loading_info=True)
    assert info.layout == "vqgan-ema" and set(info.dropped_keys) == set(EMA_KEYS)
    assert not model.config.codebook_l2_norm
    with torch.no_grad():
        assert not torch.equal(model.tokenize(tensors["inputs"]), tensors["expected_indices"])
    # ...while the same weights read with the l2-norm the original used give its ids exactly.
    assert_matches_original(FVQModel.from_original_checkpoint(tmp_path / "ema.pt", codebook_l2_norm=True), tensors)
