"""The key layouts of the original tokenizer code (the FVQ authors', LlamaGen's, VAR's) and how each maps to `FVQModel`.

| layout       | written by                                                  | here                               |
| ------------ | ----------------------------------------------------------- | ---------------------------------- |
| `fvq-vit`    | FVQ release (`vq_model_qbridge_release.py`, `qbridge_ViT`)  | `bridge_type="vqbridge"`, exact    |
| `fvq-dit`    | FVQ `vq_model_qbridge.py` + `qbridge.py` (shipped scripts)  | bridge run once and folded: "none" |
| `fvq-linear` | FVQ `Qbridge-lin/1` (SimVQ baseline)                        | `bridge_type="linear"`             |
| `fvq-mlp`    | FVQ `Qbridge-lin/5` (VQGAN-LC-style baseline)               | `bridge_type="mlp"`                |
| `vqgan`      | LlamaGen `vq_model.py` (VQ-16, VQ-8) and FVQ's own fold     | `bridge_type="none"`               |
| `var`        | VAR's `vqvae.py` (FVQ's copy: `var/original/`)              | `quantizer_type="multiscale"`      |
| `var+fvq-dit`| FVQ `var/model/` (VAR with a DiT QBridge; also `-linear`, `-mlp`) | multi-scale, bridge as above |

`encoder.*`, `decoder.*`, `quant_conv.*` and `post_quant_conv.*` keep their names; `quantize.*` is renamed
(table below); `quantize.codebook_used` (a training-time ring buffer of recent ids) is dropped.

VAR's backbone is the same taming-transformers network under other names (`down.{i}.block.{j}`,
`mid.block_1`, one fused `qkv` conv, `up.{i}` numbered from the lowest resolution up): `rename_var_backbone`
maps it. Its `quant_resi` convs are the multi-scale quantizer's `phi`; `quantize.ema_vocab_hit_SV` (per-scale hit
statistics, one row per scale) is dropped after it has given the number of scales.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import torch

from ..bridges import DiTBridge

logger = logging.getLogger(__name__)

DROPPED = ("quantize.codebook_used", "quantize.ema_vocab_hit_SV")
LAYOUTS = ("fvq-vit", "fvq-dit", "fvq-linear", "fvq-mlp", "vqgan", "var", "var+fvq-dit", "var+fvq-linear",
           "var+fvq-mlp")
# VAR's scales for its 16 x 16 latent grid (`v_patch_nums`): not saved in its checkpoints.
VAR_SCALES = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]
# Every QBridge size in the authors' qbridge.py / qbridge_ViT.py has 4 heads; heads cannot be read off shapes.
RELEASE_NUM_HEADS = 4
_RENAMES = (
    (r"^quantize\.embedding\.", "quantizer.embedding."),
    (r"^quantize\.qbridge\.x_embedder\.proj\.", "quantizer.bridge.patch_embed."),
    (r"^quantize\.qbridge\.pos_embed$", "quantizer.bridge.pos_embed"),
    (r"^quantize\.qbridge\.y_embedder\.embedding_table\.", "quantizer.bridge.label_embed."),
    (r"^quantize\.qbridge\.blocks\.(\d+)\.adaLN_modulation\.1\.", r"quantizer.bridge.blocks.\1.modulation."),
    (r"^quantize\.qbridge\.blocks\.", "quantizer.bridge.blocks."),
    (r"^quantize\.qbridge\.final_layer\.adaLN_modulation\.1\.", "quantizer.bridge.final_modulation."),
    (r"^quantize\.qbridge\.final_layer\.linear\.", "quantizer.bridge.proj_out."),
    (r"^quantize\.qbridge\.linear_5\.", "quantizer.bridge.layers."),
    (r"^quantize\.qbridge\.linear\.", "quantizer.bridge.linear."),
    (r"^quantize\.quant_resi\.qresi_ls\.(\d+)\.", r"quantizer.phi.\1."),  # VAR's phi, partially shared
    (r"^quantize\.quant_resi\.qresi\.", "quantizer.phi.0."),  # shared
    (r"^quantize\.quant_resi\.(\d+)\.", r"quantizer.phi.\1."),  # one per scale
)


def detect_layout(state: Mapping[str, torch.Tensor]) -> str:
    """One of `LAYOUTS`, from the key names of an original state dict; a ValueError names what was found."""
    if any(k.startswith("quantizer.") for k in state):
        raise ValueError("These weights are already in fvq_hf's layout (keys 'quantizer.*'): load the folder with "
                         "FVQModel.from_pretrained instead of converting it.")
    if "quantize.embedding.weight" not in state or "quant_conv.weight" not in state:
        raise ValueError("Not a tokenizer of the FVQ / LlamaGen / VAR code: it has no 'quantize.embedding.weight' and "
                         f"'quant_conv.weight' (first keys: {sorted(state)[:8]}).")
    if any(k.startswith("encoder.down.") for k in state):
        bridged = any(k.startswith("quantize.qbridge.") for k in state)
        return f"var+{detect_layout(_without_var_keys(state))}" if bridged else "var"
    if any(k.startswith("quantize.qbridge.") and ("adaLN_modulation" in k or "y_embedder" in k) for k in state):
        return "fvq-dit"
    if "quantize.qbridge.x_embedder.proj.weight" in state:
        return "fvq-vit"
    if "quantize.qbridge.linear.weight" in state:
        return "fvq-linear"
    if any(k.startswith("quantize.qbridge.linear_5.") for k in state):
        return "fvq-mlp"
    if any(k.startswith("quantize.qbridge.") for k in state):
        unknown = sorted(k for k in state if k.startswith("quantize.qbridge."))
        raise ValueError(f"Unknown bridge layout: the keys {unknown[:8]} match none of {LAYOUTS}.")
    return "vqgan"


def _without_var_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys that tell a bridge layout apart (VAR's backbone and phi left out)."""
    return {k: v for k, v in state.items() if not k.startswith(("encoder.", "decoder.", "quantize.quant_resi."))}


def rename_var_backbone(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VAR's Encoder / Decoder keys -> this package's (LlamaGen's) names; other keys pass unchanged.

    Its attention computes q, k, v with one `qkv` conv (channels in that order), split here into three.
    """
    levels = len({k.split(".")[2] for k in state if k.startswith("decoder.up.")})
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^(encoder|decoder)\.mid\.(block_1|attn_1|block_2)\.",
                     lambda m: f"{m.group(1)}.mid.{('block_1', 'attn_1', 'block_2').index(m.group(2))}.", key)
        key = re.sub(r"^encoder\.down\.(\d+)\.(block\.)?",
                     lambda m: f"encoder.conv_blocks.{m.group(1)}.{'res.' if m.group(2) else ''}", key)
        # The decoder runs up.{L-1} first; this package numbers its levels in the order they run.
        key = re.sub(r"^decoder\.up\.(\d+)\.(block\.)?",
                     lambda m: f"decoder.conv_blocks.{levels - 1 - int(m.group(1))}.{'res.' if m.group(2) else ''}", key)
        if re.match(r"^(encoder|decoder)\..*\.qkv\.(weight|bias)$", key):
            stem, kind = key.rsplit(".qkv.", 1)
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                renamed[f"{stem}.{name}.{kind}"] = part
        else:
            renamed[key] = value
    return renamed


def rename_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Original keys -> fvq_hf keys; returns the renamed dict and the keys dropped on purpose."""
    renamed, dropped = {}, []
    if any(k.startswith("encoder.down.") for k in state):
        state = rename_var_backbone(state)
    for key, value in state.items():
        if key in DROPPED:
            dropped.append(key)
            continue
        for pattern, replacement in _RENAMES:
            new = re.sub(pattern, replacement, key)
            if new != key:
                key = new
                break
        renamed[key] = value
    return renamed, dropped


def choose_l2_norm(layout: str, args: Mapping | None, code_dim: int, flag: bool | None) -> tuple[bool, str]:
    """Whether the original code l2-normalised latents and codes before its search, and why we think so.

    Shapes cannot tell (a trained LlamaGen table is not unit norm: it is normalised when used). Order: the
    caller's `flag`, the file's own `args`, the known release rules; otherwise a ValueError asks for the flag.
    """
    from_args = args.get("codebook_l2_norm") if args else None
    if layout.startswith("var"):
        if flag:
            raise ValueError("codebook_l2_norm=True does not fit a VAR checkpoint here: the multi-scale quantizer "
                             "has no l2-normalised search (VAR's using_znorm; its release and the FVQ authors' "
                             "VAR runs use using_znorm=False).")
        return False, "VAR's quantizer as released and in the FVQ authors' VAR runs (using_znorm=False)"
    if layout != "vqgan":
        # The FVQ code's quantizer never normalises in its search; its flag only normalises the initial table.
        if flag:
            raise ValueError("codebook_l2_norm=True does not fit a checkpoint of the FVQ code: its quantizer never "
                             "l2-normalises in the search (the flag only normalises the initial table there).")
        return False, "the FVQ code's quantizer never l2-normalises in its search"
    if flag is not None:
        if from_args is not None and bool(from_args) != flag:
            logger.warning("codebook_l2_norm=%s overrides the checkpoint's own args (codebook_l2_norm=%s).",
                           flag, from_args)
        return flag, "given by the caller"
    if from_args is not None:
        return bool(from_args), "the checkpoint's own args"
    if code_dim == 8:
        return True, "release rule: LlamaGen's d = 8 tokenizers (vq_ds16_c2i, vq_ds8_c2i, vq_ds16_t2i) use l2-norm"
    if code_dim == 256:
        return False, ("release rule: the FVQ authors' VQGAN-format files (d = 256) use no l2-norm; LlamaGen "
                       "released no d = 256 tokenizer")
    raise ValueError(f"Cannot tell whether this d = {code_dim} tokenizer l2-normalised its codes: the file has no "
                     f"args and no release uses d = {code_dim}. Pass codebook_l2_norm=True (LlamaGen's training "
                     "code always does) or False (the FVQ code, its fold) (--codebook-l2-norm / "
                     "--no-codebook-l2-norm on the command line).")


def infer_config(state: Mapping[str, torch.Tensor], sample_size: int, num_heads: int, multiscale: bool = False,
                 num_scales: int | None = None) -> dict:
    """An FVQModel config read off the (renamed) tensor shapes. A `multiscale` (VAR) file gets VAR's scales when
    they fit its latent grid and its number of scales (from its hit statistics, when it has them)."""
    try:
        codebook_size, code_dim = state["quantizer.embedding.weight"].shape
        widths, level = [], 0
        while f"encoder.conv_blocks.{level}.res.0.conv1.weight" in state:
            widths.append(state[f"encoder.conv_blocks.{level}.res.0.conv1.weight"].shape[0])
            level += 1
        layers = len({k.split(".")[4] for k in state if k.startswith("encoder.conv_blocks.0.res.")})
        latent_channels = state["quant_conv.weight"].shape[1]
    except (KeyError, IndexError) as error:
        raise ValueError(f"Not an FVQ / LlamaGen / VAR tokenizer checkpoint: {error} is missing.") from error
    config = dict(sample_size=sample_size, block_out_channels=widths, layers_per_block=layers,
                  latent_channels=latent_channels, num_vq_embeddings=codebook_size, vq_embed_dim=code_dim,
                  norm_num_groups=32, bridge_type="none", quant_conv_kernel_size=state["quant_conv.weight"].shape[-1])
    if multiscale:
        phis = {k.split(".")[2] for k in state if k.startswith("quantizer.phi.")}
        quantizer = {"num_phi": max(len(phis), 1), "phi_ratio": 0.5 if phis else 0.0}  # VAR's quant_resi, not saved
        if num_scales in (None, len(VAR_SCALES)) and sample_size == VAR_SCALES[-1] * 2 ** (len(widths) - 1):
            quantizer["scales"] = VAR_SCALES  # else the caller must say them (the file does not)
        config.update(quantizer_type="multiscale", quantizer_config=quantizer)
    if "quantizer.bridge.patch_embed.weight" in state:
        config.update(bridge_type="vqbridge", bridge_config={**transformer_bridge_shape(state), "num_heads": num_heads})
    elif "quantizer.bridge.linear.weight" in state:
        config.update(bridge_type="linear")
    elif any(k.startswith("quantizer.bridge.layers.") for k in state):
        linears = sorted({int(k.split(".")[3]) for k in state if k.startswith("quantizer.bridge.layers.")})
        config.update(bridge_type="mlp", bridge_config={
            "depth": len(linears) - 1, "hidden_size": state["quantizer.bridge.layers.0.weight"].shape[0]})
    return config


def transformer_bridge_shape(state: Mapping[str, torch.Tensor], prefix: str = "quantizer.bridge.") -> dict:
    """Patch size, width, depth and MLP ratio of a ViT- or DiT-style bridge, from its tensor shapes."""
    hidden, _, patch, _ = state[f"{prefix}patch_embed.weight"].shape
    depth = len({k[len(prefix):].split(".")[1] for k in state if k.startswith(f"{prefix}blocks.")})
    mlp_ratio = state[f"{prefix}blocks.0.mlp.fc1.weight"].shape[0] / hidden
    return dict(patch_size=patch, hidden_size=hidden, depth=depth, mlp_ratio=mlp_ratio)


@torch.no_grad()
def fold_dit_bridge(state: dict[str, torch.Tensor], num_heads: int, label: int | None) -> tuple[int, str]:
    """Replace the DiT bridge's weights in `state` (renamed) by the codebook it computes for `label`, in place.

    `label` None takes the label the authors' code uses: 0 with one label row (`--is_uncondition`); for a
    class-conditional bridge the null class, as their `convert_fullvq2vq.py` does. Returns the label and why.
    """
    prefix = "quantizer.bridge."
    bridge_state = {k[len(prefix):]: state.pop(k).float() for k in list(state) if k.startswith(prefix)}
    table = state["quantizer.embedding.weight"].float()
    shape = transformer_bridge_shape(bridge_state, prefix="")
    num_labels = bridge_state["label_embed.weight"].shape[0] if "label_embed.weight" in bridge_state else 1
    bridge = DiTBridge(table.shape[0], table.shape[1], num_heads=num_heads, num_labels=num_labels, **shape)
    result = bridge.load_state_dict(bridge_state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"The DiT bridge's weights do not fit the authors' qbridge.py layout (missing: "
                         f"{result.missing_keys[:10]}; unknown: {['quantize.qbridge.' + k for k in result.unexpected_keys][:10]}).")
    if label is None:
        label, why = (0, "the only label (--is_uncondition)") if num_labels == 1 else \
            (num_labels - 1, "the null class, as the authors' convert_fullvq2vq.py folds it")
        if num_labels > 1:
            logger.warning("This DiT bridge is class-conditional: the original gives one codebook per class. The "
                           "conversion folds the null class (%d); pass dit_label= for another class.", label)
    else:
        why = "given by the caller"
    state["quantizer.embedding.weight"] = bridge.eval()(table, label)
    return label, why
