"""VQGAN-LC's recipe as their code runs it (zh460045050/VQGAN-LC at 4708958, `vqgan-gpt-lc/training_vqgan.py`,
`engine_training_vqgan.py`, `models/models_vq.py`, `util/lr_sched.py`): the fixtures of the recipe's parity tests
(issue 32, item 5). No line of their code is in this repository: it is imported from a checkout.

    git clone https://github.com/zh460045050/VQGAN-LC /tmp/vqgan_lc       # at 4708958
    PYTHONPATH=. python benchmarks/authors_vqgan_lc_step.py /tmp/vqgan_lc

writes
- `tests/fixtures/original/vqgan_lc_step.safetensors`: one iteration of their training loop after the GAN has
  started, on the model of the `vqgan_lc_f16` fixture (`benchmarks/authors_vqgan_lc.py`, rebuilt here by the same
  seeded code and checked equal to the stored file): `model(x, _, cur_iter, step=0)` (their `VQModel.forward`
  computes every loss), `opt_ae.zero_grad()`, their learning rate, backward, `opt_ae.step()`; then
  `model(x, _, cur_iter, step=1)` (a second forward, after the generator's update), `opt_disc.zero_grad()`,
  backward. Their Adam (betas (0.5, 0.9), eps 1e-7) for both; no gradient clipping; fp32 (their autocast is
  commented out, and their GradScaler does nothing without CUDA). Tiny pieces: their `NLayerDiscriminator(n_layers=2,
  use_actnorm=False)` as `VQModel` builds it, but `ndf` 8 instead of 64; their LPIPS with random weights from
  `tests.helpers.seeded_lpips` (the VGG16 weights cannot be downloaded here; their LPIPS runs in training mode,
  so the dropout of its heads is on, and the torch seed is set just before the iteration). Stored: the
  discriminator's starting state (fp16-exact), the gradient of every generator parameter before the update and of
  every discriminator parameter, and (metadata `expected`) every loss term: `rec_loss`, `p_loss`, `qloss` (their
  `mean((sg(z_q) - z)^2) + 0.33 mean((z_q - sg(z))^2)`, before `rate_q`), `quant_mse` (`mean((z_q - z)^2)`, the
  value of each of its two terms), `g_loss`, `d_weight` (their adaptive weight, times `rate_d`), `loss`, `d_loss`,
  the learning rate, and `d_loss_step_fakes` (the discriminator loss on the first forward's reconstructions, which
  theirs does not use).
- `tests/fixtures/original/vqgan_lc_recipe.json`: the state-dict shapes of their three released models (f16 and f8 at
  100,000 codes, f16 at 16,384) as their code builds them from the README's / `runTrainVQ.sh`'s arguments, with
  those arguments; and their learning rate (`adjust_learning_rate`, called as their loop calls it) over two short
  runs.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_vqgan_lc import (  # noqa: E402
    ARGS,
    FIXTURES,
    VARIANTS,
    K,
    fixture,
    import_their_code,
    their_model,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fvq_hf import FVQModel  # noqa: E402
from tests.helpers import load_fixture, seeded_lpips  # noqa: E402

SEED, LR = 3, 1e-3
CUR_ITER, STEPS_PER_EPOCH = 1, 10  # the GAN is on from cur_iter > disc_start = 0
DISCRIMINATOR = dict(input_nc=3, n_layers=2, use_actnorm=False, ndf=8)
# Their released models: the README's and runTrainVQ.sh's arguments (the 16,384 model: the same with
# n_vision_words 16384; the f8 model: vq-f8.yaml, embed_dim 4, as ldm-lc's configs).
RELEASES = {
    "vqgan-lc-100k-f16": ("vq-f16.yaml", 100000, 8),
    "vqgan-lc-100k-f8": ("vq-f8.yaml", 100000, 4),
    "vqgan-lc-16k-f16": ("vq-f16.yaml", 16384, 8),
}
RELEASE_ARGS = dict(ARGS, tuning_codebook=0, use_cblinear=1, quantizer_type="org", lr=5e-4, epochs=100,
                    warmup_epochs=5, batch_size=256, min_lr=0.0)
SCHEDULES = [dict(lr=5e-4, min_lr=0.0, warmup_epochs=2, epochs=6, steps_per_epoch=4),
             dict(lr=1e-4, min_lr=0.0, warmup_epochs=0, epochs=3, steps_per_epoch=5)]


def their_lpips_state(seed: int) -> dict[str, torch.Tensor]:
    """`seeded_lpips(seed)` under their LPIPS's names (`net.slice{s}.{i}` keep VGG16's feature indices; heads
    `lin{k}.model.1` behind their dropout)."""
    state = {}
    for key, value in seeded_lpips(seed).state_dict().items():
        kind, index, leaf = key.split(".")
        if kind == "features":
            piece = 1 + sum(int(index) >= start for start in (4, 9, 16, 23))
            state[f"net.slice{piece}.{index}.{leaf}"] = value
        else:
            state[f"lin{index}.model.1.{leaf}"] = value
    return state


def kink_free_lpips_seed(model, images: torch.Tensor, tolerance: float = 5e-5) -> int:
    """The first LPIPS seed whose perceptual gradient is the same (within `tolerance`, relative L2) at their
    reconstruction and at this package's (the `vqgan_lc_f16` fixture converted with `fvq_hf`), which differ by rounding
    (3.6e-6 relative). Random VGG16 weights put some ReLU or max-pool decision within that distance of switching for
    many seeds; the perceptual gradient then jumps (by 0.66% at seed 0), a discontinuity of LPIPS that says nothing
    about the training step: such seeds are skipped (`tests/training/test_vqgan_lc_step.py` checks the seed's
    premise)."""
    from tests.helpers import vqgan_lc_file

    with tempfile.TemporaryDirectory() as folder:
        ours = FVQModel.from_original_checkpoint(vqgan_lc_file("vqgan_lc_f16", Path(folder))[0], keep_bridge=True)
    with torch.no_grad():
        reconstructions = [model.decode(model.encode(images)[0]), ours.train()(images).sample]
    for seed in range(100):
        lpips, gradients = seeded_lpips(seed), []
        for reconstruction in reconstructions:
            reconstruction = reconstruction.clone().requires_grad_(True)
            torch.manual_seed(SEED)  # the dropout masks of the step
            gradients.append(torch.autograd.grad(lpips(images, reconstruction, 0.5).mean(), reconstruction)[0])
        if float((gradients[1] - gradients[0]).norm() / gradients[0].norm()) < tolerance:
            return seed
    raise RuntimeError("no LPIPS seed below 100 gives the same perceptual gradient at both reconstructions")


def their_iteration(lr_sched, model, images: torch.Tensor) -> tuple[dict, dict]:
    """One iteration of their `train_one_epoch` at `CUR_ITER` (the loop's lines, without CUDA and metric logging)."""
    captured = {"quant": [], "h": []}  # per forward
    adaptive = model.calculate_adaptive_weight

    def record_adaptive(*args, **kwargs):
        captured["d_weight"] = adaptive(*args, **kwargs)
        return captured["d_weight"]

    model.calculate_adaptive_weight = record_adaptive  # their method, its value recorded
    model.quant_conv.register_forward_hook(lambda m, i, o: captured["h"].append(o.detach().clone()))
    model.post_quant_conv.register_forward_pre_hook(lambda m, i: captured["quant"].append(i[0].detach().clone()))
    projector = list(model.codebook_projection.parameters())
    opt_ae = torch.optim.Adam(list(model.encoder.parameters()) + list(model.decoder.parameters())
                              + list(model.tok_embeddings.parameters()) + list(model.quant_conv.parameters())
                              + projector + list(model.post_quant_conv.parameters()), lr=LR, betas=(0.5, 0.9), eps=1e-7)
    opt_disc = torch.optim.Adam(model.discriminator.parameters(), lr=LR, betas=(0.5, 0.9), eps=1e-7)
    lr_args = argparse.Namespace(lr=LR, min_lr=0.0, warmup_epochs=0, epochs=1)
    epoch, data_iter_step = divmod(CUR_ITER, STEPS_PER_EPOCH)
    model.train(True)
    torch.manual_seed(SEED)
    loss, rec_loss, qloss, p_loss, g_loss, _, dec = model(images, None, CUR_ITER, step=0)
    opt_ae.zero_grad()
    lr = lr_sched.adjust_learning_rate(opt_ae, data_iter_step / STEPS_PER_EPOCH + epoch, lr_args)
    loss.backward()
    grads = {f"grad.{name}": p.grad.detach().clone() for name, p in model.named_parameters()
             if p.grad is not None and not name.startswith("discriminator.")}
    opt_ae.step()
    with torch.no_grad():  # what the discriminator would get from the first forward (not what theirs trains on)
        side = copy.deepcopy(model.discriminator)
        d_loss_step_fakes = model.hinge_d_loss(side(images), side(dec.detach()))
    d_loss, _, _, _, _, second_ids, second_dec = model(images, None, CUR_ITER, step=1)
    opt_disc.zero_grad()
    lr_sched.adjust_learning_rate(opt_disc, data_iter_step / STEPS_PER_EPOCH + epoch, lr_args)
    d_loss.backward()
    grads.update({f"disc_grad.{name[len('discriminator.'):]}": p.grad.detach().clone()
                  for name, p in model.named_parameters() if name.startswith("discriminator.")})
    grads["reconstruction"] = dec.detach().clone()
    grads["second_indices"] = second_ids.view(images.shape[0], *captured["h"][1].shape[2:])
    grads["second_reconstruction"] = second_dec.detach().clone()
    grads.update({f"updated.{k}": v.detach().clone() for k, v in model.codebook_projection.state_dict().items()})
    quant_mse = torch.mean((captured["quant"][0] - captured["h"][0]) ** 2)
    expected = {"rec_loss": rec_loss, "p_loss": p_loss, "qloss": qloss, "quant_mse": quant_mse, "g_loss": g_loss,
                "d_weight": captured["d_weight"], "loss": loss, "d_loss": d_loss,
                "d_loss_step_fakes": d_loss_step_fakes}
    return grads, {"expected": {k: float(v.detach()) for k, v in expected.items()} | {"lr": lr}}


def step_fixture(models_vq, lr_sched) -> tuple[dict, dict]:
    tensors, meta, model = fixture(models_vq, "vqgan_lc_f16")
    _, stored = load_fixture("vqgan_lc_f16")
    assert all(torch.equal(stored[k], v.float()) for k, v in tensors.items() if k.startswith("model.")), \
        "the seeded vqgan_lc_f16 model differs from the stored fixture: rebuild both"
    model.args.disc_start = 0  # their GAN from cur_iter > 0
    torch.manual_seed(1)
    model.discriminator = models_vq.NLayerDiscriminator(**DISCRIMINATOR).apply(models_vq.weights_init)
    with torch.no_grad():
        for value in model.discriminator.state_dict().values():
            if value.is_floating_point():
                value.copy_(value.half().float())
    start = {f"disc.{k}": v.clone() for k, v in model.discriminator.state_dict().items()}
    lpips_seed = kink_free_lpips_seed(model, tensors["inputs"].float())
    missing, _ = model.perceptual_loss.load_state_dict(their_lpips_state(lpips_seed), strict=False)
    assert not [k for k in missing if k.startswith(("net.", "lin"))], missing
    grads, expected = their_iteration(lr_sched, model, tensors["inputs"].float())
    meta = {**expected, "base_fixture": "vqgan_lc_f16", "args": {**meta["args"], "disc_start": 0},
            "seed": SEED, "lpips_seed": lpips_seed, "lr": LR, "cur_iter": CUR_ITER, "steps_per_epoch": STEPS_PER_EPOCH,
            "lr_args": {"lr": LR, "min_lr": 0.0, "warmup_epochs": 0, "epochs": 1}, "discriminator": DISCRIMINATOR,
            "made_by": "their train_one_epoch's lines for one iteration (see benchmarks/authors_vqgan_lc_step.py)"}
    return {**{k: v.half() if v.is_floating_point() else v for k, v in start.items()}, **grads}, meta


def release_shapes(models_vq) -> dict:
    """Their full-size `VQModel` of each release: every state-dict key's shape, and the arguments."""
    releases = {}
    for name, (yaml_name, codes, embed_dim) in RELEASES.items():
        args = {**RELEASE_ARGS, "n_vision_words": codes, "embed_dim": embed_dim,
                "vq_config_path": f"vqgan_configs/{yaml_name}", "disc_start": 50000}
        table = torch.zeros(1, 1).expand(codes, 768)  # stored as one number: only its shape is read
        model = their_model(models_vq, yaml_name, {}, dict(args), table, small=False)
        args.pop("local_embedding_path", None)
        releases[name] = {"args": args, "shapes": {k: list(v.shape) for k, v in model.state_dict().items()}}
        del model
    return releases


def their_schedules(lr_sched) -> list[dict]:
    """Their learning rate at every iteration of short runs, as `train_one_epoch` computes it."""
    cases = []
    for case in SCHEDULES:
        args = argparse.Namespace(**{k: v for k, v in case.items() if k != "steps_per_epoch"})
        optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=case["lr"])
        steps = case["steps_per_epoch"]
        lrs = [lr_sched.adjust_learning_rate(optimizer, i / steps + epoch, args)
               for epoch in range(case["epochs"]) for i in range(steps)]
        assert all(math.isfinite(v) for v in lrs)
        cases.append({"args": case, "lr": lrs})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", help="a checkout of zh460045050/VQGAN-LC (commit 4708958)")
    models_vq = import_their_code(parser.parse_args().checkout)
    import util.lr_sched as lr_sched

    assert VARIANTS["vqgan_lc_f16"][3] == 1 and K == 256  # use_cblinear 1, the released projector
    tensors, meta = step_fixture(models_vq, lr_sched)
    path = FIXTURES / "vqgan_lc_step.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, path,
              metadata={k: json.dumps(v) for k, v in meta.items()})
    print(f"{path.name}: {path.stat().st_size / 1e3:.0f} kB; {json.dumps(meta['expected'])}")
    recipe = {"releases": release_shapes(models_vq), "schedules": their_schedules(lr_sched)}
    (FIXTURES / "vqgan_lc_recipe.json").write_text(json.dumps(recipe, indent=1) + "\n")
    print("vqgan_lc_recipe.json:", {k: len(v["shapes"]) for k, v in recipe["releases"].items()})


if __name__ == "__main__":
    main()
