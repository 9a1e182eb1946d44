"""VQGAN-LC's own model (zh460045050/VQGAN-LC, `vqgan-gpt-lc/models/models_vq.py`), built by their code at a small
size, saved in their checkpoint layout, and run on fixed images: the parity fixtures of the `vqgan-lc` conversion
layout (issue 32).

No line of their code is in this repository: their classes are imported from a checkout of their repository
(commit 4708958). Their LPIPS (`models/lpips.py`) builds torchvision's pretrained VGG16, which cannot be downloaded
and has no CPU wheel here: a stub `torchvision.models.vgg16` gives VGG16's layers with random weights (their LPIPS
loads its own `models/vgg.pth` linear layers from the checkout). Neither it nor their PatchGAN discriminator enters
the tokenizer's outputs; their keys are what the converter must drop.

    git clone https://github.com/zh460045050/VQGAN-LC /tmp/vqgan_lc       # at 4708958
    python benchmarks/authors_vqgan_lc.py /tmp/vqgan_lc                   # writes tests/fixtures/original/vqgan_lc_*

Each fixture is their `VQModel(args, ddconfig, embed_dim)` (their `training_vqgan.py` builds it so) with their
`Encoder` / `Decoder` at base width 32 (their GroupNorm's 32 groups), `z_channels` 32, K = 256, seeded:
- `vqgan_lc_f16`: taming's f16 layout in small, `ch_mult` [1, 1, 1] and 1 res block, `attn_resolutions` [16] at
  `resolution` 64 (attention in the lowest level of encoder and decoder, and in the middle), d = 8, `use_cblinear 1`
  (Linear(128, 8) over a (256, 128) frozen table, `tuning_codebook 0`: the released runs), 32 px images (8 x 8
  tokens: their `resolution` only places the attention); written as their `vqgan_checkpoint-*.pth` (`state_dict`, `opt_ae`, `opt_dist`, ..., `args`).
- `vqgan_lc_f8`: taming's f8 layout in small, `ch_mult` [1, 1] and 2 res blocks (theirs), `resolution` 256 (their
  attention resolution 16 is never reached, so attention is in the middle only), d = 4, `use_cblinear 2`
  (Linear(64, 256)-ReLU-Linear(256, 4) over a (256, 64) table), 32 px images; written as their
  `vqgan_checkpoint-last.pth` (`model`, `optimizer`, ..., `args`).
- `vqgan_lc_f8_ema`: the f8 model's backbone with their EMA quantizer (`--quantizer_type ema`, `use_cblinear 0`,
  `tuning_codebook -1`): the table and its EMA statistics (`cluster_size`, `embed_avg`) are stored, the backbone is
  `vqgan_lc_f8`'s. Their EMA branch updates the table after each search, so the state is taken before the one call
  that gives the outputs, and the table that call left (`expected_table_after`) is stored too.
The tables are random (a k-means table of 768-d CLIP features cannot be made here, nor stored small; the converter
reads the width off the shapes), scaled so that the codes spread as the latents do, as after training: an untrained
projection of a random table puts every latent nearest one code. Every weight was rounded to fp16 before the outputs were computed and is stored in fp16 (`model.*`), so the fp32
values rebuilt from the file are exactly the ones their code ran. Expected outputs: the ids of their `encode(x)`
(`min_encoding_indices`, as (B, h, w)) and `decode(quant)` of the same call (their `forward` and eval path; their
`decode_code` is broken). Their discriminator and LPIPS weights are not stored, only their key names
(metadata `dropped_keys`): the tests put small tensors under those names. The args are stored as JSON metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "original"
K = 256
SMALL = dict(ch=32, z_channels=32)
# name -> (their yaml, ddconfig changes, embed_dim, use_cblinear, table width, image size, entry)
VARIANTS = {
    "vqgan_lc_f16": ("vq-f16.yaml", dict(ch_mult=[1, 1, 1], num_res_blocks=1, resolution=64), 8, 1, 128, 32,
                     "state_dict"),
    "vqgan_lc_f8": ("vq-f8.yaml", dict(ch_mult=[1, 1], num_res_blocks=2, resolution=256), 4, 2, 64, 32, "model"),
}
# Their training script's defaults and README flags that the model reads (`training_vqgan.py`, `runTrainVQ.sh`).
ARGS = dict(stage=1, rate_p=1.0, rate_q=0.1, rate_d=0.1, disc_start=50000, n_class=1000, image_size=256)


# ---- their code ---------------------------------------------------------------------------------------------------
def stub_torchvision() -> None:
    """`torchvision.models.vgg16(pretrained=...)`: VGG16's feature layers (the indices their LPIPS slices), random."""
    def vgg16(pretrained: bool = False, **_) -> types.SimpleNamespace:
        layers, width = [], 3
        for out in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
            if out == "M":
                layers.append(torch.nn.MaxPool2d(2, 2))
            else:
                layers += [torch.nn.Conv2d(width, out, 3, padding=1), torch.nn.ReLU(inplace=True)]
                width = out
        return types.SimpleNamespace(features=torch.nn.Sequential(*layers))

    torchvision = types.ModuleType("torchvision")
    torchvision.models = types.ModuleType("torchvision.models")
    torchvision.models.vgg16 = vgg16
    sys.modules.update({"torchvision": torchvision, "torchvision.models": torchvision.models})


def import_their_code(checkout: str) -> types.ModuleType:
    """Their `models.models_vq` from a checkout; their LPIPS reads `models/vgg.pth` relative to the working folder."""
    code_dir = Path(checkout) / "vqgan-gpt-lc"
    sys.path.insert(0, str(code_dir))
    stub_torchvision()
    os.chdir(code_dir)
    import models.models_vq as models_vq

    return models_vq


def their_model(models_vq, yaml_name: str, ddconfig: dict, args: dict, table: torch.Tensor | None,
                small: bool = True):
    """Their `VQModel` as `training_vqgan.py` builds it (`VQModel(args=args, **config.model.params)`), the table file
    (`--local_embedding_path`, modes 0 and 1) written from `table`; `small`: at `SMALL` widths (else their yaml's)."""
    params = yaml.safe_load((Path("vqgan_configs") / yaml_name).read_text())["model"]["params"]
    params["ddconfig"].update(SMALL if small else {}, **ddconfig)
    if table is not None:
        args["local_embedding_path"] = "/tmp/vqgan_lc_fixture_table.pth"
        torch.save(table, args["local_embedding_path"])
    return models_vq.VQModel(args=argparse.Namespace(**args), **params).eval()


def round_to_fp16(model: torch.nn.Module) -> None:
    """Zero-initialised weights (none in their tokenizer at the time of writing) perturbed; every weight fp16-exact."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not name.startswith(("discriminator.", "perceptual_loss.")):
                if not tensor.any():
                    tensor.normal_(std=0.05)
                tensor.copy_(tensor.half().float())


@torch.no_grad()
def their_outputs(model, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Their ids and reconstructions: `encode` (quant, loss, (d, _, ids)), then `decode(quant)`, as `forward`."""
    quant, _, (_, _, ids) = model.encode(images)
    return ids.view(quant.shape[0], quant.shape[2], quant.shape[3]), model.decode(quant)


def tokenizer_state(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(("discriminator.", "perceptual_loss."))}


# ---- fixtures -----------------------------------------------------------------------------------------------------
@torch.no_grad()
def spread_like_the_latents(model, images: torch.Tensor) -> None:
    """Scale the random table so that its projected codes spread as the latents do (as after training; an untrained
    projection of a random table puts every latent nearest one code)."""
    latents = model.quant_conv(model.encoder(images))
    codes = model.codebook_projection(model.tok_embeddings.weight)
    model.tok_embeddings.weight.mul_(latents.std() / codes.std())


def fixture(models_vq, name: str) -> tuple[dict, dict, torch.nn.Module]:
    yaml_name, ddconfig, embed_dim, projector, width, size, entry = VARIANTS[name]
    torch.manual_seed(0)
    args = {**ARGS, "embed_dim": embed_dim, "n_vision_words": K, "use_cblinear": projector, "tuning_codebook": 0,
            "quantizer_type": "org", "vq_config_path": f"vqgan_configs/{yaml_name}"}
    model = their_model(models_vq, yaml_name, ddconfig, args, torch.randn(K, width))
    images = (torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1).half().float()
    spread_like_the_latents(model, images)
    round_to_fp16(model)
    ids, reconstruction = their_outputs(model, images)
    dropped = sorted(k for k in model.state_dict() if k.startswith(("discriminator.", "perceptual_loss.")))
    tensors = {**{f"model.{k}": v.half() for k, v in tokenizer_state(model).items()}, "inputs": images.half(),
               "expected_indices": ids, "expected_reconstruction": reconstruction}
    args.pop("local_embedding_path")
    meta = {"entry": entry, "args": args, "dropped_keys": dropped, "ddconfig": {**SMALL, **ddconfig},
            "made_by": f"models_vq.VQModel(args, ddconfig={yaml_name} at ch 32, z 32, {ddconfig}); ids: "
                       "encode(x)[2][2]; images: decode(encode(x)[0])"}
    return tensors, meta, model


def ema_fixture(models_vq, backbone: torch.nn.Module) -> tuple[dict, dict]:
    """Their EMA quantizer without a projector on `backbone`'s encoder and decoder: only what differs is stored."""
    yaml_name, ddconfig, embed_dim, _, _, size, entry = VARIANTS["vqgan_lc_f8"]
    args = {**ARGS, "embed_dim": embed_dim, "n_vision_words": K, "use_cblinear": 0, "tuning_codebook": -1,
            "quantizer_type": "ema", "vq_config_path": f"vqgan_configs/{yaml_name}"}
    torch.manual_seed(0)
    model = their_model(models_vq, yaml_name, ddconfig, args, None)
    shared = {k: v for k, v in backbone.state_dict().items() if k.startswith(("encoder.", "decoder.", "quant_conv.",
                                                                                "post_quant_conv."))}
    model.load_state_dict(shared, strict=False)
    images = (torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1).half().float()
    with torch.no_grad():
        spread = model.quant_conv(model.encoder(images)).std()
        model.tok_embeddings.weight.copy_((torch.randn(K, embed_dim) * spread).half().float())
        model.cluster_size.copy_(torch.randint(1, 9, (K,)).float())
        model.embed_avg.copy_((model.tok_embeddings.weight * model.cluster_size[:, None]).half().float())
    stored = {f"model.{k}": v.clone().half() for k, v in model.state_dict().items()
              if k in ("tok_embeddings.weight", "cluster_size", "embed_avg")}
    ids, reconstruction = their_outputs(model, images)  # their EMA update follows the search
    tensors = {**stored, "inputs": images.half(), "expected_indices": ids, "expected_reconstruction": reconstruction,
               "expected_table_after": model.tok_embeddings.weight.detach().clone()}
    meta = {"entry": entry, "args": args, "backbone": "vqgan_lc_f8",
            "made_by": "models_vq.VQModel(args with quantizer_type ema, use_cblinear 0, tuning_codebook -1) with the "
                       "encoder, decoder and quant convs of vqgan_lc_f8; state taken before the call"}
    return tensors, meta


def write(name: str, tensors: dict, meta: dict) -> None:
    path = FIXTURES / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={k: json.dumps(v) for k, v in meta.items()})
    ids = tensors["expected_indices"]
    print(f"{name}: {path.stat().st_size / 1e3:.0f} kB, ids {tuple(ids.shape)} ({ids.unique().numel()} distinct)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", help="a checkout of zh460045050/VQGAN-LC (commit 4708958)")
    models_vq = import_their_code(parser.parse_args().checkout)
    models = {}
    for name in VARIANTS:
        tensors, meta, models[name] = fixture(models_vq, name)
        write(name, tensors, meta)
    write("vqgan_lc_f8_ema", *ema_fixture(models_vq, models["vqgan_lc_f8"]))


if __name__ == "__main__":
    main()
