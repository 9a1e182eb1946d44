"""VQGAN-LC's latent generators (`dit-lc-100K-f16.pth`, `sit-lc-100K-f16.pth`; zh460045050/VQGAN-LC `dit-lc/`,
`sit-lc/`), and any facebookresearch DiT / SiT checkpoint, into a `TimeMappedDiTTransformer2DModel` and the diffusers
scheduler that samples it as their code does.

Their `train.py` saves `{"model", "ema", "opt", "args"}` (`args` their argparse Namespace); their `download.find_model`
takes `ema` when the file has it, else reads the file as a bare state dict. The state dict is their `DiT` / `SiT`
(the same class; SiT's `forward` keeps the first `in_channels` outputs):

| their keys | diffusers' `DiTTransformer2DModel` |
| --- | --- |
| `x_embedder.proj.*` (a `Conv2d(C, D, P, P)`) | `pos_embed.proj.*` |
| `pos_embed` `(1, T, D)`, their fixed 2-D sin-cos | not stored: `PatchEmbed` computes the same (checked) |
| `t_embedder.mlp.{0,2}.*`, `y_embedder.embedding_table.weight` `(classes + 1, D)` | copied into every block's `norm1.emb.{timestep_embedder.linear_{1,2}, class_embedder.embedding_table}` (the final layer reads block 0's) |
| `blocks.i.adaLN_modulation.1.*` (shift, scale, gate of attention, then of the MLP) | `transformer_blocks.i.norm1.linear.*` (the same order) |
| `blocks.i.attn.qkv.*` `(3D, D)` | split into `attn1.to_q`, `to_k`, `to_v` |
| `blocks.i.attn.proj.*`, `mlp.fc1.*`, `mlp.fc2.*` | `attn1.to_out.0.*`, `ff.net.0.proj.*`, `ff.net.2.*` |
| `final_layer.adaLN_modulation.1.*` (shift, scale), `final_layer.linear.*` | `proj_out_1.*` (the same order), `proj_out_2.*` |

Their LayerNorms use eps 1e-6 (`norm_eps=1e-6`; diffusers' default 1e-5), their MLPs width 4D and tanh-GELU, and
their timestep embedding `10000^(-i / 128)` (`timestep_freq_shift=0`, see `dit`). A SiT is linear-path velocity
prediction at t in [0, 1], t = 1 data (their `transport/path.py` `ICPlan`): converted to diffusers' flow-matching
convention (`timestep = 1000 (1 - t)`, output `noise - x0`) by `timestep_scale=-1/1000`, `timestep_offset=1`, and
`proj_out_2` negated and cut to its first `in_channels` outputs (their forward drops the learned-sigma half).

Schedulers: DiT: their `create_diffusion` (1000 linear betas 1e-4 .. 0.02, epsilon, learned-range variance, no
clipping in their `evaluation.py`) is `DDPMScheduler(variance_type="learned_range", timestep_spacing="linspace")`;
their respacing to n steps (`create_diffusion(str(n))`) takes the same timesteps as diffusers' "linspace" spacing.
SiT: `FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1)` (their sampler is an ODE solver, dopri5 by
default: another integrator of the same flow).

Sampling as theirs: the DDPM step needs all 2C outputs (diffusers' `DiTPipeline` drops the learned-variance half
before the step, so there it takes `DDIMScheduler.from_config(scheduler.config)`, as diffusers' own DiT release).
Their `forward_with_cfg` (DiT and SiT alike, `evaluation.py` with `--cfg-scale 8`) guides the first 3 output
channels only ("for exact reproducibility", a leftover of 4-channel SD-VAE latents): of d = 8 latent channels,
channels 3-7 take the conditional prediction unguided; `DiTPipeline` guides all C.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .dit import TimeMappedDiTTransformer2DModel

logger = logging.getLogger(__name__)

KINDS = ("dit", "sit")
# Their `DiT_models` / `SiT_models` presets: size -> (depth, hidden size, heads).
PRESETS = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}
MLP_RATIO, FREQUENCY_CHANNELS, TRAIN_TIMESTEPS = 4, 256, 1000
DIT_SCHEDULER = dict(num_train_timesteps=TRAIN_TIMESTEPS, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                     variance_type="learned_range", prediction_type="epsilon", clip_sample=False,
                     timestep_spacing="linspace")
SIT_SCHEDULER = dict(num_train_timesteps=TRAIN_TIMESTEPS, shift=1.0)


def convert_latent_generator(path_or_state_dict: str | os.PathLike | Mapping, kind: str | None = None,
                             weights: str = "auto", num_heads: int | None = None, trust_pickle: bool = False
                             ) -> tuple[TimeMappedDiTTransformer2DModel, SchedulerMixin]:
    """`(transformer, scheduler)` of a DiT-LC / SiT-LC checkpoint (a file, their checkpoint dict or a state dict).

    `kind`: "dit" or "sit" (default: from the file's `args`; the weights of the two have the same keys). `weights`:
    "auto" (`ema`, then `model`, as their `find_model`), "ema", "model", or "bare" (the file is a state dict).
    `num_heads`: needed only for a model that is none of their presets (XL, L, B, S) and whose args do not name one.
    The transformer (eval mode) takes latents `(B, C, H, W)`, timesteps `(B,)` and labels `(B,)` (`classes` is
    the null class) and gives `(B, 2C, H, W)` (DiT: eps and the learned-range values) or `(B, C, H, W)` (SiT: the
    velocity `noise - x0`).
    """
    from ..conversion.loader import checkpoint_args, read_checkpoint, select_state

    if isinstance(path_or_state_dict, Mapping):
        checkpoint, source = path_or_state_dict, "<memory>"
    else:
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"No checkpoint file at {path}.")
        checkpoint, source = read_checkpoint(path, trust_pickle), path.name
    if weights == "state_dict":
        raise ValueError("weights='state_dict': their DiT / SiT files have no such entry; choose auto, ema, model or "
                         "bare.")
    state, taken = select_state(checkpoint, weights)
    saved_args = checkpoint_args(checkpoint) if taken != "bare" else None
    kind = choose_kind(kind, saved_args, source)
    config = infer_config(state, saved_args, num_heads, source)
    converted = to_diffusers(state, config["num_layers"])
    if kind == "sit":
        negate_velocity(converted, config)
    model = TimeMappedDiTTransformer2DModel(**config, **(
        {"timestep_freq_shift": 0, "timestep_scale": -1 / TRAIN_TIMESTEPS, "timestep_offset": 1.0} if kind == "sit"
        else {"timestep_freq_shift": 0}))
    check_position_embedding(state["pos_embed"], model, source)
    model.load_state_dict(converted, strict=True)
    scheduler = DDPMScheduler(**DIT_SCHEDULER) if kind == "dit" else FlowMatchEulerDiscreteScheduler(**SIT_SCHEDULER)
    logger.info("Converted %s: %s, %s weights, %d layers, width %d, %d heads.", source, kind.upper() + "-LC", taken,
                config["num_layers"], model.inner_dim, config["num_attention_heads"])
    return model.eval(), scheduler


def save_latent_generator(transformer: TimeMappedDiTTransformer2DModel, scheduler: SchedulerMixin,
                          folder: str | os.PathLike) -> None:
    """`folder/transformer` and `folder/scheduler`, the sub-folders of a diffusers pipeline folder."""
    transformer.save_pretrained(Path(folder, "transformer"))
    scheduler.save_pretrained(Path(folder, "scheduler"))


def choose_kind(kind: str | None, saved_args: Mapping | None, source: str) -> str:
    """The kind asked for, checked against what the file's args say (`--model DiT-XL/2` or `SiT-XL/2`; SiT's transport
    arguments), or the args' kind; a SiT must be their linear path with velocity prediction."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r}: choose 'dit' or 'sit'.")
    saved_args = saved_args or {}
    name = str(saved_args.get("model", ""))
    said = next((k for k in KINDS if name.lower().startswith(k + "-")), None)
    if said is None and {"path_type", "prediction"} & set(saved_args):
        said = "sit"
    if kind is not None and said is not None and kind != said:
        raise ValueError(f"kind={kind!r}, but {source} is a {said.upper()} checkpoint (its args: model "
                         f"{name or '?'}{', transport arguments' if 'path_type' in saved_args else ''}).")
    kind = kind or said
    if kind is None:
        raise ValueError(f"{source} does not say whether it is a DiT or a SiT (no args; their weights have the same "
                         "keys): pass kind='dit' or kind='sit' (fvq-convert --generator dit|sit).")
    if kind == "sit":
        path, prediction = saved_args.get("path_type", "Linear"), saved_args.get("prediction", "velocity")
        if (path, prediction) != ("Linear", "velocity"):
            raise ValueError(f"{source} is a SiT with path {path} and {prediction} prediction: only the linear path "
                             "with velocity prediction (SiT-LC's) maps onto diffusers' flow matching exactly.")
    return kind


def infer_config(state: Mapping[str, torch.Tensor], saved_args: Mapping | None, num_heads: int | None, source: str) -> dict:
    """The `DiTTransformer2DModel` config read off the shapes; their key set and every shape checked."""
    if "x_embedder.proj.weight" not in state or not any(k.startswith("blocks.") for k in state):
        raise ValueError(f"{source} is not a DiT / SiT checkpoint: it has no x_embedder.proj.weight or blocks.* "
                         f"(keys: {sorted(state)[:8]}).")
    width, channels, patch, _ = state["x_embedder.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    tokens = state["pos_embed"].shape[1] if "pos_embed" in state else 0
    side = math.isqrt(tokens)
    rows = state["final_layer.linear.weight"].shape[0] if "final_layer.linear.weight" in state else 0
    out_channels = rows // (patch * patch)
    classes = state["y_embedder.embedding_table.weight"].shape[0] - 1 if "y_embedder.embedding_table.weight" in state \
        else 0
    expected = original_shapes(width, channels, patch, depth, side * side, classes, out_channels)
    missing = [k for k in expected if k not in state]
    unknown = sorted(k for k in state if k not in expected)
    wrong = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in expected
             if k in state and tuple(state[k].shape) != expected[k]]
    if "pos_embed" in state and (side * side != tokens or tokens == 0):
        wrong.append(f"pos_embed {tuple(state['pos_embed'].shape)} (a square grid of tokens)")
    if rows and (out_channels not in (channels, 2 * channels) or rows != out_channels * patch * patch):
        wrong.append(f"final_layer.linear.weight rows {rows} (patch^2 x {channels} or x {2 * channels})")
    if missing or unknown or wrong:
        raise ValueError(f"{source} does not fit the DiT / SiT layout of {depth} blocks, width {width}: " + "; ".join(
            f"{what}: {keys[:20]}{' ...' if len(keys) > 20 else ''}"
            for what, keys in (("missing", missing), ("unknown", unknown), ("wrong shape", wrong)) if keys) + ".")
    heads = choose_heads(num_heads, saved_args, depth, width, source)
    return dict(num_attention_heads=heads, attention_head_dim=width // heads, in_channels=channels,
                out_channels=out_channels, num_layers=depth, sample_size=side * patch, patch_size=patch,
                num_embeds_ada_norm=classes, norm_eps=1e-6)


def original_shapes(width: int, channels: int, patch: int, depth: int, tokens: int, classes: int, out_channels: int
                    ) -> dict[str, tuple[int, ...]]:
    """Every key of their `DiT` / `SiT` state dict and its shape."""
    hidden = MLP_RATIO * width
    shapes = {"x_embedder.proj.weight": (width, channels, patch, patch), "x_embedder.proj.bias": (width,),
              "pos_embed": (1, tokens, width), "t_embedder.mlp.0.weight": (width, FREQUENCY_CHANNELS),
              "t_embedder.mlp.0.bias": (width,), "t_embedder.mlp.2.weight": (width, width),
              "t_embedder.mlp.2.bias": (width,), "y_embedder.embedding_table.weight": (classes + 1, width)}
    for i in range(depth):
        for name, rows, cols in (("attn.qkv", 3 * width, width), ("attn.proj", width, width), ("mlp.fc1", hidden, width),
                                 ("mlp.fc2", width, hidden), ("adaLN_modulation.1", 6 * width, width)):
            shapes.update({f"blocks.{i}.{name}.weight": (rows, cols), f"blocks.{i}.{name}.bias": (rows,)})
    shapes.update({"final_layer.adaLN_modulation.1.weight": (2 * width, width),
                   "final_layer.adaLN_modulation.1.bias": (2 * width,),
                   "final_layer.linear.weight": (patch * patch * out_channels, width),
                   "final_layer.linear.bias": (patch * patch * out_channels,)})
    return shapes


def choose_heads(num_heads: int | None, saved_args: Mapping | None, depth: int, width: int, source: str) -> int:
    """Heads are not in the weights: given, or their preset's (named by the args' `--model`, else the one of this depth
    and width)."""
    name = str((saved_args or {}).get("model", ""))
    found = re.fullmatch(r"[DS]iT-(XL|L|B|S)/\d+", name)
    preset = PRESETS[found.group(1)] if found else next((p for p in PRESETS.values() if p[:2] == (depth, width)), None)
    if found and preset[:2] != (depth, width):
        raise ValueError(f"{source}'s args say {name} (depth {preset[0]}, width {preset[1]}), but its weights have "
                         f"depth {depth}, width {width}.")
    heads = num_heads if num_heads is not None else (preset[2] if preset else None)
    if heads is None:
        raise ValueError(f"{source} is not one of their presets (depth {depth}, width {width}) and its args name none: "
                         "pass num_heads (fvq-convert --num-heads).")
    if heads <= 0 or width % heads:
        raise ValueError(f"num_heads={heads} does not divide the width {width}.")
    return heads


def to_diffusers(state: Mapping[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Their keys renamed to `DiTTransformer2DModel`'s (the table above), fp32."""
    state = {k: v.float() for k, v in state.items()}
    embedding = {"timestep_embedder.linear_1": "t_embedder.mlp.0", "timestep_embedder.linear_2": "t_embedder.mlp.2"}
    out = {"pos_embed.proj.weight": state["x_embedder.proj.weight"], "pos_embed.proj.bias": state["x_embedder.proj.bias"]}
    for i in range(depth):
        block, theirs = f"transformer_blocks.{i}.", f"blocks.{i}."
        for ours, name in embedding.items():
            for p in ("weight", "bias"):
                out[f"{block}norm1.emb.{ours}.{p}"] = state[f"{name}.{p}"]
        out[f"{block}norm1.emb.class_embedder.embedding_table.weight"] = state["y_embedder.embedding_table.weight"]
        for p in ("weight", "bias"):
            for name, value in zip(("to_q", "to_k", "to_v"), state[f"{theirs}attn.qkv.{p}"].chunk(3, dim=0)):
                out[f"{block}attn1.{name}.{p}"] = value
            for ours, name in (("norm1.linear", "adaLN_modulation.1"), ("attn1.to_out.0", "attn.proj"),
                               ("ff.net.0.proj", "mlp.fc1"), ("ff.net.2", "mlp.fc2")):
                out[f"{block}{ours}.{p}"] = state[f"{theirs}{name}.{p}"]
    for p in ("weight", "bias"):
        out[f"proj_out_1.{p}"] = state[f"final_layer.adaLN_modulation.1.{p}"]
        out[f"proj_out_2.{p}"] = state[f"final_layer.linear.{p}"]
    return {k: v.contiguous() for k, v in out.items()}


def negate_velocity(state: dict[str, torch.Tensor], config: dict) -> None:
    """In place: `proj_out_2` keeps the first `in_channels` of each patch position's outputs (their SiT's forward drops
    the learned-sigma half) and is negated (their velocity is data - noise, diffusers' noise - data)."""
    channels, patch = config["in_channels"], config["patch_size"]
    for p in ("weight", "bias"):
        value = state[f"proj_out_2.{p}"]
        # rows are (patch row, patch column, channel), channel fastest, as both unpatchify them
        value = value.reshape(patch * patch, config["out_channels"], *value.shape[1:])[:, :channels]
        state[f"proj_out_2.{p}"] = -value.reshape(patch * patch * channels, *value.shape[2:]).contiguous()
    config["out_channels"] = channels


def check_position_embedding(theirs: torch.Tensor, model: TimeMappedDiTTransformer2DModel, source: str) -> None:
    """Their `pos_embed` is a fixed 2-D sin-cos table (`requires_grad=False`), which diffusers' `PatchEmbed` recomputes
    instead of loading: a file whose table differs cannot be converted."""
    ours = model.pos_embed.pos_embed
    error = (theirs.float() - ours).abs().max().item()
    if error > 1e-4:
        raise ValueError(f"{source}'s pos_embed is not their fixed 2-D sin-cos table (max difference {error:.3g} from "
                         "the one diffusers' PatchEmbed computes): a trained position embedding cannot be converted.")
