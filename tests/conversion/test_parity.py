"""Parity with the original code: checkpoints in every original layout give the original code's ids and images.

How the fixtures in tests/fixtures/original/ were made (once, not by the test suite): the public repositories
yfChang-cv/FVQ (commit 577b848c) and FoundationVision/LlamaGen (commit ce98ec41) were checked out outside this
repository, and their own classes were built on a CPU (torch 2.14.1, timm 1.0.31, seeded) at a small size: base
width 32, `z_channels` 32, codebook K = 256 (FVQ) or 512 (LlamaGen), bridge `QBridge-XS/2`.
- fvq_release_vit: `vq_model_qbridge_release.VQModel` (ViT bridge), ch_mult [1, 1], 1 res block, d = 16, plus an
  EMA copy (each weight + 0.01 N(0, 1)); expected outputs from the EMA weights, as their eval takes `ema` first.
- fvq_dit_uncond / fvq_dit_cond: `vq_model_qbridge.VQModel` (DiT bridge, `qbridge.py`) with `is_uncondition`
  True (the shipped scripts) / False; the conditional one's outputs at the null label 1000, the label the
  authors' `convert_fullvq2vq.py` folds at.
- fvq_fold_vqgan: a d = 256 DiT-bridge model folded by the steps of `convert_fullvq2vq.py` (get_codebook(1000),
  qbridge keys deleted, loaded into FVQ's `vq_model.VQModel` with codebook_l2_norm False); the file holds only
  `{"model": ...}`, as the released fullvq2vqgan_*.pt files do.
- llamagen_vq16 / llamagen_vq8: LlamaGen `vq_model.VQModel` (d = 8, codebook_l2_norm True) with its Encoder and
  Decoder rebuilt at ch 32, ch_mult [1, 1, 1, 1, 1] (downsample 16, 1 res block) and [1, 1, 1, 2] (downsample 8,
  2 res blocks); the table given rows of norm 0.2 to 2.2, as a trained table (normalised only when used).
- fvq_rq_dit_uncond: expected outputs only, of the authors' residual model `vq_model_qbridge_rqvae.VQModel` (4 depths
  over the DiT-bridged codebook, `encode` then `decode(quant)`) on the fvq_dit_uncond weights, which it saves
  under the same keys.
- fvq_var_dit / var_original: the authors' VAR tokenizer with a DiT QBridge (`var/model/vqvae.VQVAE`, `QBridge-XS/2`)
  and their copy of VAR's own (`var/original/vqvae.VQVAE`, saved bare, as VAR's release), at K = 256, z = 16, VAR's
  ten scales (one 256 px image), with their own Encoder / Decoder classes rebuilt at ch 32, ch_mult
  [1, 1, 1, 1, 1] with 1 res block (VAR's own: [1, 2, 1, 1, 1] with 2, so that widths change). Expected ids: `img_to_idxBl` concatenated (for the bridged one, with the bridged
  codebook written into the table, as a fold); images: the bridged one's `forward(x)[0]` (their eval), VAR's
  `decoder(post_quant_conv(f_hat))` (`img_to_reconstructed_img` without its clamp). Their zero
  `quantize.ema_vocab_hit_SV` statistics are stored: they are how a file tells its number of scales.
The zero-initialised layers (final layer, adaLN) got N(0, 0.05) weights so that codes differ. Every weight was
rounded to fp16 before the outputs were computed, and is stored in fp16 (`model.*`, `ema.*`), so the fp32
values rebuilt here are exactly the ones the original code ran. Expected outputs are their
`encode(x)` -> `[.., .., indices]` and `decode_code(indices, latent.shape)` on the stored `inputs`. The
`quantize.codebook_used` buffer (zeros, a training ring buffer) was left out and is put back here. Only tensors,
and the training args as JSON metadata, were committed; none of their code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fvq_hf import FVQModel

from ..helpers import NAMES, assert_matches_original, load_fixture, original_file


@pytest.mark.parametrize("name", NAMES)
def test_default_conversion_gives_the_original_codes_ids_and_images(name, tmp_path):
    path, tensors = original_file(name, tmp_path)
    model, info = FVQModel.from_original_checkpoint(path, output_loading_info=True)
    var = {"quantize.ema_vocab_hit_SV"} if "var" in name else set()
    assert set(info.dropped_keys) == {"quantize.codebook_used"} - ({"quantize.codebook_used"} if name == "var_original"
                                                                   else set()) | var
    assert_matches_original(model, tensors)
    assert model.config.codebook_l2_norm == name.startswith("llamagen")
    # ids vary, so that "identical ids" says something
    assert tensors["expected_indices"].unique().numel() > 10


def test_the_authors_residual_variant_converts_with_a_residual_config(tmp_path):
    # vq_model_qbridge_rqvae.py saves the DiT-bridge model's keys, and its args say nothing of depth: no file can
    # tell, so the user says it. Their code fixes 4 depths.
    path, tensors = original_file("fvq_dit_uncond", tmp_path)
    _, expected = load_fixture("fvq_rq_dit_uncond")
    residual = {"quantizer_type": "residual", "quantizer_config": {"depth": 4}}
    model = FVQModel.from_original_checkpoint(path, config=residual)
    assert model.quantizer.num_levels == 4 and expected["expected_indices"].shape[-1] == 4
    assert_matches_original(model, {**tensors, **expected})
    assert expected["expected_indices"][..., 1:].unique().numel() > 10  # the deeper codes vary too
    with torch.no_grad():  # the same file read as plain VQ gives the first depth
        first = FVQModel.from_original_checkpoint(path).tokenize(tensors["inputs"])
    assert torch.equal(first, expected["expected_indices"][..., 0])


@pytest.mark.parametrize("name, layout, bridge, weights, origin", [
    ("fvq_release_vit", "fvq-vit", "vqbridge", "ema", "fvq"),
    ("fvq_dit_uncond", "fvq-dit", "none", "model", "fvq"),
    ("fvq_fold_vqgan", "vqgan", "none", "model", None),
    ("llamagen_vq8", "vqgan", "none", "model", None),
    ("fvq_var_dit", "var+fvq-dit", "none", "model", None),
    ("var_original", "var", "none", "bare", None),
])
def test_the_info_names_the_layout_its_origin_and_the_weights_taken(name, layout, bridge, weights, origin, tmp_path):
    path, _ = original_file(name, tmp_path)
    model, info = FVQModel.from_original_checkpoint(path, output_loading_info=True)
    assert (info.layout, model.config.bridge_type, info.weights, info.origin) == (layout, bridge, weights, origin)


def test_var_files_become_vars_multiscale_tokenizer(tmp_path):
    model = FVQModel.from_original_checkpoint(original_file("var_original", tmp_path)[0])
    assert model.config.quantizer_type == "multiscale" and model.config.quant_conv_kernel_size == 3
    assert model.config.quantizer_config == {"scales": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16], "num_phi": 4, "phi_ratio": 0.5}
    assert model.quantizer.num_tokens == 680 and model.downsample_factor == 16
    with pytest.raises(ValueError, match="multi-scale quantizer has no l2-normalised search"):
        FVQModel.from_original_checkpoint(original_file("var_original", tmp_path)[0], codebook_l2_norm=True)


def test_var_scales_that_the_file_cannot_tell_are_asked_for(tmp_path):
    path, tensors = original_file("var_original", tmp_path)
    state = torch.load(path)
    state["quantize.ema_vocab_hit_SV"] = state["quantize.ema_vocab_hit_SV"][:7]  # trained with 7 scales
    torch.save(state, tmp_path / "var7.pt")
    with pytest.raises(ValueError, match=r"7 scales \(rows of quantize.ema_vocab_hit_SV\) at a 16 x 16 latent grid.*"
                                         r"--scales \.\.\. 16"):
        FVQModel.from_original_checkpoint(tmp_path / "var7.pt")
    scales = [1, 2, 4, 6, 8, 12, 16]
    model = FVQModel.from_original_checkpoint(tmp_path / "var7.pt", config={"quantizer_config": {"scales": scales}})
    assert model.config.quantizer_config == {"scales": scales, "num_phi": 4, "phi_ratio": 0.5}  # the rest inferred
    with pytest.raises(ValueError, match="at a 8 x 8 latent grid"):  # another resolution: VAR's scales do not fit
        FVQModel.from_original_checkpoint(path, sample_size=128)


def test_llamagen_vq16_and_vq8_read_their_downsample_factor_and_depth(tmp_path):
    vq16 = FVQModel.from_original_checkpoint(original_file("llamagen_vq16", tmp_path)[0])
    vq8 = FVQModel.from_original_checkpoint(original_file("llamagen_vq8", tmp_path)[0])
    assert (vq16.downsample_factor, vq8.downsample_factor) == (16, 8)
    assert (vq16.config.layers_per_block, vq8.config.layers_per_block) == (1, 2)


def test_the_l2_norm_follows_the_release_rule_or_the_files_args_and_never_fits_fvq(tmp_path):
    # A bare LlamaGen release file: d = 8 -> l2-norm by the release rule; wrong flag -> other ids (the rule matters).
    path, tensors = original_file("llamagen_vq16", tmp_path)
    model, info = FVQModel.from_original_checkpoint(path, output_loading_info=True)
    assert info.codebook_l2_norm and "release rule" in info.l2_norm_reason
    wrong = FVQModel.from_original_checkpoint(path, codebook_l2_norm=False)
    with torch.no_grad():
        assert not torch.equal(wrong.tokenize(tensors["inputs"]), tensors["expected_indices"])
    # A training checkpoint: its own args decide.
    _, info = FVQModel.from_original_checkpoint(original_file("llamagen_vq8", tmp_path)[0], output_loading_info=True)
    assert info.codebook_l2_norm and info.l2_norm_reason == "the checkpoint's own args"
    # The FVQ code never normalises in its search: asking for it is refused, not silently applied.
    with pytest.raises(ValueError, match="never l2-normalises"):
        FVQModel.from_original_checkpoint(original_file("fvq_release_vit", tmp_path)[0], codebook_l2_norm=True)


def test_unknown_code_dim_without_args_refuses_and_asks_for_the_flag(tmp_path):
    _, tensors = load_fixture("fvq_release_vit")
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.") and ".qbridge." not in k}
    torch.save({"model": state}, tmp_path / "plain-d16.pt")  # a VQGAN-format file of d = 16, no args
    with pytest.raises(ValueError, match="Pass codebook_l2_norm=True"):
        FVQModel.from_original_checkpoint(tmp_path / "plain-d16.pt")
    assert not FVQModel.from_original_checkpoint(tmp_path / "plain-d16.pt", codebook_l2_norm=False).config.codebook_l2_norm


def test_the_ema_weights_are_taken_first_and_another_entry_on_request(tmp_path):
    path, tensors = original_file("fvq_release_vit", tmp_path)
    ema = FVQModel.from_original_checkpoint(path, weights="ema")
    raw = FVQModel.from_original_checkpoint(path, weights="model")
    assert not torch.equal(ema.quantizer.bridge.proj_out.weight, raw.quantizer.bridge.proj_out.weight)
    checkpoint = torch.load(path, weights_only=False)
    torch.save({"state_dict": checkpoint["ema"]}, tmp_path / "sd.pt")
    _, info = FVQModel.from_original_checkpoint(tmp_path / "sd.pt", output_loading_info=True)
    assert info.weights == "state_dict"
    with pytest.raises(ValueError, match="no such entry"):
        FVQModel.from_original_checkpoint(tmp_path / "sd.pt", weights="ema")


def test_a_dit_bridge_is_folded_at_the_null_label_or_the_one_given(tmp_path):
    path, tensors = original_file("fvq_dit_cond", tmp_path)
    _, info = FVQModel.from_original_checkpoint(path, output_loading_info=True)
    assert info.decisions == {"folded_label": 1000,
                              "folded_label_reason": "the null class, as the authors' convert_fullvq2vq.py folds it"}
    other = FVQModel.from_original_checkpoint(path, dit_label=3)
    with torch.no_grad():
        assert not torch.equal(other.tokenize(tensors["inputs"]), tensors["expected_indices"])
    with pytest.raises(ValueError, match="dit_label 1001 is outside the DiT bridge's label table of 1001 row"):
        FVQModel.from_original_checkpoint(path, dit_label=1001)
    with pytest.raises(ValueError, match=r"dit_label is an option of the layouts var\+fvq-dit, fvq-dit, not of this "
                                         "file's layout 'vqgan', which takes none"):
        FVQModel.from_original_checkpoint(original_file("llamagen_vq8", tmp_path)[0], dit_label=0)


@pytest.mark.parametrize("name", ["fvq_dit_uncond", "fvq_dit_cond", "fvq_var_dit"])
def test_a_dit_bridge_can_stay_trainable(name, tmp_path):
    """keep_bridge=True: the authors' DiT bridge as bridge_type "dit", giving their ids; folding it later gives the
    same ids as the default conversion, which folds at once."""
    path, tensors = original_file(name, tmp_path)
    kept, info = FVQModel.from_original_checkpoint(path, keep_bridge=True, output_loading_info=True)
    assert kept.config.bridge_type == "dit" and info.decisions == {"kept_bridge": True}
    assert kept.quantizer.bridge.config.label == (1000 if name == "fvq_dit_cond" else 0)
    assert any(p.requires_grad for p in kept.quantizer.bridge.parameters())
    with torch.no_grad():
        ids = kept.tokenize(tensors["inputs"])
        assert torch.equal(ids.flatten(), tensors["expected_indices"].flatten())
        assert torch.equal(kept.fold_bridge().tokenize(tensors["inputs"]),
                           FVQModel.from_original_checkpoint(path).tokenize(tensors["inputs"]))
    kept.save_pretrained(tmp_path / "kept")
    info.save(tmp_path / "kept")
    loaded = FVQModel.from_pretrained(tmp_path / "kept")
    with torch.no_grad():
        assert torch.equal(loaded.tokenize(tensors["inputs"]), ids)
    assert "DiT bridge was kept trainable" in str(loaded.model_card())


def test_keeping_a_dit_bridge_with_missing_keys_or_none_to_keep_is_refused(tmp_path):
    path, _ = original_file("fvq_dit_uncond", tmp_path)
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["ema" if "ema" in checkpoint else "model"]["quantize.qbridge.final_layer.linear.weight"]
    torch.save(checkpoint, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match=r"does not fit the inferred config \(missing: \['quantizer.bridge.proj_out"):
        FVQModel.from_original_checkpoint(tmp_path / "damaged.pt", keep_bridge=True)
    with pytest.raises(ValueError, match=r"keep_bridge is an option of the layouts var\+fvq-dit, fvq-dit, vqgan-lc, "
                                         "not of this file's layout 'vqgan', which takes none"):
        FVQModel.from_original_checkpoint(original_file("llamagen_vq8", tmp_path)[0], keep_bridge=True)


def test_a_safetensors_file_with_ddp_prefixes_gives_the_original_ids(tmp_path):
    from safetensors.torch import save_file

    _, tensors = load_fixture("llamagen_vq16")
    state = {"module." + k[6:]: v.contiguous() for k, v in tensors.items() if k.startswith("model.")}
    save_file(state, tmp_path / "vq.safetensors")
    assert_matches_original(FVQModel.from_original_checkpoint(tmp_path / "vq.safetensors"), tensors)


def test_a_hub_file_converts_from_the_offline_cache(tmp_path, monkeypatch):
    path, tensors = original_file("llamagen_vq8", tmp_path)
    snapshot = tmp_path / "hub" / "models--org--llamagen" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    path.rename(snapshot / "vq_ds8_c2i.pt")
    (tmp_path / "hub" / "models--org--llamagen" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--llamagen" / "refs" / "main").write_text("a" * 40)
    model, info = FVQModel.from_original_checkpoint("org/llamagen", filename="vq_ds8_c2i.pt",
                                                    cache_dir=tmp_path / "hub", output_loading_info=True)
    assert info.source == "org/llamagen/vq_ds8_c2i.pt"
    assert_matches_original(model, tensors)
    with pytest.raises(FileNotFoundError, match="not in the local Hub cache"):
        FVQModel.from_original_checkpoint("org/llamagen", filename="vq_ds16_c2i.pt", cache_dir=tmp_path / "hub")


def test_converted_model_round_trips_and_folds(tmp_path):
    path, tensors = original_file("fvq_release_vit", tmp_path)
    model = FVQModel.from_original_checkpoint(path)
    model.save_pretrained(tmp_path / "converted")
    assert_matches_original(FVQModel.from_pretrained(tmp_path / "converted").eval(), tensors)
    assert_matches_original(model.fold_bridge().eval(), tensors)


@pytest.mark.parametrize("content, match", [
    (b"garbage", "Cannot read .* truncated, or not a checkpoint"),
    (None, "pickles an object of type"),
    ("truncate", "truncated"),
    ([1, 2], "holds a list"),
])
def test_bad_files_are_named(content, match, tmp_path):
    target = tmp_path / "bad.pt"
    if content is None:
        torch.save({"model": {}, "args": Path("x")}, target)  # a pickled object that is not allow-listed
    elif content == "truncate":
        source, _ = original_file("llamagen_vq16", tmp_path)
        target.write_bytes(source.read_bytes()[:50_000])
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        torch.save(content, target)
    with pytest.raises(ValueError, match=match):
        FVQModel.from_original_checkpoint(target)


def test_missing_unknown_and_foreign_keys_are_named(tmp_path):
    _, tensors = load_fixture("llamagen_vq16")
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    state["quantize.extra_projection.weight"] = torch.zeros(2)
    del state["decoder.conv_out.bias"]
    with pytest.raises(ValueError, match=r"missing: \['decoder.conv_out.bias'\].*unknown: \['quantize.extra_projection"):
        torch.save({"model": state}, tmp_path / "x.pt")
        FVQModel.from_original_checkpoint(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="Not a tokenizer"):
        torch.save({"model": {"fc.weight": torch.zeros(1)}}, tmp_path / "y.pt")
        FVQModel.from_original_checkpoint(tmp_path / "y.pt")
    with pytest.raises(ValueError, match="already in fvq_hf's layout"):
        torch.save(FVQModel.from_original_checkpoint(original_file("llamagen_vq8", tmp_path)[0]).state_dict(),
                   tmp_path / "z.pt")
        FVQModel.from_original_checkpoint(tmp_path / "z.pt")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint file at"):
        FVQModel.from_original_checkpoint(tmp_path / "none.pt")
