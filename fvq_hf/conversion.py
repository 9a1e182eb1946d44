"""`fvq-convert`: load a checkpoint of the original FVQ / LlamaGen tokenizer code into an `FVQModel`.

    fvq-convert --checkpoint fvq_ckpt/0400000.pt --output converted/fvq-262k [--config hub_configs/fvq-262k]

The released `.pt` files hold `{"model": state_dict, "ema": ..., "optimizer": ...}` (or a bare state dict)
in LlamaGen's layout: `encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*` keep their names here;
the quantizer's keys are renamed:

| original                                   | fvq_hf                                    |
| ------------------------------------------ | ----------------------------------------- |
| quantize.embedding.weight                  | quantizer.embedding.weight                |
| quantize.qbridge.x_embedder.proj.*         | quantizer.bridge.patch_embed.*            |
| quantize.qbridge.blocks.N.{attn,mlp}.*     | quantizer.bridge.blocks.N.{attn,mlp}.*    |
| quantize.qbridge.final_layer.linear.*      | quantizer.bridge.proj_out.*               |
| quantize.qbridge.linear.* (QBridge-lin/1)  | quantizer.bridge.linear.*                 |
| quantize.qbridge.linear_5.N.* (lin/5)      | quantizer.bridge.layers.N.*               |
| quantize.codebook_used                     | dropped (a training-time usage buffer)    |

A checkpoint already converted to plain VQGAN format (`convert_fullvq2vq`) has no bridge and loads as
`bridge_type="none"`. The architecture is read from the tensor shapes; `--config` checks it against a
config instead. Unknown and missing keys are reported by name.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from .models import FVQModel

DROPPED = ("quantize.codebook_used",)
_RENAMES = (
    (r"^quantize\.embedding\.", "quantizer.embedding."),
    (r"^quantize\.qbridge\.x_embedder\.proj\.", "quantizer.bridge.patch_embed."),
    (r"^quantize\.qbridge\.blocks\.", "quantizer.bridge.blocks."),
    (r"^quantize\.qbridge\.final_layer\.linear\.", "quantizer.bridge.proj_out."),
    (r"^quantize\.qbridge\.linear_5\.", "quantizer.bridge.layers."),
    (r"^quantize\.qbridge\.linear\.", "quantizer.bridge.linear."),
)


def extract_state_dict(checkpoint: Mapping, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The model's state dict from a training checkpoint (`model` or `ema` entry) or a bare state dict."""
    key = "ema" if use_ema else "model"
    if key in checkpoint and isinstance(checkpoint[key], Mapping):
        state = checkpoint[key]
    elif use_ema:
        raise ValueError(f"--ema: the checkpoint has no 'ema' entry (entries: {sorted(checkpoint)[:10]}).")
    else:
        state = checkpoint
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"Not a state dict: entries {sorted(state)[:10]} are not all tensors.")
    # torch.compile and DDP prefixes
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in state.items()}


def rename_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original keys -> fvq_hf keys; returns the renamed dict and the keys dropped on purpose."""
    renamed, dropped = {}, []
    for key, value in state.items():
        if key in DROPPED:
            dropped.append(key)
            continue
        new = key
        for pattern, replacement in _RENAMES:
            new = re.sub(pattern, replacement, new)
        renamed[new] = value
    return renamed, dropped


def infer_config(state: Mapping[str, torch.Tensor], num_heads: int = 4, sample_size: int = 256) -> dict:
    """An FVQModel config read off the (renamed) tensor shapes. Heads cannot be read off shapes: 4 as published."""
    try:
        codebook_size, code_dim = state["quantizer.embedding.weight"].shape
        widths, level = [], 0
        while f"encoder.conv_blocks.{level}.res.0.conv1.weight" in state:
            widths.append(state[f"encoder.conv_blocks.{level}.res.0.conv1.weight"].shape[0])
            level += 1
        layers = len({k.split(".")[4] for k in state if k.startswith("encoder.conv_blocks.0.res.")})
        latent_channels = state["quant_conv.weight"].shape[1]
    except KeyError as error:
        raise ValueError(f"Not an FVQ / LlamaGen tokenizer checkpoint: {error} is missing.") from error
    config = dict(sample_size=sample_size, block_out_channels=widths, layers_per_block=layers,
                  latent_channels=latent_channels, num_vq_embeddings=codebook_size, vq_embed_dim=code_dim,
                  norm_num_groups=32, bridge_type="none")
    if "quantizer.bridge.patch_embed.weight" in state:
        hidden, _, patch, _ = state["quantizer.bridge.patch_embed.weight"].shape
        depth = len({k.split(".")[3] for k in state if k.startswith("quantizer.bridge.blocks.")})
        mlp = state["quantizer.bridge.blocks.0.mlp.fc1.weight"].shape[0] / hidden
        config.update(bridge_type="vqbridge", bridge_patch_size=patch, bridge_hidden_size=hidden, bridge_depth=depth,
                      bridge_num_heads=num_heads, bridge_mlp_ratio=mlp)
    elif "quantizer.bridge.linear.weight" in state:
        config.update(bridge_type="linear")
    elif any(k.startswith("quantizer.bridge.layers.") for k in state):
        linears = sorted({int(k.split(".")[3]) for k in state if k.startswith("quantizer.bridge.layers.")})
        config.update(bridge_type="mlp", bridge_depth=len(linears) - 1,
                      bridge_hidden_size=state["quantizer.bridge.layers.0.weight"].shape[0])
    return config


def convert(checkpoint: Mapping, config: Mapping | None = None, use_ema: bool = False, num_heads: int = 4,
            sample_size: int = 256) -> tuple[FVQModel, list[str]]:
    """Build an FVQModel holding the checkpoint's weights; returns it and the keys dropped on purpose."""
    state, dropped = rename_keys(extract_state_dict(checkpoint, use_ema))
    model_config = dict(config) if config is not None else infer_config(state, num_heads, sample_size)
    model = FVQModel.from_config(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unknown or wrong:
        details = "; ".join(f"{name}: {keys[:20]}{' ...' if len(keys) > 20 else ''}" for name, keys in
                            (("missing", missing), ("unknown", unknown), ("wrong shape", wrong)) if keys)
        raise ValueError(f"The checkpoint does not fit the {'given' if config else 'inferred'} config ({details}).")
    model.load_state_dict(state, strict=True)
    return model, dropped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fvq-convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the original .pt file")
    parser.add_argument("--output", required=True, help="folder to save_pretrained into")
    parser.add_argument("--config", help="config folder or hub id to check the weights against (default: inferred)")
    parser.add_argument("--ema", action="store_true", help="take the EMA weights")
    parser.add_argument("--num-heads", type=int, default=4, help="VQBridge heads (not readable from shapes)")
    parser.add_argument("--sample-size", type=int, default=256, help="resolution the model was trained at")
    parser.add_argument("--fold", action="store_true", help="also write <output>-folded with the bridge folded")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow checkpoints that pickle other objects (e.g. argparse args); runs their code")
    args = parser.parse_args(argv)
    path = Path(args.checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not args.trust_pickle)
    except Exception as error:
        hint = "" if args.trust_pickle else (" If it is a trusted file that pickles other objects than tensors, "
                                             "add --trust-pickle.")
        raise ValueError(f"Cannot read {path} as a torch checkpoint ({error}).{hint}") from error
    config = FVQModel.load_config(args.config) if args.config else None
    model, dropped = convert(checkpoint, config, args.ema, args.num_heads, args.sample_size)
    model.save_pretrained(args.output)
    print(f"Wrote {args.output} ({model.config.bridge_type}, K = {model.codebook_size}); dropped {dropped or 'nothing'}.")
    if args.fold:
        model.fold_bridge().save_pretrained(f"{args.output}-folded")
        print(f"Wrote {args.output}-folded.")


if __name__ == "__main__":
    main()
