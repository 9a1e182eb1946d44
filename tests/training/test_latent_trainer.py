import json

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, DiTTransformer2DModel, FlowMatchEulerDiscreteScheduler, UNet2DModel

from fvq_hf import FVQLatentPipeline, FVQModel
from fvq_hf.cli.train_latent import build_config, main
from fvq_hf.data.latents import LatentDataset
from fvq_hf.training.codes import extract_codes
from fvq_hf.training.config import LatentTrainConfig, latent_loop
from fvq_hf.training.latent_trainer import train

from ..helpers import ROOT, make_tiny_model, perturb_bridge, write_images

TINY_DIT = dict(num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=8, num_layers=2,
                sample_size=8, patch_size=2, num_embeds_ada_norm=5)
TINY_UNET = dict(sample_size=8, in_channels=8, out_channels=8, block_out_channels=(32, 32), layers_per_block=1,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=16, norm_num_groups=8, num_class_embeds=6)


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    """Latents of a tiny tokenizer over two classes of images, held-out latents, and three small presets."""
    root = tmp_path_factory.mktemp("latents")
    tokenizer = make_tiny_model().eval()
    perturb_bridge(tokenizer)
    tokenizer.save_pretrained(root / "tok")
    for name, seed in (("a", 0), ("b", 1)):
        write_images(root / "data" / name, count=6, seed=seed)
        write_images(root / "heldout" / name, count=2, seed=seed + 10)
    extract_codes(str(root / "tok"), str(root / "data"), root / "lat", num_workers=0, latents=True)
    extract_codes(str(root / "tok"), str(root / "heldout"), root / "lat-heldout", num_workers=0, latents=True)
    extract_codes(str(root / "tok"), str(root / "heldout"), root / "ids-only", num_workers=0)
    for name, model, scheduler in (("dit", DiTTransformer2DModel(**TINY_DIT), DDPMScheduler(clip_sample=False)),
                                   ("sit", DiTTransformer2DModel(**TINY_DIT), FlowMatchEulerDiscreteScheduler()),
                                   ("unet", UNet2DModel(**TINY_UNET), DDPMScheduler(clip_sample=False))):
        model.save_config(root / name / ("unet" if name == "unet" else "transformer"))
        scheduler.save_config(root / name / "scheduler")
    return root


def config_for(root, out, preset="dit", eval_latents=True, **changes) -> LatentTrainConfig:
    loop = {k: changes.pop(k) for k in list(changes) if k in latent_loop().__dict__}
    loop = latent_loop(**{"output_dir": str(root / out), "batch_size": 4, "lr": 2e-3, "report_to": "none",
                          "num_workers": 0, "log_every": 2, **loop})
    return LatentTrainConfig(config=str(root / preset), latents=str(root / "lat"), loop=loop, sample_steps=4,
                             samples_per_class=2, eval_latents=str(root / "lat-heldout") if eval_latents else None,
                             **changes)


def test_extracted_latents_are_the_encoders_and_quantize_to_the_stored_ids(latents):
    data = LatentDataset(latents / "lat", all_views=True)
    tokenizer = FVQModel.from_pretrained(latents / "tok").fold_bridge().eval()
    assert data.latent_shape == (8, 8, 8) and len(data) == 2 * 12
    stored = np.load(latents / "lat" / "latents-00000.npy")
    ids = np.load(latents / "lat" / "codes-00000.npy")
    with torch.no_grad():
        requantized = tokenizer.quantizer(torch.from_numpy(stored.reshape(-1, 8, 8, 8))).indices
    assert np.array_equal(requantized.numpy().reshape(ids.shape), ids)
    # view 1 is the encoding of the flipped image (not the flipped latents, nor the image again)
    from PIL import Image

    from fvq_hf.data.image_io import pil_to_tensor, resize_center_crop

    first = sorted((latents / "data" / "a").iterdir())[0]
    image = pil_to_tensor(resize_center_crop(Image.open(first).convert("RGB"), 32)).unsqueeze(0)
    with torch.no_grad():
        expected = [tokenizer.encode(v).latents[0].numpy() for v in (image, image.flip(-1))]
    row = next(i for i in range(len(stored)) if np.allclose(stored[i, 0], expected[0], atol=1e-5))
    assert np.allclose(stored[row, 1], expected[1], atol=1e-5)
    from fvq_hf.cli.extract_codes import main as extract

    extract(["--tokenizer", str(latents / "tok"), "--data", str(latents / "heldout"), "--latents", "--num-workers",
             "0", "--output-dir", str(latents / "cli")])
    assert np.array_equal(np.load(latents / "cli" / "latents-00000.npy"),
                          np.load(latents / "lat-heldout" / "latents-00000.npy"))


def test_latents_are_memory_mapped_not_loaded(latents):
    """The files are memory-mapped: a data set of any size costs its open files, not its bytes (the streamed read of
    `fvq-train-latent`; `fvq-extract-codes` itself reads streams and shards)."""
    data = LatentDataset(latents / "lat")
    assert all(isinstance(shard, np.memmap) and shard.mode == "r" for shard in data.latents)
    item, _ = data[3]
    assert not isinstance(item.numpy(), np.memmap) and item.dtype == torch.float32  # a copy: the file is read-only


def test_a_codes_folder_without_latents_is_refused_with_the_command_that_makes_one(latents, capsys):
    with pytest.raises(ValueError, match="fvq-extract-codes --latents"):
        LatentDataset(latents / "ids-only")
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(latents / "dit"), "--latents", str(latents / "ids-only"), "--output-dir",
              str(latents / "x"), "--report-to", "none"])
    assert exit_.value.code == 2 and "fvq-train-latent: error: " in capsys.readouterr().err


def test_a_trained_generator_is_saved_as_a_pipeline_with_its_scale_baselines_and_samples(latents):
    result = train(config_for(latents, "run", max_steps=6))
    out = latents / "run"
    all_values = np.load(latents / "lat" / "latents-00000.npy")
    assert result.scaling_factor == pytest.approx(1 / all_values.astype(np.float64).std(), rel=1e-6)
    measured = json.loads((out / "eval.json").read_text())[str(latents / "lat-heldout")]
    assert measured["num_samples"] == 2 * 2 * 2 and measured["draws"] == 4
    # the untrained baseline is this run's initial model (the preset, the data's shape, the run's seed)
    from accelerate.utils import set_seed

    from fvq_hf.training.latent_evaluation import held_out_loss

    set_seed(0)
    initial = DiTTransformer2DModel(**{**TINY_DIT, "num_embeds_ada_norm": 2})
    again = held_out_loss(initial, DDPMScheduler(clip_sample=False), latents / "lat-heldout",
                          result.scaling_factor, 64, 4, "cpu")
    assert again["denoising_loss"] == pytest.approx(measured["denoising_loss_untrained"], rel=1e-6)
    assert {"denoising_loss", "denoising_loss_untrained", "denoising_loss_class_gaussian",
            "denoising_loss_unconditional"} <= set(measured)
    pipe = FVQLatentPipeline.from_pretrained(out / "pipeline")
    assert pipe.vq.config.scaling_factor == pytest.approx(result.scaling_factor)
    assert pipe.config.class_names == ["a", "b"] and pipe.transformer.config.num_embeds_ada_norm == 2
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    card = (out / "pipeline" / "README.md").read_text()
    assert "scaling factor" in card and "DDIMScheduler" in card and "class-Gaussian denoiser" in card
    assert "Trained with `fvq-train-latent` for 6 steps" in card
    from PIL import Image

    assert Image.open(out / "samples.png").size == (2 * 32, 2 * 32)  # a row per class, 2 samples each
    pipe.set_progress_bar_config(disable=True)
    first = pipe(["a", "b"], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt")
    again = pipe(["a", "b"], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert torch.equal(first.images, again.images)


@pytest.mark.parametrize("preset", ["sit", "unet"])
def test_training_lowers_the_held_out_loss_below_the_untrained_model(latents, preset):
    train(config_for(latents, f"long-{preset}", preset=preset, max_steps=30, class_dropout=0.0))
    measured = json.loads((latents / f"long-{preset}" / "eval.json").read_text())[str(latents / "lat-heldout")]
    assert measured["denoising_loss"] < 0.8 * measured["denoising_loss_untrained"]
    pipe = FVQLatentPipeline.from_pretrained(latents / f"long-{preset}" / "pipeline")
    assert (pipe.unet is not None) == (preset == "unet")


@pytest.mark.parametrize("stop_after", [3, 4])  # 3 batches per epoch: at an epoch's end, and mid-epoch
def test_resume_is_exact_with_the_ema(latents, stop_after):
    common = dict(max_steps=6, eval_latents=False, ema_decay=0.9)
    straight = train(config_for(latents, f"straight-{stop_after}", **common)).model
    train(config_for(latents, f"resumed-{stop_after}", stop_after=stop_after, **common))
    resumed = train(config_for(latents, f"resumed-{stop_after}", resume=True, **common))
    assert resumed.step == 6
    for a, b in zip(straight.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    saved = [FVQLatentPipeline.from_pretrained(latents / f"{name}-{stop_after}" / "pipeline").transformer
             for name in ("straight", "resumed")]
    for a, b in zip(saved[0].state_dict().values(), saved[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the averaged weights too


def test_the_loop_flags_reach_the_optimizer(latents, monkeypatch):
    """--beta2 and --adam-eps (the loop flags shared with the other trainers) are the AdamW the run steps with."""
    made = []
    original = torch.optim.AdamW

    class Recorded(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.defaults)

    monkeypatch.setattr(torch.optim, "AdamW", Recorded)
    train(config_for(latents, "flags", max_steps=1, eval_latents=False, adam_eps=1e-7, beta2=0.98))
    assert (made[0]["eps"], made[0]["betas"]) == (1e-7, (0.9, 0.98))


def test_the_presets_build_for_the_builtin_latents():
    from fvq_hf.diffusion.generators import find_generator, load_scheduler

    for name, params in (("latent-dit-cpu", 1.43), ("latent-sit-cpu", 1.43), ("latent-unet-cpu", 4.0)):
        component, cls = find_generator(ROOT / "hub_configs" / name)
        model = cls.from_config(cls.load_config(ROOT / "hub_configs" / name, subfolder=component))
        assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params, abs=0.01)
        load_scheduler(ROOT / "hub_configs" / name)
    for name in ("latent-dit-xl-2", "latent-sit-xl-2"):  # DiT-XL/2 on 16 x 16 latents of d = 8: config only
        config = DiTTransformer2DModel.load_config(ROOT / "hub_configs" / name, subfolder="transformer")
        assert (config["num_layers"], config["num_attention_heads"] * config["attention_head_dim"],
                config["patch_size"], config["sample_size"], config["in_channels"]) == (28, 1152, 2, 16, 8)
    assert type(load_scheduler(ROOT / "hub_configs" / "latent-sit-xl-2")).__name__ == "FlowMatchEulerDiscreteScheduler"


@pytest.mark.parametrize("flags, message", [
    (["--scaling-factor", "0"], "--scaling-factor must be a finite number > 0"),
    (["--class-dropout", "1"], "--class-dropout"),
    (["--sample-guidance", "0.5"], "--sample-guidance"),
])
def test_bad_flags_are_refused_with_the_flag_named(flags, message, capsys):
    with pytest.raises(ValueError, match=message):
        build_config(["--config", "c", "--latents", "d", *flags])
    with pytest.raises(SystemExit) as exit_:
        main(["--config", "c", "--latents", "d", *flags])
    assert exit_.value.code == 2 and f"fvq-train-latent: error: {message.split(' must')[0]}" in capsys.readouterr().err


def test_an_unknown_sampler_or_one_of_the_other_objective_is_refused(latents, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--config", "c", "--latents", "d", "--sampler", "plms"])
    assert exit_.value.code == 2 and "invalid choice: 'plms'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="sampler 'ddim' does not sample a flow model"):
        train(config_for(latents, "wrong-sampler", preset="sit", max_steps=1, sampler="ddim"))


def test_generators_that_do_not_fit_the_latents_are_refused(latents, tmp_path):
    other = DiTTransformer2DModel(**{**TINY_DIT, "in_channels": 4, "out_channels": 4, "num_embeds_ada_norm": 2})
    other.save_pretrained(tmp_path / "pre" / "transformer")
    DDPMScheduler().save_config(tmp_path / "pre" / "scheduler")
    with pytest.raises(ValueError, match=r"are 8 x 8 x 8 \(channels x grid\); the DiTTransformer2DModel takes 4 x 8 x 8"):
        train(LatentTrainConfig(config=str(tmp_path / "pre"), latents=str(latents / "lat"), init_weights=True,
                                loop=latent_loop(output_dir=str(tmp_path / "x"), report_to="none", num_workers=0)))
    DiTTransformer2DModel(**{**TINY_DIT, "patch_size": 3}).save_config(tmp_path / "patch" / "transformer")
    DDPMScheduler().save_config(tmp_path / "patch" / "scheduler")
    with pytest.raises(ValueError, match="patch size 3 does not divide the latent grid 8"):
        train(LatentTrainConfig(config=str(tmp_path / "patch"), latents=str(latents / "lat"),
                                loop=latent_loop(output_dir=str(tmp_path / "y"), report_to="none", num_workers=0)))


def test_a_tokenizer_of_another_latent_width_is_refused(latents, tmp_path, capsys):
    make_tiny_model(vq_embed_dim=4).save_pretrained(tmp_path / "tok4")
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(latents / "dit"), "--latents", str(latents / "lat"), "--tokenizer",
              str(tmp_path / "tok4"), "--output-dir", str(tmp_path / "x"), "--report-to", "none"])
    assert exit_.value.code == 2
    assert "fvq-train-latent: error: --tokenizer" in capsys.readouterr().err


def test_an_unknown_scheduler_and_eval_every_without_latents_are_refused(latents, tmp_path, capsys):
    DiTTransformer2DModel(**TINY_DIT).save_config(tmp_path / "odd" / "transformer")
    (tmp_path / "odd" / "scheduler").mkdir()
    (tmp_path / "odd" / "scheduler" / "scheduler_config.json").write_text('{"_class_name": "NoSuchScheduler"}')
    with pytest.raises(SystemExit) as exit_:
        main(["--config", str(tmp_path / "odd"), "--latents", str(latents / "lat"), "--output-dir",
              str(tmp_path / "x"), "--report-to", "none"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "names 'NoSuchScheduler'; a latent generator trains and samples with one of" in err
    with pytest.raises(ValueError, match="--eval-every evaluates the held-out latents: give --eval-latents"):
        build_config(["--config", "c", "--latents", "d", "--eval-every", "5"])


@pytest.mark.slow
def test_two_processes_train_the_same_weights_and_split_the_evaluation(latents):
    """Two real processes over gloo: each reads its own batches; both end with the same weights and scale; the
    held-out evaluation runs the model on half the batches on each, and gives what one process gives, to the bit."""
    from pathlib import Path

    from fvq_hf.training.latent_evaluation import held_out_loss

    from ..helpers import run_in_two_processes

    out = latents / "two"
    lines = run_in_two_processes(Path(__file__).with_name("latent_ddp_worker.py"), [
        "--config", str(latents / "dit"), "--latents", str(latents / "lat"), "--output-dir", str(out),
        "--max-steps", "3", "--batch-size", "2", "--report-to", "none", "--num-workers", "0", "--sample-steps", "2",
        "--samples-per-class", "1", "--eval-latents", str(latents / "lat-heldout"), "--eval-batch-size", "2",
        "--eval-draws", "2", "--eval-every", "2"])
    ranks = [dict(zip(line[::2], line[1::2])) for line in lines]
    assert [(r["RANK"], r["WORLD"]) for r in ranks] == [("0", "2"), ("1", "2")]
    # the same weights and scale; each process its own noise, timesteps and label dropout (seed * 2 + rank)
    assert all(ranks[0][k] == ranks[1][k] for k in ("WEIGHTS", "SCALE", "STEP")) and ranks[0]["STEP"] == "3"
    assert (ranks[0]["NOISE_SEED"], ranks[1]["NOISE_SEED"]) == ("0", "1")
    assert (out / "pipeline" / "model_index.json").is_file()
    # model calls: 3 training steps; 8 held-out samples in 4 batches of 2, 2 draws, 2 predictions (labels, null),
    # at step 2 (--eval-every) and at the end for the trained and the untrained model: 2 batches of each on each
    # process (one alone: 4)
    assert [int(r["PREDICTS"]) for r in ranks] == [3 + 3 * (2 * 2 * 2)] * 2
    both = [json.loads(r["EVAL"])[str(latents / "lat-heldout")] for r in ranks]
    assert both[0] == both[1] and both[0]["num_samples"] == 8
    pipe = FVQLatentPipeline.from_pretrained(out / "pipeline")
    alone = held_out_loss(pipe.transformer, DDPMScheduler(clip_sample=False), latents / "lat-heldout",
                          float(ranks[0]["SCALE"]), 2, 2, "cpu", class_names=["a", "b"])
    assert alone["denoising_loss"] == both[0]["denoising_loss"]  # one process: the same sum in the same order
    assert alone["denoising_loss_unconditional"] == both[0]["denoising_loss_unconditional"]


@pytest.mark.slow
def test_a_killed_run_resumes_exactly(latents):
    """kill -9 after its first checkpoint, then --resume: the weights of a run that was never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["--config", str(latents / "dit"), "--latents", str(latents / "lat"), "--max-steps", "30",
            "--batch-size", "4", "--checkpoint-every", "3", "--report-to", "none", "--num-workers", "0",
            "--sample-steps", "1", "--samples-per-class", "1"]
    killed = latents / "killed"
    command = [sys.executable, "-m", "fvq_hf.cli.train_latent", *args, "--output-dir", str(killed)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not list((killed / "checkpoints").glob("step-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (killed / "pipeline").exists()  # killed mid-run
    resumed = train(build_config([*args, "--output-dir", str(killed), "--resume"]))
    straight = train(build_config([*args, "--output-dir", str(latents / "straight-30")]))
    assert resumed.step == straight.step == 30
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_bf16_and_compile_train_evaluate_and_save_as_usual(latents, fresh_accelerator_state):
    """`--mixed-precision bf16` (CPU autocast) and `--compile` (inductor on CPU; about a minute to compile) run the
    whole job: the same start, weights kept and saved in fp32 without `_orig_mod.` keys, losses as eager fp32's up to
    bf16 rounding (bf16) or the order of the arithmetic (compile)."""
    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file

    runs = {}
    for name, changes in (("fp32", {}), ("bf16", {"mixed_precision": "bf16"}), ("compiled", {"compile": True})):
        AcceleratorState._reset_state(reset_partial_state=True)  # one precision per process state
        runs[name] = train(config_for(latents, name, max_steps=2, eval_draws=1, **changes))
    key = str(latents / "lat-heldout")
    evals = {name: json.loads((latents / name / "eval.json").read_text())[key] for name in runs}
    for name in runs:
        saved = load_file(latents / name / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors")
        assert all(t.dtype == torch.float32 for t in saved.values()) and not any("_orig_mod" in k for k in saved)
        assert saved.keys() == runs["fp32"].model.state_dict().keys()
    # the untrained baseline is the same model in each: bf16 moves its loss by rounding only
    assert evals["bf16"]["denoising_loss_untrained"] == pytest.approx(evals["fp32"]["denoising_loss_untrained"],
                                                                      rel=2e-2)
    assert evals["bf16"]["denoising_loss_untrained"] != evals["fp32"]["denoising_loss_untrained"]  # it ran in bf16
    assert runs["bf16"].loss == pytest.approx(runs["fp32"].loss, rel=5e-2)
    assert runs["compiled"].model._compiled_call_impl is not None and runs["fp32"].model._compiled_call_impl is None
    assert runs["compiled"].loss == pytest.approx(runs["fp32"].loss, rel=1e-4)
    assert evals["compiled"]["denoising_loss"] == pytest.approx(evals["fp32"]["denoising_loss"], rel=1e-4)
