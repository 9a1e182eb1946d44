"""Training as the FVQ authors train: one step and a 20-step trajectory of `fvq-train`'s step, from the same
weights on the same batches, against what their training loop computed.

The fixtures (`tests/fixtures/original/train_*.safetensors`, `training_lr.json`) were made by
`tests/fixtures/original/make_training_fixtures.py` with their code (yfChang-cv/FVQ at 577b848c): for every
combination their training scripts have (plain VQ + the release ViT bridge, plain + the DiT QBridge, residual + DiT,
VAR + DiT), a small model built by their classes (seeded, zero-initialised layers perturbed, weights fp16-exact),
20 seeded batches, and what their loop gave: the loss terms of every step, the gradients of the first step before
clipping, the learning rate of every step from their `LambdaLR`, and their optimizer's set-up. Their perceptual
loss needs VGG16 weights that cannot exist offline: the perceptual weight is 0 on both sides (LPIPS has its own
tests); the GAN has not started (disc_start 20000), as in their first 20k steps.

Here the same weights are converted with the bridge kept (`keep_bridge=True`), and the package's own pieces run:
`TokenizerStep` (what `fvq-train` runs each step), `build_optimizers`, `LearningRate`.
"""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator
from safetensors import safe_open

from fvq_hf import FVQModel
from fvq_hf.conversion.layouts import detect_layout
from fvq_hf.losses import PatchGANDiscriminator, TokenizerLoss
from fvq_hf.training import LoopConfig
from fvq_hf.training.runtime import LearningRate
from fvq_hf.training.trainer import TokenizerStep, build_optimizers

from ..helpers import FIXTURES

# How each of their models converts: the residual variant cannot be told from its file; VAR's scales are not saved.
CONVERSIONS = {
    "release_vit": {},
    "plain_dit": {"keep_bridge": True},
    "residual_dit": {"keep_bridge": True, "config": {"quantizer_type": "residual", "quantizer_config": {"depth": 4}}},
    "var_dit": {"keep_bridge": True, "config": {"quantizer_config": {"scales": [1, 2, 3, 5, 8]}}},
}
LOG_KEYS = ("loss/total", "loss/reconstruction", "loss/codebook", "loss/commitment")  # their `losses` columns


def load_training_fixture(kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(FIXTURES / f"train_{kind}.safetensors", "pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items()}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, tensors


def their_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v.float() if v.is_floating_point() else v for k, v in tensors.items()
            if k.startswith(prefix)}


def converted(kind: str, tensors, tmp_path) -> FVQModel:
    path = tmp_path / f"{kind}.pt"
    torch.save({"model": their_state(tensors, "model.")}, path)
    return FVQModel.from_original_checkpoint(path, sample_size=32, **CONVERSIONS[kind]).train()


def package_step(model: FVQModel, lr: float) -> TokenizerStep:
    """`fvq-train`'s step with their loss settings (L2, no perceptual term here, GAN from step 20k)."""
    discriminator = PatchGANDiscriminator()
    loss_fn = TokenizerLoss(None, reconstruction_weight=1.0, perceptual_weight=0.0, disc_weight=0.5, disc_start=20000)
    optimizer, optimizer_d = build_optimizers(model, discriminator, lr, (0.9, 0.95))
    return TokenizerStep(Accelerator(cpu=True), model, discriminator, loss_fn, optimizer, optimizer_d, 1.0)


def relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Relative L2 difference (0 when both are 0)."""
    scale = theirs.double().norm()
    difference = (ours.double() - theirs.double()).norm()
    return float(difference / scale) if scale > 0 else float(difference)


@pytest.mark.parametrize("kind", list(CONVERSIONS))
def test_one_step_gives_their_losses_and_every_gradient(kind, tmp_path):
    meta, tensors = load_training_fixture(kind)
    model = converted(kind, tensors, tmp_path)
    step = package_step(model, meta["schedule"]["tlr"])
    images = tensors["batches"][0].float()
    loss, logs, _ = step.generator_loss(images, 0)
    loss.backward()
    for column, key in enumerate(LOG_KEYS):
        assert logs[key] == pytest.approx(float(tensors["losses"][0, column]), rel=1e-5), key
    # Their gradients under their names, renamed as the conversion renames their weights.
    layout = detect_layout(their_state(tensors, "model."))
    theirs, _ = layout.rename(their_state(tensors, "grad."))
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert set(trainable) == set(theirs), set(trainable) ^ set(theirs)
    # Some gradients are zero in exact arithmetic (the key biases of softmax attention; conv biases right before a
    # GroupNorm of one channel per group) and hold only rounding noise, ~1e-10: those must be noise on both sides.
    noise = 1e-6 * max(float(g.norm()) for g in theirs.values())
    exact_zero = {name for name, g in theirs.items() if g.norm() < noise}
    assert all(trainable[name].grad.norm() < noise for name in exact_zero)
    errors = {name: relative(p.grad, theirs[name]) for name, p in trainable.items() if name not in exact_zero}
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-4, f"{worst}: relative L2 {errors[worst]:.2e}"
    assert len(exact_zero) < len(trainable) / 4
    # The bridge and the table get gradient (every code, through the bridge), as in theirs.
    assert trainable["quantizer.embedding.weight"].grad.abs().sum(dim=1).gt(0).all()


@pytest.mark.parametrize("kind", list(CONVERSIONS))
def test_twenty_steps_follow_their_trajectory(kind, tmp_path):
    meta, tensors = load_training_fixture(kind)
    model = converted(kind, tensors, tmp_path)
    schedule_args = meta["schedule"]
    step = package_step(model, schedule_args["tlr"])
    schedule = LearningRate(LoopConfig(
        lr=schedule_args["tlr"], schedule=schedule_args["sche_type"], constant_fraction=schedule_args["lrT"],
        max_steps=None, epochs=schedule_args["epochs"], warmup_epochs=schedule_args["warmup_ep"],
        warmup_fraction=0.0), schedule_args["steps_per_epoch"], [step.optimizer, step.optimizer_d])
    ours = []
    for index in range(meta["steps"]):
        assert schedule.set(index) == pytest.approx(float(tensors["lr"][index]), rel=1e-12)
        logs, _ = step(tensors["batches"][index].float(), index)
        ours.append([logs[key] for key in LOG_KEYS])
    ours = torch.tensor(ours, dtype=torch.float64)
    worst = ((ours - tensors["losses"]).abs() / tensors["losses"].abs()).max()
    assert worst <= 1e-3, f"largest relative loss difference over {meta['steps']} steps: {worst:.2e}"
    # Not a trajectory that stands still: the loss fell.
    assert ours[-1, 0] < 0.95 * ours[0, 0]


@pytest.mark.parametrize("kind", list(CONVERSIONS))
def test_the_optimizer_is_set_up_as_theirs(kind, tmp_path):
    meta, tensors = load_training_fixture(kind)
    model = converted(kind, tensors, tmp_path)
    optimizer = package_step(model, meta["schedule"]["tlr"]).optimizer
    theirs = meta["optimizer"]
    assert type(optimizer).__name__ == theirs["class"] and len(optimizer.param_groups) == theirs["groups"]
    for key in ("lr", "eps", "weight_decay", "amsgrad"):
        assert optimizer.defaults[key] == theirs[key], key
    assert list(optimizer.defaults["betas"]) == list(theirs["betas"])
    # Theirs also holds the frozen sin-cos positions, which never get a gradient; the trainable ones are the same.
    in_ours = sum(p.numel() for group in optimizer.param_groups for p in group["params"])
    assert in_ours == theirs["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_learning_annealing_is_their_lambda_lr():
    cases = json.loads((FIXTURES / "training_lr.json").read_text())["cases"]
    assert {case["args"]["sche_type"] for case in cases} == {"lin", "cos", "const"}
    for case in cases:
        args, steps_per_epoch = case["args"], case["steps_per_epoch"]
        peak = args["lr"] * args["global_batch_size"] / 128  # their tlr
        optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=peak)
        schedule = LearningRate(LoopConfig(
            lr=peak, schedule=args["sche_type"], constant_fraction=args["lrT"], max_steps=None, epochs=args["epochs"],
            warmup_epochs=args["warmup_ep"], warmup_fraction=0.0), steps_per_epoch, [optimizer])
        ours = [schedule.set(step) for step in range(len(case["lr"]))]
        assert ours == pytest.approx(case["lr"], rel=1e-12, abs=1e-18), args
