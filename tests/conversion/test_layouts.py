"""The registry of original layouts: every registered layout is found by its name, recognised from its keys and
takes only the options it declares; a layout added from outside (the example "vqgan-ema", registered by the test
suite, with an option of its own) converts like the shipped ones."""

import dataclasses
import re

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.conversion.layouts import (
    FALLBACK,
    VARLayout,
    declared_options,
    detect_layout,
    detection_order,
    layout_named,
    layout_names,
    layout_options,
)
from fvq_hf.conversion.layouts.base import option_fields

from ..examples.layout import EMA_KEYS, VQGANEMALayout
from ..helpers import assert_matches_original, load_fixture


@pytest.mark.parametrize("name", layout_names())
def test_every_layout_is_found_by_its_name(name):
    layout = layout_named(name)
    assert layout is not None and layout.name == name and layout.written_by


def test_detection_asks_var_first_and_the_plain_vqgan_fallback_last():
    order = detection_order()
    assert order[0] is VARLayout and order[-1] is FALLBACK and FALLBACK.name == "vqgan"
    assert VQGANEMALayout in order  # registered after the fallback, asked before it
    assert layout_named("no-such-layout") is None


@pytest.mark.parametrize("name", layout_names())
def test_every_layout_takes_the_options_it_declares_and_refuses_others(name):
    layout = layout_named(name)
    own = option_fields(layout.Options)
    defaults = {key: field.default for key, field in own.items()}
    assert dataclasses.asdict(layout_options(layout, defaults)) == defaults
    for key, declared in declared_options().items():
        assert (key in own) == (name in declared.layouts) and declared.help
        if key not in own and declared.hint is bool:  # asking for something a layout does not take is refused
            with pytest.raises(ValueError, match=rf"{key} is an option of the layouts .*, not of this file's layout "
                                                 rf"'{re.escape(name)}', which takes {', '.join(own) or 'none'}\."):
                layout_options(layout, {key: not declared.default})
    with pytest.raises(ValueError, match=rf"no_such_option is no layout's option, not of this file's layout '{re.escape(name)}'"):
        layout_options(layout, {"no_such_option": 1})


def test_an_option_of_the_wrong_type_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"layout 'fvq-dit': 'dit_label' must be int \| None, got '3' \(str\)"):
        layout_options(layout_named("fvq-dit"), {"dit_label": "3"})


def ema_checkpoint(tmp_path, scale: float = 1.0):
    """The llamagen_vq16 fixture with EMA statistics whose codebook (embed_avg / cluster_size) is `scale` times the
    saved table, exactly (counts are powers of two)."""
    _, tensors = load_fixture("llamagen_vq16")
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    table = state["quantize.embedding.weight"]
    counts = 2.0 ** torch.randint(0, 5, (table.shape[0],), generator=torch.Generator().manual_seed(0))
    state.update({"quantize.cluster_size": counts, "quantize.embed_avg": scale * table * counts[:, None]})
    torch.save(state, tmp_path / "ema.pt")
    return tmp_path / "ema.pt", tensors, scale * table


def test_a_registered_layout_converts_to_the_original_ids(tmp_path):
    path, tensors, _ = ema_checkpoint(tmp_path)
    assert detect_layout(torch.load(path)).name == "vqgan-ema"
    # The example says "no l2-norm"; the fixture was made with it: its rule is applied, so the ids differ...
    model, info = FVQModel.from_original_checkpoint(path, output_loading_info=True)
    assert info.layout == "vqgan-ema" and set(info.dropped_keys) == set(EMA_KEYS)
    assert info.decisions == {"codebook": "the saved table"} and not model.config.codebook_l2_norm
    with torch.no_grad():
        assert not torch.equal(model.tokenize(tensors["inputs"]), tensors["expected_indices"])
    # ...while the same weights read with the l2-norm the original used give its ids exactly.
    assert_matches_original(FVQModel.from_original_checkpoint(path, codebook_l2_norm=True), tensors)


def test_the_option_of_a_registered_layout_is_taken_and_recorded(tmp_path):
    """The example layout's own option: the codebook from its EMA statistics (here 3 x the saved table, which the
    original's l2-norm makes the same codes), recorded in the info as the layout said it."""
    path, tensors, ema_table = ema_checkpoint(tmp_path, scale=3.0)
    model, info = FVQModel.from_original_checkpoint(path, codebook_from_ema=True, codebook_l2_norm=True,
                                                    output_loading_info=True)
    assert torch.equal(model.quantizer.embedding.weight, ema_table)
    assert info.decisions == {"codebook": "the EMA statistics (embed_avg / cluster_size)"}
    assert_matches_original(model, tensors)
    model.save_pretrained(tmp_path / "converted")
    info.save(tmp_path / "converted")
    card = str(FVQModel.from_pretrained(tmp_path / "converted").model_card())
    assert "What the layout decided: codebook: the EMA statistics (embed_avg / cluster_size)." in card
    with pytest.raises(ValueError, match="codebook_from_ema is an option of the layouts vqgan-ema, not of this "
                                         "file's layout 'fvq-dit', which takes num_heads, dit_label, keep_bridge"):
        layout_options(layout_named("fvq-dit"), {"codebook_from_ema": True})
