import json
import logging
import socket
import subprocess
import sys

import pytest
import torch

from fvq_hf import FVQModel
from fvq_hf.evaluation.usage import UsageWindow, load_usage_file, usage_file_name
from fvq_hf.losses import TokenizerLoss
from fvq_hf.training.runtime import OutputLock, latest_checkpoint
from fvq_hf.training.trainer import train

from ..helpers import (
    ROOT,
    TINY_BRIDGES,
    make_tiny_model,
    random_images,
    write_config,
    write_lpips_weights,
    write_shards,
)
from .runs import run_two_processes, saved_weights, tiny_config, train_args, with_changes


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    model = make_tiny_model()
    loss_fn = TokenizerLoss()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    # The released optimizer at the released peak lr. (From the zero-initialised bridge a first step of 1e-3
    # overshoots; the paper's warmup from 0.005 x lr is there for that.)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95))

    def loss():
        out = model(images)
        return loss_fn.generator_loss(images, out.sample, out.codebook_loss, out.commitment_loss, step=0)[0]

    before = loss()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after < before


def test_training_writes_models_cards_and_evaluation(tmp_path):
    out = tmp_path / "run"
    result = train(tiny_config(tmp_path, max_steps=4, checkpoint_every=2, output_dir=str(out),
                               eval_data=[str(tmp_path / "images")]))
    assert result.step == 4
    model = FVQModel.from_pretrained(out / "model")
    folded = FVQModel.from_pretrained(out / "model-folded")
    assert model.config.bridge_type == "vqbridge" and folded.config.bridge_type == "none"
    card = (out / "model" / "README.md").read_text()
    assert "library_name: fvq-hf" in card and "## Measured" in card and "codebook usage" in card
    evaluation = json.loads((out / "eval.json").read_text())[str(tmp_path / "images")]
    assert evaluation["num_tokens"] == 8 * 8 * 8 and evaluation["codebook_size"] == 256
    usage_file = next(out.glob("usage-*.json"))
    assert sum(json.loads(usage_file.read_text())["counts"]) == evaluation["num_tokens"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]


@pytest.mark.parametrize("quantizer, name, tokens", [
    ({"quantizer_type": "residual", "quantizer_config": {"depth": 2}}, "depth", [8 * 8] * 2),
    ({"quantizer_type": "multiscale", "quantizer_config": {"scales": [1, 4, 8]}}, "scale", [1, 16, 64]),
])
def test_residual_and_multiscale_tokenizers_train_and_count_every_level(quantizer, name, tokens, tmp_path):
    """The evaluation reports each level (8 images: 8 x its tokens), and the usage file beside the model holds each
    level's counts, the figures of which are those reported."""
    out = tmp_path / "run"
    config = tiny_config(tmp_path, max_steps=2, output_dir=str(out), eval_data=[str(tmp_path / "images")])
    write_config(tmp_path / "config", **quantizer)
    train(config)
    assert FVQModel.from_pretrained(out / "model-folded").config.quantizer_type == quantizer["quantizer_type"]
    evaluation = json.loads((out / "eval.json").read_text())[str(tmp_path / "images")]
    assert evaluation["level_name"] == name and evaluation["num_tokens"] == 8 * sum(tokens)
    assert [level["num_tokens"] for level in evaluation["levels"]] == [8 * n for n in tokens]
    assert max(level["usage"] for level in evaluation["levels"]) <= evaluation["usage"]
    saved = load_usage_file(out / usage_file_name(str(tmp_path / "images")), 256)
    assert saved.summary()["levels"] == evaluation["levels"]


def test_rolling_usage_says_how_many_tokens_per_code_it_saw():
    monitor = UsageWindow(codebook_size=256, window=100, device="cpu")
    monitor.update(torch.arange(4 * 8 * 8).remainder(256).view(4, 8, 8), step=1)
    assert monitor.usage(1) == 1.0 and monitor.tokens_per_code(1) == 1.0
    assert monitor.tokens_per_code(500) == 100.0  # a full window of 100 steps of 256 tokens


def test_the_gan_lpips_and_accumulation_terms_train_and_are_logged(tmp_path, caplog):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vgg, linear = write_lpips_weights(tmp_path / "lpips")
    out = tmp_path / "run"
    config = tiny_config(tmp_path, max_steps=2, disc_start=1, gradient_accumulation_steps=2, output_dir=str(out),
                         report_to="tensorboard")
    config.evaluation.weights = {"lpips_vgg": str(vgg), "lpips_linear": str(linear)}
    result = train(config)
    assert result.step == 2  # 2 optimizer steps of 2 micro-batches each
    assert "LPIPS unavailable" not in caplog.text
    folders = {p.parent for p in (out / "logs").rglob("events.out.tfevents.*")}  # accelerate adds an hparams run
    logged = {tag for f in folders for tag in EventAccumulator(str(f)).Reload().Tags()["scalars"]}
    assert {"loss/perceptual", "loss/generator_gan", "loss/discriminator", "usage_rolling", "lr"} <= set(logged)


def test_resume_after_a_stop_gives_the_same_saved_weights(tmp_path):
    base = tiny_config(tmp_path, max_steps=7, checkpoint_every=100)
    train(with_changes(base, output_dir=str(tmp_path / "straight")))
    # Stop mid-epoch (3 batches an epoch), as a crash after the checkpoint at step 4 would, then resume.
    stopped = train(with_changes(base, output_dir=str(tmp_path / "resumed"), stop_after=4))
    assert stopped.step == 4 and not (tmp_path / "resumed" / "model").exists()
    assert latest_checkpoint(tmp_path / "resumed" / "checkpoints").name == "step-00000004"
    resumed = train(with_changes(base, output_dir=str(tmp_path / "resumed"), resume=True))
    assert resumed.step == 7
    a, b = saved_weights(tmp_path / "straight" / "model"), saved_weights(tmp_path / "resumed" / "model")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_interrupted_checkpoint_writes_are_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step-00000010").mkdir(parents=True)
    (root / ".tmp-step-00000020").mkdir()  # a crash mid-write leaves only this
    assert latest_checkpoint(root).name == "step-00000010"
    assert latest_checkpoint(tmp_path / "none") is None


def test_a_damaged_latest_checkpoint_is_skipped_for_the_one_before(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="fvq_hf.training.runtime")
    base = tiny_config(tmp_path, max_steps=6, checkpoint_every=2)
    train(with_changes(base, output_dir=str(tmp_path / "straight")))
    train(with_changes(base, stop_after=4))
    latest = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest.name == "step-00000004"
    (latest / "model.safetensors").write_bytes(b"broken")
    resumed = train(with_changes(base, resume=True))
    assert resumed.step == 6
    assert "skipping" in caplog.text and "step-00000004" in caplog.text and "Resumed from" in caplog.text
    # From step 2 the run takes the same batches again: the weights of an uninterrupted run.
    a, b = saved_weights(tmp_path / "straight" / "model"), saved_weights(tmp_path / "run" / "model")
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_no_loadable_checkpoint_is_a_clear_error(tmp_path):
    base = tiny_config(tmp_path, max_steps=4)
    train(with_changes(base, stop_after=2))
    (latest_checkpoint(tmp_path / "run" / "checkpoints") / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"--resume: no checkpoint under .* can be loaded: step-00000002 \("):
        train(with_changes(base, resume=True))


def test_a_second_live_run_on_the_output_dir_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = OutputLock(out)
        lock.path.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "now"}))
        config = tiny_config(tmp_path, max_steps=1, output_dir=str(out))
        with pytest.raises(ValueError, match=rf"--output-dir {out} is in use by another live run \(pid {sleeper.pid}"):
            train(config)
        assert lock.holder()["pid"] == sleeper.pid  # the live run's lock is left alone
    finally:
        sleeper.kill()
        sleeper.wait()
    # The same lock once its process is gone (a run killed with kill -9) is stale: the next run takes it over.
    assert train(config).step == 1
    assert not lock.path.exists()  # released at the end


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"config": "does/not-exist"}, FileNotFoundError, "--config"),
        # a transformer preset is not a tokenizer config (diffusers alone would build a default tokenizer)
        ({"config": str(ROOT / "hub_configs" / "fvq-gpt-cpu")}, ValueError,
         "is an FVQTransformer config, not an FVQModel one"),
        ({"data": "/no/such/folder"}, FileNotFoundError, "neither"),
        ({"resolution": 30}, ValueError, "multiple of the downsample factor"),
        ({"batch_size": 0}, ValueError, "--batch-size"),
    ],
)
def test_bad_training_input_is_refused_with_the_flag_named(tmp_path, change, error, match):
    with pytest.raises(error, match=match):
        train(tiny_config(tmp_path, max_steps=1, **change))


def test_an_empty_data_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No image files"):
        train(tiny_config(tmp_path, max_steps=1, data=str(tmp_path / "empty")))


@pytest.mark.slow
def test_two_processes_share_global_usage(tmp_path):
    """Two real processes over gloo: both ranks see the same gathered usage and end with the same weights."""
    lines = run_two_processes(train_args(tmp_path, "--max-steps", "3", "--eval-data", "--output-dir",
                                         str(tmp_path / "ddp")))
    assert lines[0][5] == lines[1][5]  # same global usage on both ranks
    assert lines[0][7] == lines[1][7]  # same weights after DDP steps


def test_gradient_checkpointing_trains_the_same_saved_weights(tmp_path):
    runs = {}
    for flag in (False, True):
        out = tmp_path / f"run{int(flag)}"
        runs[flag] = train(tiny_config(tmp_path, max_steps=2, output_dir=str(out), gradient_checkpointing=flag)).model
    assert runs[True].encoder.gradient_checkpointing and not runs[False].encoder.gradient_checkpointing
    for (name, a), (_, b) in zip(runs[False].state_dict().items(), runs[True].state_dict().items()):
        assert torch.equal(a, b), name


def test_the_dit_bridge_trains_resumes_in_bf16_with_checkpointing_and_folds(tmp_path, fresh_accelerator_state):
    """The authors' DiT QBridge as a training option: through fvq-train with bf16 autocast and gradient
    checkpointing, stopped and resumed to the weights of an uninterrupted run, saved, loaded and folded."""
    config = write_config(tmp_path / "dit", bridge_type="dit", bridge_config=TINY_BRIDGES["dit"])
    base = tiny_config(tmp_path, max_steps=5, checkpoint_every=100, mixed_precision="bf16",
                       gradient_checkpointing=True, config=str(config))
    straight = train(with_changes(base, output_dir=str(tmp_path / "straight")))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), stop_after=2))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), resume=True))
    a, b = saved_weights(tmp_path / "straight" / "model"), saved_weights(tmp_path / "resumed" / "model")
    assert all(torch.equal(a[key], b[key]) for key in a)
    trained = straight.model
    assert trained.config.bridge_type == "dit" and trained.encoder.gradient_checkpointing
    # The bridge trained: its zero-initialised output layer moved, so the codebook is no longer all zero.
    assert a["quantizer.bridge.proj_out.weight"].abs().sum() > 0
    images = random_images(2, 32)
    loaded = FVQModel.from_pretrained(tmp_path / "straight" / "model").eval()
    folded = FVQModel.from_pretrained(tmp_path / "straight" / "model-folded").eval()
    with torch.no_grad():
        assert folded.config.bridge_type == "none"
        assert torch.equal(loaded.tokenize(images), folded.tokenize(images))


def test_quantizer_precision_reaches_the_quantizer_of_a_bf16_run(tmp_path, fresh_accelerator_state):
    """`--quantizer-precision autocast` under bf16: the bridge and the search run in bf16 (so the trained weights
    differ from the default fp32 quantizer's after 2 steps), and the saved model says which it trained with."""
    config = write_config(tmp_path / "dit", bridge_type="dit", bridge_config=TINY_BRIDGES["dit"])
    base = tiny_config(tmp_path, max_steps=2, mixed_precision="bf16", config=str(config))
    for precision in ("fp32", "autocast"):
        train(with_changes(base, output_dir=str(tmp_path / precision), quantizer_precision=precision))
    models = {p: FVQModel.from_pretrained(tmp_path / p / "model") for p in ("fp32", "autocast")}
    assert {p: m.config.quantizer_precision for p, m in models.items()} == {"fp32": "fp32", "autocast": "autocast"}
    a, b = (models[p].state_dict() for p in ("fp32", "autocast"))
    assert not torch.equal(a["quantizer.bridge.proj_out.weight"], b["quantizer.bridge.proj_out.weight"])


def test_a_quantizer_without_a_table_refuses_a_precision(tmp_path):
    config = write_config(tmp_path / "c", quantizer_type="scalar", quantizer_config={"levels": 2}, bridge_type="none",
                          bridge_config=None, num_vq_embeddings=2**8, vq_embed_dim=8)
    with pytest.raises(ValueError, match="The scalar quantizer has no quantizer_precision option"):
        FVQModel.from_config(FVQModel.load_config(config)).set_quantizer_precision("autocast")


def _shard_args(tmp_path, *extra, per_shard: int | list[int] = 4):
    args = train_args(tmp_path, "--max-steps", "5", "--eval-data", "--num-workers", "2", *extra)
    args[args.index("--data") + 1] = write_shards(tmp_path / "shards", shards=4, per_shard=per_shard)
    args.remove("--samples-per-epoch")
    args.remove("12")
    return args


def test_training_on_shards_resumes_exactly(tmp_path):
    """16 images in 4 shards, 2 workers, batches of 4: 4 steps an epoch; stopped and resumed within epoch 1."""
    shards = write_shards(tmp_path / "shards", shards=4, per_shard=4)
    base = tiny_config(tmp_path, max_steps=5, num_workers=2, data=shards, samples_per_epoch=None)
    train(with_changes(base, output_dir=str(tmp_path / "straight")))
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), stop_after=3))
    position = json.loads((tmp_path / "resumed/checkpoints/step-00000003/data_position_0.json").read_text())
    assert position == {"epoch": 0, "batches_in_epoch": 3}
    train(with_changes(base, output_dir=str(tmp_path / "resumed"), resume=True))
    a, b = saved_weights(tmp_path / "straight" / "model"), saved_weights(tmp_path / "resumed" / "model")
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("change, match", [
    ({}, "pass --max-steps"), ({"max_steps": 2, "warmup_epochs": 1.0}, "--warmup-epochs does not apply"),
])
def test_streamed_data_needs_steps_not_epochs(change, match, tmp_path):
    shards = write_shards(tmp_path / "shards", shards=1, per_shard=4)
    with pytest.raises(ValueError, match=match):
        tiny_config(tmp_path, data=shards, samples_per_epoch=None, **change)


@pytest.mark.slow
def test_two_processes_read_disjoint_shards(tmp_path):
    """Each rank reads two of the four shards (printed by the worker) and both end with the same weights."""
    lines = run_two_processes(_shard_args(tmp_path, "--output-dir", str(tmp_path / "ddp")))
    assert lines[0][7] == lines[1][7]
    shards = [set(line[line.index("SHARDS") + 1].split(",")) for line in lines]
    assert not shards[0] & shards[1] and shards[0] | shards[1] == {"000", "001", "002", "003"}


def test_compile_where_it_cannot_work_is_a_clear_error(tmp_path, monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    with pytest.raises(ValueError, match=r"--compile: torch.compile does not work on this machine \(InvalidCxxCompiler"):
        train(tiny_config(tmp_path, max_steps=1, compile=True))


@pytest.mark.slow
def test_compiled_models_give_the_eager_losses_and_gradients_and_save_as_usual(tmp_path):
    """torch.compile (inductor on CPU; a minute to compile) changes the order of the arithmetic only: fvq-train's
    loss and its gradients agree. (Weights after a step are not compared: Adam's first step is about
    lr x sign(gradient), which flips where a gradient is ~0.)"""
    from fvq_hf.training.runtime import compile_modules

    images = random_images(4, 32)
    eager, compiled = make_tiny_model(), make_tiny_model()
    compile_modules(torch.device("cpu"), compiled)
    losses = []
    for model in (eager, compiled):
        out = model(images)
        loss = TokenizerLoss().generator_loss(images, out.sample, out.codebook_loss, out.commitment_loss, step=0)[0]
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    # As one vector: a bias ahead of a GroupNorm has a gradient of ~1e-8 (cancelled by the norm), all rounding.
    grads = [torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
             for model in (eager, compiled)]
    assert (grads[0] - grads[1]).norm() <= 1e-5 * grads[0].norm()
    out = tmp_path / "run"
    result = train(tiny_config(tmp_path, max_steps=1, output_dir=str(out), compile=True))
    assert saved_weights(out / "model").keys() == result.model.state_dict().keys()  # no `_orig_mod.` prefix


@pytest.mark.slow
def test_two_processes_on_uneven_shards_resume_exactly(tmp_path):
    """Shards of 2, 6, 3 and 5 images: the processes' epochs end at different steps (each has its own data
    position in the checkpoint), and a run stopped at step 4 and resumed ends as one that never stopped."""
    lines = {}
    for name, stops in (("straight", [[]]), ("resumed", [["--stop-after", "4"], ["--resume"]])):
        for stop in stops:
            args = _shard_args(tmp_path, "--batch-size", "2", "--max-steps", "7", "--output-dir", str(tmp_path / name),
                               *stop, per_shard=[2, 6, 3, 5])
            lines[name] = run_two_processes(args)
    positions = [json.loads((tmp_path / f"resumed/checkpoints/step-00000004/data_position_{r}.json").read_text())
                 for r in (0, 1)]
    assert positions[0] != positions[1]
    assert lines["straight"][0][7] == lines["resumed"][0][7] == lines["resumed"][1][7]


def test_a_quantizer_type_without_a_table_trains_and_is_saved_without_a_folded_copy(tmp_path):
    """The example scalar (FSQ-style) type of tests/examples: no table, no bridge, nothing to fold."""
    config = tiny_config(tmp_path, max_steps=2, eval_data=[str(tmp_path / "images")])
    write_config(tmp_path / "config", quantizer_type="scalar", quantizer_config={"levels": 2}, bridge_type="none",
                 bridge_config=None, num_vq_embeddings=2**8, vq_embed_dim=8)
    result = train(config)
    out = tmp_path / "run"
    assert result.step == 2 and not (out / "model-folded").exists()
    assert FVQModel.from_pretrained(out / "model").config.quantizer_type == "scalar"
    assert json.loads((out / "eval.json").read_text())[str(tmp_path / "images")]["num_tokens"] == 8 * 8 * 8


def test_vqgan_lc_losses_train_through_fvq_train(tmp_path):
    """L1 and taming's adaptive GAN weight (VQGAN-LC's recipe) from the first step, through the accelerate step."""
    result = train(tiny_config(tmp_path, max_steps=2, disc_start=0, disc_weight=0.1, reconstruction_loss="l1",
                               disc_adaptive=True))
    assert result.step == 2
