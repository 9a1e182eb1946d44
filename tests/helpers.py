"""Helpers shared by every test module: tiny models and config folders, images, LPIPS weight files, the parity
fixtures of the original code, a Hub cache or loopback Hub, and a two-process launch. Test modules import helpers
from here only."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from fvq_hf import FVQModel

from .hub_server import HubServer

ROOT = Path(__file__).parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"

TINY_CONFIG = dict(
    sample_size=32,
    block_out_channels=(32, 32, 64),
    layers_per_block=1,
    latent_channels=32,
    num_vq_embeddings=256,
    vq_embed_dim=8,
    bridge_type="vqbridge",
    bridge_config={"patch_size": 4, "hidden_size": 32, "num_heads": 2},
    search_chunk_size=64,
)
# Smaller configs of some bridge and quantizer types, for speed (taken when a test names the type alone); any
# other registered type is built with its defaults. The tiny model's latent grid is 8 x 8; 3 and 5 do not divide
# 8, as VAR's scales do not divide 16.
TINY_BRIDGES = {"vqbridge": TINY_CONFIG["bridge_config"], "dit": {"patch_size": 4, "hidden_size": 32, "num_heads": 2},
                "mlp": {"hidden_size": 32}, "lc-mlp": {"hidden_size": 32}}
# A bridge that maps widths reads a table of its own width in the matrices (VQGAN-LC: 768 over d = 8; here 12).
WIDE_TABLE_DIM = 12
TINY_QUANTIZERS = {"residual": {"depth": 3}, "multiscale": {"scales": [1, 3, 5, 8]}}


def bridge_types() -> list[str]:
    """Every registered bridge type, and "none" (plain VQ): what the parametrised tests run over."""
    from fvq_hf.bridges import BRIDGES, NO_BRIDGE

    return [*BRIDGES, NO_BRIDGE]


def quantizer_types() -> list[str]:
    """Every registered quantizer type."""
    from fvq_hf.quantizers import QUANTIZERS

    return list(QUANTIZERS)


def make_tiny_model(seed: int = 0, **overrides):
    """A seeded FVQModel with downsample 4, K = 256 (16 x 16 grid), d = 8."""
    from fvq_hf import FVQModel

    torch.manual_seed(seed)
    if "bridge_type" in overrides and "bridge_config" not in overrides:
        overrides["bridge_config"] = TINY_BRIDGES.get(overrides["bridge_type"])
    return FVQModel(**{**TINY_CONFIG, **overrides})


def typed_model(quantizer_type: str, bridge_type: str = "vqbridge", seed: int = 0, **overrides):
    """The tiny model with any registered quantizer and bridge type (bridge perturbed, so that codes differ), at
    the image size its quantizer takes."""
    from fvq_hf.bridges import bridge_class
    from fvq_hf.quantizers import quantizer_class

    cls = quantizer_class(quantizer_type)
    config = cls.resolve_config(TINY_QUANTIZERS.get(quantizer_type))
    side = cls.ids_spec(config).fixed_latent_side
    bridge = bridge_class(bridge_type)
    wide = {"table_dim": WIDE_TABLE_DIM} if bridge is not None and bridge.maps_width else {}
    model = make_tiny_model(seed, bridge_type=bridge_type, quantizer_type=quantizer_type, quantizer_config=config,
                            **{"sample_size": 4 * side if side else 32, **wide, **overrides})
    if model.config.bridge_type != "none":
        perturb_bridge(model)
    return model


def perturb_bridge(model) -> None:
    """Give a bridge's zero-initialised layers (VQBridge's recover layer) non-zero weights, as after a first
    training step."""
    with torch.no_grad():
        for parameter in model.quantizer.bridge.parameters():
            if not parameter.any():
                parameter.normal_(std=0.05)


TINY_TRANSFORMER = dict(vocab_size=256, num_classes=3, token_grid_size=(8, 8), hidden_size=32, num_layers=2,
                        num_attention_heads=2, class_names=["red", "green", "blue"])


def make_tiny_transformer(seed: int = 0, **overrides):
    """A seeded FVQTransformer for the tiny tokenizer (K = 256, 8 x 8 tokens at 32 px), 3 named classes.

    Its output layer gets random weights (LlamaGen initialises it to zero, which would make every logit equal).
    """
    from fvq_hf import FVQTransformer

    torch.manual_seed(seed)
    model = FVQTransformer(**{**TINY_TRANSFORMER, **overrides})
    with torch.no_grad():
        model.output.weight.normal_(std=0.3)
    return model.eval()


def random_images(n=2, size=32, seed=1):
    """`(n, 3, size, size)` uniform random images in [-1, 1], seeded."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def integer_data(n: int, k: int, dim: int, seed: int = 0, low: int = -3, high: int = 4):
    """Small integers: every distance is exact in fp32, so exact ties are frequent and argmin is the truth."""
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randint(low, high, (n, dim), generator=generator).float()
    codebook = torch.randint(low, high, (k, dim), generator=generator).float()
    return vectors, codebook


def argmin_truth(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    distance = (vectors.double()[:, None, :] - codebook.double()[None]).pow(2).sum(-1)
    return distance.argmin(dim=1)  # first minimum: the lowest index among ties


def write_config(folder: Path, **overrides) -> Path:
    """A hub-config folder for the tiny model (sample_size 32, downsample 4, K = 256)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"_class_name": "FVQModel", **TINY_CONFIG, **overrides}
    config["block_out_channels"] = list(config["block_out_channels"])
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def write_tiny_clip(folder: Path, seed: int = 0, processor: bool = True, full: bool = False) -> Path:
    """A random `transformers` CLIP vision tower with its projection (32 px, 8 px patches: a 4 x 4 grid, hidden 32,
    projection 16, 2 layers) saved to `folder`, with an image processor config (shorter side 40, centre crop 32,
    OpenAI's mean and std) unless `processor` is False; `full` saves a whole `CLIPModel` (text tower too) instead."""
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, projection_dim=16)
    if full:
        text = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    max_position_embeddings=16, projection_dim=16)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    else:
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision))
    with torch.no_grad():  # post_layernorm starts as the identity: make it count
        layer_norm = model.vision_model.post_layernorm
        layer_norm.weight.normal_(1.0, 0.3)
        layer_norm.bias.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    if processor:
        clip_image_processor()(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def clip_image_processor():
    """transformers' CLIP image processor that works on PIL images (`CLIPImageProcessorPil` from transformers 5 on,
    where `CLIPImageProcessor` needs torchvision; `CLIPImageProcessor` before)."""
    import transformers

    return getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor


def write_images(folder: Path, count: int = 6, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """Smooth random RGB images (so a tokenizer can learn something from them) as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(folder / f"img{i}.png")
    return folder


def write_shards(folder: Path, shards: int = 4, per_shard: int | list[int] = 3, size: tuple[int, int] = (48, 40),
                 classes: int | None = None) -> str:
    """Webdataset tar shards of the builtin photos, shrunk to `size` (`NNN-MMM.png` files, `per_shard` in each or
    the given count in each), with `classes` a `NNN-MMM.cls` label beside each (photo number % classes); their
    brace pattern."""
    import io
    import tarfile

    from fvq_hf.data.sources import builtin_photos

    folder.mkdir(parents=True, exist_ok=True)
    photos = builtin_photos("train")
    counts = per_shard if isinstance(per_shard, list) else [per_shard] * shards
    for shard, count in enumerate(counts):
        with tarfile.open(folder / f"shard-{shard:03d}.tar", "w") as tar:
            for i in range(count):
                buffer = io.BytesIO()
                photos[(sum(counts[:shard]) + i) % len(photos)][1].resize(size).save(buffer, format="PNG")
                info = tarfile.TarInfo(f"{shard:03d}-{i:03d}.png")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)
                if classes:
                    label = str((sum(counts[:shard]) + i) % len(photos) % classes).encode()
                    info = tarfile.TarInfo(f"{shard:03d}-{i:03d}.cls")
                    info.size = len(label)
                    tar.addfile(info, io.BytesIO(label))
    return str(folder / f"shard-{{000..{shards - 1:03d}}}.tar")


def write_lpips_weights(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Random weights in torchvision's VGG16 and lpips' vgg.pth layouts (the real ones cannot be fetched here)."""
    from fvq_hf.losses.lpips import LPIPS

    torch.manual_seed(seed)
    model = LPIPS()
    for p in model.parameters():
        p.data.normal_(std=0.05)
    folder.mkdir(parents=True, exist_ok=True)
    vgg = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(1)  # torchvision files hold the classifier too
    linear = {f"lin{i}.model.1.weight": lin.weight.abs() for i, lin in enumerate(model.lins)}
    torch.save(vgg, folder / "vgg16.pth")
    torch.save(linear, folder / "vgg.pth")
    return folder / "vgg16.pth", folder / "vgg.pth"


def seeded_lpips(seed: int = 0):
    """LPIPS with weights drawn from a seeded generator, in parameter order (VGG16 conv weights N(0, 2 / fan_in),
    biases N(0, 1e-4), heads |N(0, 1)| / width): the same on both sides of a parity test without the real files, and
    what `benchmarks/authors_vqgan_lc_step.py` put into VQGAN-LC's own LPIPS."""
    from fvq_hf.losses.lpips import LPIPS

    generator, model = torch.Generator().manual_seed(seed), LPIPS()
    with torch.no_grad():
        for name, p in model.named_parameters():
            draw = torch.randn(p.shape, generator=generator)
            if name.startswith("lins."):
                p.copy_(draw.abs() / p.shape[1])
            elif name.endswith(".weight"):
                p.copy_(draw * (2 / p[0].numel()) ** 0.5)
            else:
                p.copy_(draw * 0.01)
    return model


FIXTURES = ROOT / "tests" / "fixtures" / "original"
NAMES = ["fvq_release_vit", "fvq_dit_uncond", "fvq_dit_cond", "fvq_fold_vqgan", "llamagen_vq16", "llamagen_vq8",
         "fvq_var_dit", "var_original"]


def load_fixture(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """`(metadata, tensors)` with weights back in fp32."""
    with safe_open(FIXTURES / f"{name}.safetensors", "pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items()}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def original_file(name: str, folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The fixture written back as the original code writes its checkpoint; returns the file and the tensors."""
    meta, tensors = load_fixture(name)
    checkpoint = {}
    for entry in ("model", "ema"):
        state = {k[len(entry) + 1:]: v for k, v in tensors.items() if k.startswith(entry + ".")}
        if state:
            if name != "var_original":  # VAR's own quantizer has no such buffer
                state["quantize.codebook_used"] = torch.zeros(65536)
            checkpoint[entry] = state
    if not meta["checkpoint"]:  # saved bare, a state dict alone
        checkpoint = checkpoint["model"]
    extras = {"optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "params": [0, 1]}]},
              "discriminator": {"conv.weight": torch.zeros(1)}, "optimizer_disc": {"state": {}, "param_groups": []},
              "steps": 400000, "args": argparse.Namespace(**meta.get("args", {}))}
    checkpoint.update({k: v for k, v in extras.items() if k in meta["checkpoint"]})
    path = folder / f"{name}.pt"
    torch.save(checkpoint, path)
    return path, tensors


LC_NAMES = ["vqgan_lc_f16", "vqgan_lc_f8", "vqgan_lc_f8_ema"]  # made by benchmarks/authors_vqgan_lc.py


def vqgan_lc_state(name: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """`(metadata, their whole VQModel state dict, tensors)` of a VQGAN-LC fixture: the tokenizer's weights (the EMA
    fixture's on the f8 backbone), and a small stand-in tensor under each of their discriminator and LPIPS keys."""
    meta, tensors = load_fixture(name)
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if "backbone" in meta:
        backbone_meta, backbone = load_fixture(meta["backbone"])
        shared = {k[6:]: v for k, v in backbone.items()
                  if k.startswith(("model.encoder.", "model.decoder.", "model.quant_conv.", "model.post_quant_conv."))}
        state, meta = {**shared, **state}, {**meta, "dropped_keys": backbone_meta["dropped_keys"]}
    state.update({k: torch.zeros(1) for k in meta["dropped_keys"]})
    return meta, state, tensors


def vqgan_lc_file(name: str, folder: Path, entry: str | None = None, filename: str | None = None
                  ) -> tuple[Path, dict[str, torch.Tensor]]:
    """A VQGAN-LC fixture written as their code writes it: `{"state_dict": ..., "opt_ae", "opt_dist", "epoch",
    "scaler_ae", "scaler_dist", "args"}` (`util/misc.py` save_model_vqgan) or, for `entry="model"`, their `-last`
    file; `entry` None: the fixture's own; "bare": the state dict alone."""
    meta, state, tensors = vqgan_lc_state(name)
    entry = entry or meta["entry"]
    optimizer = {"state": {}, "param_groups": [{"lr": 5e-4, "betas": (0.5, 0.9), "params": [0, 1]}]}
    if entry == "bare":
        checkpoint = state
    elif entry == "state_dict":
        checkpoint = {"state_dict": state, "opt_ae": optimizer, "opt_dist": optimizer, "epoch": 19, "scaler_ae": {},
                      "scaler_dist": {}, "args": argparse.Namespace(**meta["args"])}
    else:
        checkpoint = {entry: state, "optimizer": optimizer, "epoch": 19, "scaler": {},
                      "args": argparse.Namespace(**meta["args"])}
    path = folder / (filename or f"{name}.pth")
    torch.save(checkpoint, path)
    return path, tensors


def assert_matches_original(model: FVQModel, tensors: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        ids = model.tokenize(tensors["inputs"])
        assert torch.equal(ids, tensors["expected_indices"])
        reconstruction = model.detokenize(ids)
    torch.testing.assert_close(reconstruction, tensors["expected_reconstruction"], rtol=0, atol=1e-4)


def fill_cache(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT, ref: str = "main") -> None:
    """Lay `folder` out as the Hub cache does: models--org--name/{refs/<ref>, snapshots/<commit>/...}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    snapshot = repo / "snapshots" / commit
    for file in folder.rglob("*"):
        if file.is_file():
            target = snapshot / file.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())


def push_in_a_subprocess(script: str, tmp_path: Path) -> tuple[dict, dict]:
    """Run `script CACHE REPO_ROOT` against a loopback Hub; its last stdout line (JSON) and the files of each repo."""
    (tmp_path / "push.py").write_text(script)
    with HubServer() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "test-token",
               "HF_HUB_OFFLINE": "0"}
        proc = subprocess.run([sys.executable, str(tmp_path / "push.py"), str(tmp_path / "cache"),
                               str(ROOT)], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1]), {repo: hub.files(repo) for repo in hub.repos}


def run_in_two_processes(worker: Path, args: list[str]) -> list[list[str]]:
    """The script `worker` with `args` in two real processes over gloo (`torch.distributed.run`); the lines it prints
    that start `RANK <rank> WORLD 2`, split, by rank."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free port: torch.distributed.run hands --master_port 0 to workers as is
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", port, str(worker), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too, not torchrun alone
        stdout, stderr = proc.communicate()
        raise AssertionError(f"two-process run timed out; stdout: {stdout[-2000:]}\nstderr: {stderr[-4000:]}") from None
    assert proc.returncode == 0, stderr[-4000:]
    lines = sorted(line.split() for line in stdout.splitlines() if line.startswith("RANK"))
    assert [line[1] for line in lines] == ["0", "1"] and all(line[3] == "2" for line in lines), stdout
    return lines
