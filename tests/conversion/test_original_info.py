"""`original_checkpoint.json`: its writer and reader round-trip; files written by fvq-hf 0.1 (no origin, a DiT
bridge's decisions at the top level) read to the card they gave then; the release facts come from the file name,
else from whose code the layout is."""

import json

import pytest

from fvq_hf.conversion.original_info import FVQ, LLAMAGEN, ORIGINAL_FILE, OriginalCheckpointInfo
from fvq_hf.hub.model_card import provenance_section

FVQ_REASON = "the FVQ code's quantizer never l2-normalises in its search"
# As fvq-hf 0.1 wrote them (`dataclasses.asdict` of its info): a DiT bridge folded, and one kept.
V01_FOLDED = {"source": "0400000.pt", "layout": "fvq-dit", "weights": "model", "codebook_l2_norm": False,
              "l2_norm_reason": FVQ_REASON, "dropped_keys": ["quantize.codebook_used"], "folded_label": 0,
              "folded_label_reason": "the only label (--is_uncondition)", "args": None, "kept_bridge": False}
V01_KEPT = {**V01_FOLDED, "layout": "var+fvq-dit", "folded_label": None, "folded_label_reason": None,
            "kept_bridge": True}


def saved(tmp_path, content: dict):
    (tmp_path / ORIGINAL_FILE).write_text(json.dumps(content))
    return OriginalCheckpointInfo.load(tmp_path)


def test_the_info_round_trips_through_its_file(tmp_path):
    info = OriginalCheckpointInfo("vq_ds8_c2i.pt", "vqgan", "model", True, "given by the caller", [],
                                  args={"codebook_l2_norm": True}, origin=None, decisions={"codebook": "its table"})
    info.save(tmp_path)
    assert OriginalCheckpointInfo.load(tmp_path) == info
    assert OriginalCheckpointInfo.load(tmp_path / "nothing-here") is None and OriginalCheckpointInfo.load(None) is None


def test_a_folded_dit_bridge_saved_by_fvq_hf_0_1_gives_the_card_it_gave(tmp_path):
    info = saved(tmp_path, V01_FOLDED)
    assert info.origin == "fvq" and info.decisions == {"folded_label": 0, "folded_label_reason":
                                                       "the only label (--is_uncondition)", "kept_bridge": False}
    lines, meta = provenance_section(info)
    assert "The DiT bridge was folded into a plain codebook at label 0 (the only label (--is_uncondition))." in lines
    assert f"- Origin: {FVQ['origin']}." in lines and f"- Licence: {FVQ['license_note']}" in lines
    assert meta == {"license": "unknown", "base_model": "yfChang/FVQ"}


def test_a_kept_dit_bridge_in_a_var_file_saved_by_fvq_hf_0_1_gives_the_card_it_gave(tmp_path):
    info = saved(tmp_path, V01_KEPT)
    assert info.origin is None  # VAR layouts never told their origin
    lines, meta = provenance_section(info)
    assert lines[4:] == ["The DiT bridge was kept trainable (`bridge_type: dit`, `fvq-convert --keep-bridge`); "
                         "`fold_bridge()` gives the plain codebook.", "",
                         "Origin: not a known release; the publisher should say where it comes from and its licence.",
                         ""]
    assert meta == {"license": "unknown"}


@pytest.mark.parametrize("source, origin, release", [
    ("FoundationVision/LlamaGen/vq_ds16_c2i.pt", None, (LLAMAGEN, 1)),
    ("vq_ds16_t2i.pt", "fvq", (LLAMAGEN, 0)),  # the file name tells first
    ("yfChang/FVQ/fullvq2vqgan_ds16_res2_16384_256.pt", None, (FVQ, 1)),
    ("0400000.pt", "fvq", (FVQ, 0)),
    ("0400000.pt", None, (None, 0)),
])
def test_a_release_is_told_by_its_file_name_else_by_its_layouts_origin(source, origin, release):
    facts, reported = OriginalCheckpointInfo(source, "vqgan", "model", False, "", [], origin=origin).release()
    assert (facts, len(reported)) == release
