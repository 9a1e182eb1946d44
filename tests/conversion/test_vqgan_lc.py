"""Parity with VQGAN-LC's own code: their checkpoints (`vqgan-lc-*.pth` and training files) give their ids and images.

The fixtures `tests/fixtures/original/vqgan_lc_*.safetensors` were made once, not by the test suite, by
`benchmarks/authors_vqgan_lc.py` from a checkout of zh460045050/VQGAN-LC (commit 4708958): their `VQModel` built by
their code at a small size (taming's f16 layout with attention at its lowest level and a `use_cblinear 1` projector;
the f8 layout with attention in the middle only and a `use_cblinear 2` projector; their EMA quantizer without a
projector), weights rounded to fp16, outputs of their `encode` / `decode` on fixed images. Their discriminator and
LPIPS keys are stored by name only; the helpers put small tensors under them, and write the file as their
`util/misc.py` does (`state_dict` with `opt_ae`, ..., `args`; `model` for `-last` files). Only tensors, and the
args and key names as metadata, were committed; none of their code.
"""

from __future__ import annotations

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.conversion.layouts import detect_layout, layout_named

from ..helpers import LC_NAMES, assert_matches_original, vqgan_lc_file, vqgan_lc_state

EMA_KEYS = {"cluster_size", "embed_avg"}


@pytest.mark.parametrize("name", LC_NAMES)
def test_their_files_give_their_ids_and_images_and_say_what_was_dropped(name, tmp_path):
    """Their projector folded into a plain codebook (the default); their PatchGAN and LPIPS weights left out and listed;
    an EMA run's statistics kept for its EMA table."""
    meta, state, _ = vqgan_lc_state(name)
    path, tensors = vqgan_lc_file(name, tmp_path)
    model, info = FVQModel.from_original_checkpoint(path, output_loading_info=True)
    assert (info.layout, info.origin, info.weights) == ("vqgan-lc", "vqgan-lc", meta["entry"])
    assert model.config.bridge_type == "none" and not model.config.codebook_l2_norm  # folded: a plain codebook
    assert_matches_original(model, tensors)
    assert tensors["expected_indices"].unique().numel() > 40  # ids vary, so that "identical ids" says something
    dropped = set(info.dropped_keys)
    assert dropped == {k for k in state if k.startswith(("discriminator.", "perceptual_loss."))}
    assert any(k.startswith("discriminator.") for k in dropped) and any(k.startswith("perceptual_loss.net.")
                                                                        for k in dropped)
    assert (model.config.table_update == "ema") == (EMA_KEYS <= set(state)) == name.endswith("ema")


def test_an_ema_run_goes_on_as_theirs(tmp_path):
    """Their VQGAN-EMA baseline: the statistics are this package's EMA table's, so one training forward moves the
    table exactly as their (evaluation-mode, as they run it) call did."""
    _, state, _ = vqgan_lc_state("vqgan_lc_f8_ema")
    path, tensors = vqgan_lc_file("vqgan_lc_f8_ema", tmp_path)
    model = FVQModel.from_original_checkpoint(path)
    assert (model.config.table_update, model.config.table_ema_decay) == ("ema", 0.99)
    assert torch.equal(model.quantizer.ema.cluster_size, state["cluster_size"])
    assert torch.equal(model.quantizer.ema.embed_sum, state["embed_avg"])
    model.train()(tensors["inputs"])
    torch.testing.assert_close(model.quantizer.embedding.weight, tensors["expected_table_after"], rtol=1e-5,
                               atol=1e-6)
    assert not torch.equal(tensors["expected_table_after"], state["tok_embeddings.weight"])  # it did move


@pytest.mark.parametrize("name, levels", [("vqgan_lc_f16", None), ("vqgan_lc_f8", ())])
def test_attention_sits_where_theirs_does(name, levels, tmp_path):
    """f16: taming's attention resolution is the lowest level (the default); f8: it is never reached, so only the
    middle blocks attend (`attention_levels=[]`), and the setting survives saving."""
    model = FVQModel.from_original_checkpoint(vqgan_lc_file(name, tmp_path)[0])
    assert model.config.attention_levels == levels
    lowest = len(model.encoder.conv_blocks) - 1
    assert bool(len(model.encoder.conv_blocks[lowest].attn)) == (levels is None)
    model.save_pretrained(tmp_path / "saved")
    assert FVQModel.from_pretrained(tmp_path / "saved").config.attention_levels == levels


@pytest.mark.parametrize("name, bridge, table_dim, code_dim", [("vqgan_lc_f16", "lc-linear", 128, 8),
                                                               ("vqgan_lc_f8", "lc-mlp", 64, 4)])
def test_the_projector_can_stay_trainable_over_their_frozen_table(name, bridge, table_dim, code_dim, tmp_path):
    path, tensors = vqgan_lc_file(name, tmp_path)
    kept, info = FVQModel.from_original_checkpoint(path, keep_bridge=True, output_loading_info=True)
    config = kept.config
    assert (config.bridge_type, config.table_dim, config.vq_embed_dim, config.freeze_table) == (bridge, table_dim,
                                                                                               code_dim, True)
    assert not kept.quantizer.embedding.weight.requires_grad  # their tuning_codebook 0
    assert all(p.requires_grad for p in kept.quantizer.bridge.parameters())
    assert "kept trainable" in info.decisions["projector"] and info.decisions["table"] == "frozen (tuning_codebook 0)"
    assert_matches_original(kept, tensors)
    folded = FVQModel.from_original_checkpoint(path)
    assert torch.equal(kept.fold_bridge().quantizer.embedding.weight, folded.quantizer.embedding.weight)
    kept.save_pretrained(tmp_path / "kept")
    info.save(tmp_path / "kept")
    loaded = FVQModel.from_pretrained(tmp_path / "kept")
    assert_matches_original(loaded.eval(), tensors)
    assert "kept trainable" in str(loaded.model_card()) and "VQGAN-LC (Zhu et al." in str(loaded.model_card())


@pytest.mark.parametrize("entry", ["model", "state_dict", "bare"])
def test_every_container_of_theirs_converts(entry, tmp_path):
    path, tensors = vqgan_lc_file("vqgan_lc_f16", tmp_path, entry=entry)
    model, info = FVQModel.from_original_checkpoint(path, output_loading_info=True)
    assert info.weights == entry and (info.args is None) == (entry == "bare")
    assert_matches_original(model, tensors)


def test_their_args_give_the_loss_weights_and_whether_the_table_was_trained(tmp_path):
    """Their loss is 1.0 x commitment + 0.33 x codebook, times --rate_q (0.1): with their args the weights here are
    0.1 and 0.033; a bare state dict (no args) gets the unscaled ones. `tuning_codebook` 1 trained their table."""
    path, _ = vqgan_lc_file("vqgan_lc_f16", tmp_path)
    model, info = FVQModel.from_original_checkpoint(path, output_loading_info=True)
    assert (model.config.codebook_weight, model.config.commitment_weight) == (0.033, 0.1)
    assert info.args["use_cblinear"] == 1 and info.args["rate_q"] == 0.1
    assert info.decisions["loss_weights"] == "codebook 0.033, commitment 0.1 (their 0.33 and 1, times rate_q 0.1)"
    bare_file, _ = vqgan_lc_file("vqgan_lc_f16", tmp_path, entry="bare", filename="bare.pth")
    bare, info = FVQModel.from_original_checkpoint(bare_file, keep_bridge=True, output_loading_info=True)
    assert (bare.config.codebook_weight, bare.config.commitment_weight, bare.config.freeze_table) == (0.33, 1.0, None)
    assert "unscaled" in info.decisions["loss_weights"] and not bare.quantizer.embedding.weight.requires_grad
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["args"].tuning_codebook = 1
    torch.save(checkpoint, tmp_path / "tuned.pth")
    tuned = FVQModel.from_original_checkpoint(tmp_path / "tuned.pth", keep_bridge=True)
    assert tuned.config.freeze_table is False and tuned.quantizer.embedding.weight.requires_grad
    ema, info = FVQModel.from_original_checkpoint(vqgan_lc_file("vqgan_lc_f8_ema", tmp_path)[0],
                                                  output_loading_info=True)
    assert info.decisions["table"].startswith("updated by moving averages (their --quantizer_type ema, decay 0.99)")
    assert info.decisions["loss_weights"].startswith("codebook 0, commitment 0.1")


def test_args_that_contradict_the_weights_are_refused(tmp_path):
    path, _ = vqgan_lc_file("vqgan_lc_f16", tmp_path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["args"].embed_dim, checkpoint["args"].use_cblinear = 16, 2
    torch.save(checkpoint, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="args contradict its weights: embed_dim 16 in the args, 8 by the shapes; "
                                         "use_cblinear 2 in the args, 1 by the shapes"):
        FVQModel.from_original_checkpoint(tmp_path / "wrong.pth")


def test_missing_keys_are_named_as_their_file_names_them(tmp_path):
    path, _ = vqgan_lc_file("vqgan_lc_f16", tmp_path)
    checkpoint = torch.load(path, weights_only=False)
    for key in ("decoder.up.0.block.0.conv1.weight", "encoder.down.2.attn.0.q.bias", "codebook_projection.bias"):
        del checkpoint["state_dict"][key]
    torch.save(checkpoint, tmp_path / "damaged.pth")
    with pytest.raises(ValueError, match=r"missing: \['codebook_projection.bias'\]"):  # folding needs the projector
        FVQModel.from_original_checkpoint(tmp_path / "damaged.pth")
    with pytest.raises(ValueError, match=r"missing: \['decoder.up.0.block.0.conv1.weight', 'encoder.down.2.attn.0.q"
                                         r".bias', 'codebook_projection.bias'\]"):
        FVQModel.from_original_checkpoint(tmp_path / "damaged.pth", keep_bridge=True)


def test_what_their_code_does_and_no_quantizer_here_does_is_refused(tmp_path):
    path, _ = vqgan_lc_file("vqgan_lc_f16", tmp_path)
    with pytest.raises(ValueError, match="does not fit a VQGAN-LC checkpoint: their quantizer searches by squared L2"):
        FVQModel.from_original_checkpoint(path, codebook_l2_norm=True)
    # d = 768: their encode l2-normalises the latent but not the codes.
    with pytest.raises(ValueError, match="768-d codes: their code then l2-normalises the latent but not the codes"):
        layout_named("vqgan-lc").choose_l2_norm({"tuning_codebook": 0}, 768, None)
    # An EMA quantizer with a projector searches projected codes but outputs raw table rows.
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["state_dict"].update(cluster_size=torch.ones(256), embed_avg=torch.zeros(256, 128))
    torch.save(checkpoint, tmp_path / "ema.pth")
    assert detect_layout(checkpoint["state_dict"]).name == "vqgan-lc"
    with pytest.raises(ValueError, match="EMA branch searches the projected codebook but outputs the raw table"):
        FVQModel.from_original_checkpoint(tmp_path / "ema.pth")
    with pytest.raises(ValueError, match="no codebook projector to keep"):
        FVQModel.from_original_checkpoint(vqgan_lc_file("vqgan_lc_f8_ema", tmp_path)[0], keep_bridge=True)
