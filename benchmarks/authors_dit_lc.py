"""VQGAN-LC's latent generators (zh460045050/VQGAN-LC, `dit-lc/models.py`, `sit-lc/models.py`: facebookresearch
DiT / SiT), built by their code at a small size, saved in their checkpoint layout and run on fixed inputs: the parity
fixtures of `fvq_hf.diffusion.conversion` (issue 33).

No line of their code is in this repository: their files are read from a checkout of their repository or from a
bare git mirror of it (commit 4708958) into a temporary folder and imported from there. timm (their `PatchEmbed`,
`Attention`, `Mlp`) imports torchvision, which has no CPU wheel here: the stub of `authors_training.py` stands in
(their layers never call it).

    pip install --no-deps --target /tmp/origlib timm==1.0.31
    PYTHONPATH=/tmp/origlib python benchmarks/authors_dit_lc.py /tmp/vqgan_lc    # a checkout or a bare mirror

Writes `tests/fixtures/original/dit_lc.safetensors` and `sit_lc.safetensors`. Each is their `DiT` / `SiT` (the
same class but for SiT's forward, which keeps the first `in_channels` outputs) at depth 2, width 48, 4 heads, patch 2,
a 16 x 16 latent of 8 channels (their f16 `embed_dim`), 1000 classes + the null class, `learn_sigma` True, built
twice (seeds 0 and 1) for the `ema` and `model` entries of their `train.py` checkpoint (`{"model", "ema", "opt",
"args"}`). Every zero-initialised tensor (adaLN modulations, final layer, biases) is perturbed N(0, 0.05) so that
every weight matters; every weight is rounded to fp16 and stored in fp16 (`ema.*`, `model.*`), except their fixed
sin-cos `pos_embed`, stored as it is (fp32). Inputs: latents (4, 8, 16, 16), labels with the null class 1000;
DiT: integer timesteps; SiT: times in [0, 1]. Expected: their eval-mode `forward(x, t, y)` of each entry.

`dit_lc.safetensors` also holds one step of their Gaussian diffusion (`diffusion.create_diffusion`: 1000 linear betas,
learned-range variance, epsilon prediction; `clip_denoised=False` as their `evaluation.py`) on a given model output:
`p_mean_variance`'s mean and log-variance at one step of the 1000-step process and at one step of their 250-step
respacing (`create_diffusion("250")`), whose timestep map is stored too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_training import stub_torchvision  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "original"
COMMIT = "4708958"
THEIR_FILES = ["dit-lc/models.py", "sit-lc/models.py", "dit-lc/diffusion/__init__.py",
               "dit-lc/diffusion/gaussian_diffusion.py", "dit-lc/diffusion/respace.py",
               "dit-lc/diffusion/diffusion_utils.py", "dit-lc/diffusion/timestep_sampler.py"]
SMALL = dict(input_size=16, patch_size=2, in_channels=8, hidden_size=48, depth=2, num_heads=4, num_classes=1000,
             learn_sigma=True)
LABELS = [3, 999, 1000, 42]  # 1000: the null class (classifier-free guidance)
DIT_TIMESTEPS = [0, 17, 500, 999]
SIT_TIMES = [0.0, 0.25, 0.731, 1.0]
# Their train.py args that say what the file is (`--model`; SiT: `parse_transport_args`); the model name is not one of
# their presets (their argparse would refuse it): the tiny model is none of them.
ARGS = {"dit": dict(model="DiT-tiny/2", latent_size=16, num_classes=1000, embed_dim=8, global_batch_size=256),
        "sit": dict(model="SiT-tiny/2", latent_size=16, num_classes=1000, embed_dim=8, global_batch_size=256,
                    path_type="Linear", prediction="velocity", loss_weight=None, sample_eps=None, train_eps=None)}


# ---- their code ---------------------------------------------------------------------------------------------------
def extract(source: str, folder: Path) -> Path:
    """Their files at `COMMIT` from a checkout or a bare mirror (`git show`), written under `folder`."""
    for name in THEIR_FILES:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        checkout = Path(source) / name
        if checkout.is_file():
            target.write_text(checkout.read_text())
        else:
            target.write_bytes(subprocess.run(["git", "--git-dir", source, "show", f"{COMMIT}:{name}"], check=True,
                                              capture_output=True).stdout)
    return folder


def import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_their_code(folder: Path):
    """`(dit_models, sit_models, diffusion)`: their two `models.py` and DiT's `diffusion` package."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        stub_torchvision()
    sys.path.insert(0, str(folder / "dit-lc"))
    import diffusion

    return (import_file(folder / "dit-lc" / "models.py", "their_dit_models"),
            import_file(folder / "sit-lc" / "models.py", "their_sit_models"), diffusion)


def their_model(cls, seed: int) -> torch.nn.Module:
    """Their class at the small size, seeded; zero-initialised tensors perturbed; weights fp16-exact (not pos_embed)."""
    torch.manual_seed(seed)
    model = cls(**SMALL)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name == "pos_embed":
                continue
            if not tensor.any():
                tensor.normal_(std=0.05)
            tensor.copy_(tensor.half().float())
    return model.eval()


def stored(state: dict[str, torch.Tensor], entry: str) -> dict[str, torch.Tensor]:
    return {f"{entry}.{k}": v if k == "pos_embed" else v.half() for k, v in state.items()}


# ---- fixtures -----------------------------------------------------------------------------------------------------
@torch.no_grad()
def generator_fixture(kind: str, cls) -> tuple[dict, dict]:
    latents = torch.randn(4, SMALL["in_channels"], 16, 16, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor(LABELS)
    times = torch.tensor(DIT_TIMESTEPS) if kind == "dit" else torch.tensor(SIT_TIMES)
    tensors = {"latents": latents, "labels": labels, "times": times}
    for seed, entry in enumerate(("ema", "model")):
        model = their_model(cls, seed)
        tensors.update(stored(model.state_dict(), entry))
        tensors[f"expected_{entry}"] = model(latents, times, labels)
    meta = {"args": ARGS[kind], "config": SMALL, "entries": ["ema", "model"],
            "made_by": f"their_{kind}_models.{cls.__name__}(**config), seeds 0 (ema) and 1 (model); expected: "
                       "eval-mode forward(latents, times, labels)"}
    return tensors, meta


@torch.no_grad()
def diffusion_step(diffusion, tensors: dict) -> dict:
    """Their `p_mean_variance` on a fixed model output (eps and the learned-range values), in the 1000-step process
    (at timestep 500) and in their 250-step respacing (at its step 100)."""
    x = tensors["latents"]
    output = torch.randn(x.shape[0], 2 * x.shape[1], *x.shape[2:], generator=torch.Generator().manual_seed(3))
    output[:, x.shape[1]:] = output[:, x.shape[1]:].clamp(-1, 1)

    def model(*_, **__):
        return output

    result = {"step_model_output": output}
    for steps, index in ((1000, 500), (250, 100)):
        process = diffusion.create_diffusion("" if steps == 1000 else str(steps))
        t = torch.full((x.shape[0],), index)
        out = process.p_mean_variance(model, x, t, clip_denoised=False)
        result[f"step_{steps}_mean"], result[f"step_{steps}_log_variance"] = out["mean"], out["log_variance"]
        result[f"step_{steps}_timestep_map"] = torch.tensor(process.timestep_map)
        result[f"step_{steps}_index"] = torch.tensor(index)
    return result


def write(name: str, tensors: dict, meta: dict) -> None:
    path = FIXTURES / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={k: json.dumps(v) for k, v in meta.items()})
    print(f"{name}: {path.stat().st_size / 1e3:.0f} kB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help=f"a checkout of zh460045050/VQGAN-LC, or a bare git mirror of it (commit "
                                       f"{COMMIT})")
    source = parser.parse_args().source
    with tempfile.TemporaryDirectory() as folder:
        dit_models, sit_models, diffusion = import_their_code(extract(source, Path(folder)))
        tensors, meta = generator_fixture("dit", dit_models.DiT)
        tensors.update(diffusion_step(diffusion, tensors))
        meta["diffusion"] = "create_diffusion('') and create_diffusion('250'): p_mean_variance(clip_denoised=False)"
        write("dit_lc", tensors, meta)
        write("sit_lc", *generator_fixture("sit", sit_models.SiT))


if __name__ == "__main__":
    main()
