"""Parity with VQGAN-LC's latent generators (DiT-LC, SiT-LC: facebookresearch DiT / SiT): their checkpoints give their
outputs through diffusers' DiT transformer, and their diffusion's steps through diffusers' DDPM scheduler.

The fixtures `tests/fixtures/original/{dit,sit}_lc.safetensors` were made once, not by the test suite, by
`benchmarks/authors_dit_lc.py` from zh460045050/VQGAN-LC (commit 4708958): their `DiT` and `SiT` built by their code
(depth 2, width 48, 4 heads, patch 2, 16 x 16 x 8 latents, 1000 classes + null, learned sigma), two seeds for the
`ema` and `model` entries, weights fp16-exact; their eval-mode outputs on fixed latents, times and labels (the null
class among them); and one step of their Gaussian diffusion (1000 steps and their 250-step respacing). The helpers
below write them back as their `train.py` writes its checkpoint (`{"model", "ema", "opt", "args"}`). None of their
code is in this repository.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.models.embeddings import Timesteps
from diffusers.utils.torch_utils import randn_tensor

from fvq_hf.cli.convert import main
from fvq_hf.diffusion.conversion import choose_heads, convert_latent_generator, save_latent_generator
from fvq_hf.diffusion.dit import MappedTimesteps, TimeMappedDiTTransformer2DModel

from ..helpers import load_fixture, make_tiny_model

TOLERANCE = 1e-4  # measured: DiT 0 (bit-identical), SiT 2.4e-7


def their_state(kind: str, entry: str = "ema") -> dict[str, torch.Tensor]:
    _, tensors = load_fixture(f"{kind}_lc")
    return {k[len(entry) + 1:]: v for k, v in tensors.items() if k.startswith(entry + ".")}


def their_file(kind: str, folder, entry: str = "train", **args) -> tuple:
    """The fixture as their `train.py` saves it (`entry="train"`), or its EMA state dict alone (`"bare"`, as a release
    may be); `args` change their saved args. Returns `(path, tensors)`."""
    meta, tensors = load_fixture(f"{kind}_lc")
    if entry == "bare":
        checkpoint = their_state(kind, "ema")
    else:
        checkpoint = {"model": their_state(kind, "model"), "ema": their_state(kind, "ema"),
                      "opt": {"state": {}, "param_groups": [{"lr": 1e-4, "weight_decay": 0, "params": [0, 1]}]},
                      "args": argparse.Namespace(**{**meta["args"], **args})}
    path = folder / f"{kind}-lc.pth"
    torch.save(checkpoint, path)
    return path, tensors


@torch.no_grad()
def run(model, kind: str, tensors: dict) -> torch.Tensor:
    """Our model at their inputs, in their terms: DiT as it is; SiT at timestep 1000 (1 - t), negated."""
    if kind == "dit":
        return model(tensors["latents"], tensors["times"], tensors["labels"]).sample
    return -model(tensors["latents"], 1000 * (1 - tensors["times"]), tensors["labels"]).sample


@pytest.mark.parametrize("kind", ["dit", "sit"])
@pytest.mark.parametrize("weights", ["auto", "ema", "model"])
def test_their_checkpoints_give_their_outputs(kind, weights, tmp_path):
    path, tensors = their_file(kind, tmp_path)
    transformer, scheduler = convert_latent_generator(path, weights=weights, num_heads=4)
    expected = tensors[f"expected_{'ema' if weights == 'auto' else weights}"]
    error = (run(transformer, kind, tensors) - expected).abs().max().item()
    assert error < TOLERANCE
    assert not torch.allclose(tensors["expected_ema"], tensors["expected_model"], atol=1e-2)  # the entries differ
    config = transformer.config
    assert (config.in_channels, config.out_channels, config.sample_size, config.num_embeds_ada_norm) == (
        8, 16 if kind == "dit" else 8, 16, 1000)
    assert (config.timestep_freq_shift, config.timestep_scale, config.timestep_offset) == (
        (0, 1.0, 0.0) if kind == "dit" else (0, -0.001, 1.0))
    assert type(scheduler) is (DDPMScheduler if kind == "dit" else FlowMatchEulerDiscreteScheduler)
    assert not transformer.training


def test_the_null_class_is_theirs(tmp_path):
    """Label 1000 (classifier-free guidance's null class) reads their table's last row."""
    path, tensors = their_file("dit", tmp_path)
    transformer, _ = convert_latent_generator(path, num_heads=4)
    table = transformer.transformer_blocks[0].norm1.emb.class_embedder.embedding_table.weight
    assert table.shape[0] == 1001 and torch.equal(table[1000], their_state("dit")["y_embedder.embedding_table.weight"][1000])
    assert 1000 in tensors["labels"].tolist()


def test_diffusers_timestep_embedding_is_not_theirs():
    """The trap: diffusers' DiT embeds t with frequencies 10000^(-i/127), theirs with 10000^(-i/128). With diffusers'
    embedding, their converted weights miss their outputs by far more than the tolerance."""
    t = torch.tensor([999.0])
    diffusers_embedding = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)(t)
    theirs = MappedTimesteps(256, downscale_freq_shift=0)(t)
    angles = 999 * 10000 ** -(torch.arange(128, dtype=torch.float64) / 128)  # cos first, as theirs
    exact = torch.cat([torch.cos(angles), torch.sin(angles)])[None].float()
    torch.testing.assert_close(theirs, exact, rtol=0, atol=2e-4)  # fp32 angles up to 999: about 6e-5
    assert (diffusers_embedding - theirs).abs().max() > 0.5
    _, tensors = load_fixture("dit_lc")
    ours, _ = convert_latent_generator(their_state("dit"), kind="dit", num_heads=4)
    plain = DiTTransformer2DModel(**{k: v for k, v in ours.config.items() if not k.startswith(("_", "timestep_"))})
    plain.load_state_dict(ours.state_dict())
    assert (run(plain.eval(), "dit", tensors) - tensors["expected_ema"]).abs().max() > 1e-3  # measured 4.8e-3
    assert (run(ours, "dit", tensors) - tensors["expected_ema"]).abs().max() < TOLERANCE


@pytest.mark.parametrize("steps", [1000, 250])
def test_the_scheduler_steps_as_their_diffusion(steps):
    """One step of diffusers' DDPM (the recorded config) on a given model output (eps, learned-range values) is their
    `p_mean_variance` mean plus exp(log-variance / 2) times the same noise; at 250 steps their respacing takes the
    timesteps of "linspace" spacing."""
    _, tensors = load_fixture("dit_lc")
    _, scheduler = convert_latent_generator(their_state("dit"), kind="dit", num_heads=4)
    scheduler.set_timesteps(steps)
    their_map = tensors[f"step_{steps}_timestep_map"]
    assert torch.equal(scheduler.timesteps.flip(0).long(), their_map)
    timestep = int(their_map[int(tensors[f"step_{steps}_index"])])
    x = tensors["latents"]
    step = scheduler.step(tensors["step_model_output"], timestep, x, generator=torch.Generator().manual_seed(5))
    noise = randn_tensor(x.shape, generator=torch.Generator().manual_seed(5), dtype=x.dtype)
    expected = tensors[f"step_{steps}_mean"] + torch.exp(0.5 * tensors[f"step_{steps}_log_variance"]) * noise
    torch.testing.assert_close(step.prev_sample, expected, rtol=0, atol=1e-5)  # measured 1.3e-6 / 4.8e-7


def test_a_flow_matching_step_is_an_euler_step_of_their_ode():
    """diffusers' flow-matching Euler step from sigma = 1 (timestep 1000, their t = 0: pure noise) moves x by
    (1 - sigma_next) times their velocity at t = 0, as an Euler step of their ODE from t = 0 to 1 - sigma_next."""
    _, tensors = load_fixture("sit_lc")
    transformer, scheduler = convert_latent_generator(their_state("sit"), kind="sit", num_heads=4)
    scheduler.set_timesteps(4)
    timestep, sigma_next = scheduler.timesteps[0], scheduler.sigmas[1]
    assert timestep == 1000 and tensors["times"][0] == 0
    x, y = tensors["latents"][:1], tensors["labels"][:1]
    with torch.no_grad():
        step = scheduler.step(transformer(x, timestep.expand(1), y).sample, timestep, x).prev_sample
    torch.testing.assert_close(step, x + (1 - sigma_next) * tensors["expected_ema"][:1], rtol=0, atol=1e-5)


def test_dit_pipeline_samples_with_the_converted_dit_and_an_fvq_model(tmp_path):
    """diffusers' own DiTPipeline: the converted DiT as its transformer (d = 8 latents: the FVQ model's code width
    `vq_embed_dim`), an FVQModel as its vae. DiTPipeline drops the learned-variance half before the scheduler's step,
    so it takes the recorded schedule without learned variance: DDIM on the same betas (as diffusers' DiT release);
    the learned-range DDPM itself needs all 2C channels."""
    transformer, scheduler = convert_latent_generator(their_file("dit", tmp_path)[0], num_heads=4)
    vae = make_tiny_model().eval()  # downsample 4, vq_embed_dim 8
    assert vae.config.vq_embed_dim == transformer.config.in_channels
    pipe = DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler.from_config(scheduler.config))
    images = pipe(class_labels=[1, 999], guidance_scale=4.0, num_inference_steps=2, generator=torch.manual_seed(0),
                  output_type="np").images
    assert images.shape == (2, 64, 64, 3) and np.isfinite(images).all()


@pytest.mark.parametrize("kind", ["dit", "sit"])
def test_the_converted_folder_round_trips(kind, tmp_path):
    transformer, scheduler = convert_latent_generator(their_file(kind, tmp_path)[0], num_heads=4)
    save_latent_generator(transformer, scheduler, tmp_path / "out")
    loaded = TimeMappedDiTTransformer2DModel.from_pretrained(tmp_path / "out" / "transformer")
    config = json.loads((tmp_path / "out" / "transformer" / "config.json").read_text())
    assert config["_class_name"] == "TimeMappedDiTTransformer2DModel" and config["norm_eps"] == 1e-6
    _, tensors = load_fixture(f"{kind}_lc")
    assert torch.equal(run(loaded, kind, tensors), run(transformer, kind, tensors))
    scheduler_class = type(scheduler)
    reloaded = scheduler_class.from_pretrained(tmp_path / "out" / "scheduler").config
    assert {k: v for k, v in reloaded.items() if not k.startswith("_")} == {
        k: v for k, v in scheduler.config.items() if not k.startswith("_")}
    if kind == "dit":
        assert {k: scheduler.config[k] for k in ("beta_start", "beta_end", "beta_schedule", "variance_type",
                                                 "prediction_type", "num_train_timesteps", "clip_sample")} == {
            "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "variance_type": "learned_range",
            "prediction_type": "epsilon", "num_train_timesteps": 1000, "clip_sample": False}


def test_diffusers_own_dit_folders_load_unchanged(tmp_path):
    """With the defaults the model is diffusers' DiT: its folders load and give its outputs."""
    torch.manual_seed(0)
    plain = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                  num_layers=1, sample_size=8).eval()
    plain.save_pretrained(tmp_path / "plain")
    ours = TimeMappedDiTTransformer2DModel.from_pretrained(tmp_path / "plain")
    assert (ours.config.timestep_freq_shift, ours.config.timestep_scale, ours.config.timestep_offset) == (1, 1, 0)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 999]), torch.tensor([1, 1000])
    with torch.no_grad():
        assert torch.equal(ours(x, t, y).sample, plain(x, t, y).sample)


# ---- errors -------------------------------------------------------------------------------------------------------
def test_the_kind_comes_from_their_args_or_must_be_given(tmp_path):
    path, _ = their_file("sit", tmp_path)
    transformer, scheduler = convert_latent_generator(path, num_heads=4)  # their args: SiT-tiny/2, Linear, velocity
    assert isinstance(scheduler, FlowMatchEulerDiscreteScheduler)
    with pytest.raises(ValueError, match=r"kind='dit', but sit-lc.pth is a SIT checkpoint"):
        convert_latent_generator(path, kind="dit")
    bare, tensors = their_file("dit", tmp_path, entry="bare")
    with pytest.raises(ValueError, match="does not say whether it is a DiT or a SiT .* pass kind='dit' or kind='sit'"):
        convert_latent_generator(bare, num_heads=4)
    transformer, _ = convert_latent_generator(bare, kind="dit", num_heads=4)  # their find_model: the whole file
    assert (run(transformer, "dit", tensors) - tensors["expected_ema"]).abs().max() < TOLERANCE
    with pytest.raises(ValueError, match="kind='flow': choose 'dit' or 'sit'"):
        convert_latent_generator(bare, kind="flow")


def test_a_sit_of_another_path_or_prediction_is_refused(tmp_path):
    path, _ = their_file("sit", tmp_path, path_type="GVP")
    with pytest.raises(ValueError, match="path GVP and velocity prediction: only the linear path"):
        convert_latent_generator(path)


def test_heads_come_from_their_presets_or_must_be_given(tmp_path):
    bare, _ = their_file("dit", tmp_path, entry="bare")
    with pytest.raises(ValueError, match=r"not one of their presets \(depth 2, width 48\) .* pass num_heads"):
        convert_latent_generator(bare, kind="dit")
    with pytest.raises(ValueError, match="num_heads=5 does not divide the width 48"):
        convert_latent_generator(bare, kind="dit", num_heads=5)
    path, _ = their_file("dit", tmp_path, model="DiT-XL/2")
    with pytest.raises(ValueError, match=r"args say DiT-XL/2 \(depth 28, width 1152\), but its weights have depth 2"):
        convert_latent_generator(path)


def test_their_presets_give_the_heads():
    assert choose_heads(None, {"model": "SiT-XL/2"}, 28, 1152, "sit-lc-100K-f16.pth") == 16  # DiT-LC, SiT-LC
    assert choose_heads(None, None, 12, 768, "bare.pth") == 12  # B, read off depth and width
    assert choose_heads(8, {"model": "DiT-L/4"}, 24, 1024, "l.pth") == 8  # given wins


def test_a_file_that_is_not_a_dit_is_refused(tmp_path):
    _, tensors = load_fixture("vqgan_lc_f16")
    tokenizer = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    with pytest.raises(ValueError, match="is not a DiT / SiT checkpoint: it has no x_embedder.proj.weight"):
        convert_latent_generator(tokenizer, kind="dit")
    torch.save({"state_dict": tokenizer}, tmp_path / "vqgan.pth")
    with pytest.raises(ValueError, match=r"no such entry \(entries: \['state_dict'\]\)"):
        convert_latent_generator(tmp_path / "vqgan.pth", weights="ema")
    with pytest.raises(ValueError, match="weights='state_dict': their DiT / SiT files have no such entry"):
        convert_latent_generator(tmp_path / "vqgan.pth", weights="state_dict")
    with pytest.raises(FileNotFoundError, match="No checkpoint file at"):
        convert_latent_generator(tmp_path / "none.pth")


def test_missing_unknown_and_misshapen_keys_are_named(tmp_path):
    state = their_state("dit")
    del state["blocks.1.attn.qkv.bias"], state["t_embedder.mlp.2.weight"]
    state["blocks.0.attn.q_norm.weight"] = torch.ones(12)
    state["blocks.0.mlp.fc1.weight"] = state["blocks.0.mlp.fc1.weight"][:96]
    with pytest.raises(ValueError) as error:
        convert_latent_generator(state, kind="dit", num_heads=4)
    assert str(error.value) == (
        "<memory> does not fit the DiT / SiT layout of 2 blocks, width 48: missing: ['t_embedder.mlp.2.weight', "
        "'blocks.1.attn.qkv.bias']; unknown: ['blocks.0.attn.q_norm.weight']; wrong shape: ['blocks.0.mlp.fc1.weight "
        "(96, 48) (expected (192, 48))'].")
    state = their_state("sit")
    state["final_layer.linear.weight"] = state["final_layer.linear.weight"][:24]
    del state["final_layer.linear.bias"]
    with pytest.raises(ValueError, match=r"missing: \['final_layer.linear.bias'\]; wrong shape: \['final_layer.linear"
                                         r".weight rows 24 \(patch\^2 x 8 or x 16\)'\]"):
        convert_latent_generator(state, kind="sit", num_heads=4)
    state = their_state("dit")
    state["pos_embed"] = state["pos_embed"] + 0.01
    with pytest.raises(ValueError, match="pos_embed is not their fixed 2-D sin-cos table"):
        convert_latent_generator(state, kind="dit", num_heads=4)


# ---- the command line ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, generator", [("dit", "dit"), ("sit", "auto")])
def test_fvq_convert_writes_the_transformer_and_scheduler(kind, generator, tmp_path, capsys):
    path, tensors = their_file(kind, tmp_path)
    main([str(path), "--generator", generator, "--output", str(tmp_path / "out"), "--num-heads", "4",
          "--weights", "model"])
    assert "Wrote" in capsys.readouterr().out
    transformer = TimeMappedDiTTransformer2DModel.from_pretrained(tmp_path / "out" / "transformer")
    assert (run(transformer, kind, tensors) - tensors["expected_model"]).abs().max() < TOLERANCE
    assert (tmp_path / "out" / "scheduler" / "scheduler_config.json").is_file()


def test_fvq_convert_generator_replaces_only_its_own_earlier_output(tmp_path, capsys):
    """Over an earlier generator output, `--overwrite` writes the new one (without it: refused); over an unrelated
    folder it is refused even with `--overwrite`, and the folder is left as it was."""
    path, tensors = their_file("dit", tmp_path)
    out, argv = tmp_path / "out", [str(path), "--generator", "dit", "--num-heads", "4", "--weights", "model"]
    main([*argv, "--output", str(out)])
    (out / "transformer" / "stale.txt").write_text("from the earlier output")
    with pytest.raises(SystemExit):
        main([*argv, "--output", str(out)])
    assert "exists; choose another output or pass --overwrite" in capsys.readouterr().err
    main([*argv, "--output", str(out), "--overwrite"])
    assert not (out / "transformer" / "stale.txt").exists()  # replaced whole, not written over
    transformer = TimeMappedDiTTransformer2DModel.from_pretrained(out / "transformer")
    assert (run(transformer, "dit", tensors) - tensors["expected_model"]).abs().max() < TOLERANCE
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(SystemExit):
        main([*argv, "--output", str(mine), "--overwrite"])
    assert "is not an earlier output of this command" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_fvq_convert_generator_errors_exit_2_without_traceback(tmp_path, capsys):
    path, _ = their_file("dit", tmp_path)
    for argv, message in (([str(path), "--generator", "sit"], "kind='sit', but dit-lc.pth is a DIT checkpoint"),
                          ([str(path), "--generator", "dit", "--fold"], "--fold is a tokenizer option"),
                          ([str(tmp_path / "none.pth"), "--generator", "dit"], "No checkpoint file at")):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--output", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith("fvq-convert: error: ") and message in err
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
