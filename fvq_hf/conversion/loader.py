"""Read a checkpoint of the original tokenizer code (a local file or a file in a Hub repo) into an `FVQModel`.

`FVQModel.from_original_checkpoint` is the way in; `fvq-convert` is its command line. What the conversion
decided (layout, which weights, the l2-norm rule and why) is returned as an `OriginalCheckpointInfo` and
saved next to converted weights as `original_checkpoint.json`, where `fvq-publish` reads it for the card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..hub.model_card import ORIGINAL_FILE
from .layouts import (
    RELEASE_NUM_HEADS,
    VAR_SCALES,
    choose_l2_norm,
    detect_layout,
    fold_dit_bridge,
    infer_config,
    rename_keys,
)

logger = logging.getLogger(__name__)

WEIGHT_ENTRIES = ("ema", "model", "state_dict")  # the authors' eval and convert scripts take them in this order


@dataclasses.dataclass
class OriginalCheckpointInfo:
    """What a conversion read and decided; saved as `original_checkpoint.json` next to converted weights."""

    source: str
    layout: str
    weights: str
    codebook_l2_norm: bool
    l2_norm_reason: str
    dropped_keys: list[str]
    folded_label: int | None = None
    folded_label_reason: str | None = None
    args: dict | None = None

    def save(self, folder: str | os.PathLike) -> None:
        Path(folder, ORIGINAL_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> OriginalCheckpointInfo | None:
        """The info saved in `folder`, or None when the folder holds no converted original."""
        path = Path(folder, ORIGINAL_FILE)
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def resolve_file(path_or_repo_id: str | os.PathLike, filename: str | None = None, **hub_kwargs) -> tuple[Path, str]:
    """`(local path, source)` for a local file, a file in a local folder, or a file in a Hub repo; the source is
    `repo_id/filename` for a Hub file and the bare file name for a local one (it goes into public model cards).

    `hub_kwargs` go to `huggingface_hub.hf_hub_download` (revision, cache_dir, local_files_only, token); the
    download is cached and honours `HF_HUB_OFFLINE=1`.
    """
    path = Path(path_or_repo_id) if filename is None else Path(path_or_repo_id, filename)
    if path.is_file():
        return path, path.name
    if filename is None:
        raise FileNotFoundError(f"No checkpoint file at {path}. For a file in a Hub repo, pass the repo id and "
                                "filename=..., e.g. ('FoundationVision/LlamaGen', filename='vq_ds16_c2i.pt').")
    if Path(path_or_repo_id).is_dir():
        raise FileNotFoundError(f"No file {filename!r} in the folder {path_or_repo_id}.")
    source = f"{path_or_repo_id}/{filename}"
    try:
        return Path(hf_hub_download(str(path_or_repo_id), filename, **hub_kwargs)), source
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(f"{source} is not in the local Hub cache and cannot be downloaded now (offline, or "
                                "HF_HUB_OFFLINE=1). Download it once while online.") from error
    except EntryNotFoundError as error:
        raise FileNotFoundError(f"The Hub repo {path_or_repo_id} has no file {filename!r}.") from error
    except (HfHubHTTPError, ValueError) as error:
        raise OSError(f"Cannot fetch {source} from the Hub ({error}). Check the repo id, filename and revision.") \
            from error


def read_checkpoint(path: Path, trust_pickle: bool = False) -> Mapping:
    """The top-level mapping of a `.pt` / `.pth` / `.safetensors` file, loaded without running its code.

    `weights_only` loading allows tensors, containers, numbers and `argparse.Namespace` (the `args` entry of
    the original training checkpoints); anything else needs `trust_pickle=True`, which runs code from the file.
    """
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError) as error:
            raise ValueError(f"Cannot read {path} as safetensors ({error}); is it truncated?") from error
    try:
        if trust_pickle:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals([argparse.Namespace]):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found and not trust_pickle:
            raise ValueError(f"{path} pickles an object of type {found.group(1)}, not only tensors and argparse "
                             "args. If you trust the file, pass trust_pickle=True (--trust-pickle): that runs code "
                             "from it.") from error
        raise ValueError(_unreadable(path, "not a pickle of tensors")) from error
    except Exception as error:  # garbage makes the unpickler fail in many ways (KeyError, EOFError, BadZipFile, ...)
        first_line = (str(error).splitlines() or [""])[0][:200]
        raise ValueError(_unreadable(path, f"{type(error).__name__}: {first_line}")) from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint dict or state dict.")
    return checkpoint


def _unreadable(path: Path, reason: str) -> str:
    return f"Cannot read {path} as a torch checkpoint ({reason}). Is it truncated, or not a checkpoint? Download it again."


def select_state(checkpoint: Mapping, weights: str = "auto") -> tuple[dict[str, torch.Tensor], str]:
    """The model's state dict and the entry it came from: `ema`, `model`, `state_dict`, or `bare` (the file is one).

    `weights="auto"` takes them in that order, as the authors' scripts do.
    """
    choices = ("auto", *WEIGHT_ENTRIES, "bare")
    if weights not in choices:
        raise ValueError(f"weights={weights!r}: choose one of {choices}.")
    if weights == "auto":
        weights = next((k for k in WEIGHT_ENTRIES if isinstance(checkpoint.get(k), Mapping)), "bare")
    if weights == "bare":
        state = checkpoint
    elif isinstance(checkpoint.get(weights), Mapping):
        state = checkpoint[weights]
    else:
        raise ValueError(f"weights={weights!r}: the checkpoint has no such entry (entries: {sorted(checkpoint)}).")
    others = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if others:
        raise ValueError(f"Not a state dict: the entries {others[:10]} are not tensors (top-level entries: "
                         f"{sorted(checkpoint)[:10]}).")
    # torch.compile and DDP prefixes
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in state.items()}, weights


def checkpoint_args(checkpoint: Mapping) -> dict | None:
    """The training arguments saved under `args` (an argparse.Namespace or a dict), JSON-safe, or None."""
    args = checkpoint.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else args
    if not isinstance(args, Mapping):
        return None
    return {k: v for k, v in args.items() if isinstance(v, str | int | float | bool | type(None) | list)}


def convert_original(checkpoint: Mapping, source: str = "<memory>", *, weights: str = "auto",
                     config: Mapping | None = None, codebook_l2_norm: bool | None = None, num_heads: int | None = None,
                     sample_size: int = 256, dit_label: int | None = None):
    """An `FVQModel` (eval mode) holding the weights of an original checkpoint mapping, and what was decided."""
    from ..tokenizer.fvq_model import FVQModel  # the model module imports this one lazily too

    raw, taken = select_state(checkpoint, weights)
    args = checkpoint_args(checkpoint) if taken != "bare" else None
    layout = detect_layout(raw)
    # VAR's per-scale hit statistics: the only trace of its number of scales
    hits = raw.get("quantize.ema_vocab_hit_SV")
    num_scales = (hits.shape[0] if hits is not None else None) if layout.startswith("var") else None
    state, dropped = rename_keys(raw)
    heads = num_heads or RELEASE_NUM_HEADS
    folded = (None, None)
    if layout.endswith("fvq-dit"):
        folded = fold_dit_bridge(state, heads, dit_label)
    elif dit_label is not None:
        raise ValueError(f"dit_label is for DiT-bridge checkpoints; this one is {layout!r}.")
    code_dim = state["quantizer.embedding.weight"].shape[1]
    l2_norm, reason = choose_l2_norm(layout, args, code_dim, codebook_l2_norm)
    inferred = {**infer_config(state, sample_size, heads, layout.startswith("var"), num_scales),
                "codebook_l2_norm": l2_norm}
    model_config = {**inferred, **dict(config)} if config is not None else inferred
    if config is not None and model_config.get("quantizer_type") == inferred.get("quantizer_type") == "multiscale":
        model_config["quantizer_config"] = {**inferred["quantizer_config"], **(config.get("quantizer_config") or {})}
    if model_config.get("quantizer_type") == "multiscale":
        given = "scales" in ((config or {}).get("quantizer_config") or {})
        _check_var_scales(model_config, num_scales, given, source)
    model = FVQModel.from_config(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unknown or wrong:
        details = "; ".join(f"{name}: {keys[:20]}{' ...' if len(keys) > 20 else ''}" for name, keys in
                            (("missing", missing), ("unknown", unknown), ("wrong shape", wrong)) if keys)
        raise ValueError(f"{source} does not fit the {'given' if config else 'inferred'} config ({details}).")
    model.load_state_dict(state, strict=True)
    info = OriginalCheckpointInfo(source, layout, taken, l2_norm, reason, dropped, *folded, args)
    logger.info("Converted %s: layout %s, weights %r, codebook_l2_norm=%s (%s).", source, layout, taken, l2_norm,
                reason)
    return model.eval(), info


def _check_var_scales(config: Mapping, num_scales: int | None, given: bool, source: str) -> None:
    """The scales of a VAR file are not saved: VAR's own are taken when they fit, else the caller must give them;
    either way there must be as many as the file's per-scale statistics have rows."""
    scales = config["quantizer_config"].get("scales")
    grid = config["sample_size"] // 2 ** (len(config["block_out_channels"]) - 1)
    found = f"{num_scales} scales (rows of quantize.ema_vocab_hit_SV)" if num_scales else "no record of its scales"
    if scales is None:
        raise ValueError(f"{source} has {found} at a {grid} x {grid} latent grid, and VAR's scales {VAR_SCALES} do not "
                         f"fit; its scales are not saved. Pass them: config={{'quantizer_config': {{'scales': [..., "
                         f"{grid}]}}}} (fvq-convert --scales ... {grid}).")
    if num_scales is not None and len(scales) != num_scales:
        raise ValueError(f"{source} has {found}, but {'the scales given' if given else 'VAR scales'} {scales} "
                         f"are {len(scales)}.")


def load_original_checkpoint(path_or_repo_id: str | os.PathLike, filename: str | None = None, *,
                             trust_pickle: bool = False, revision: str | None = None, cache_dir: str | None = None,
                             local_files_only: bool | None = None, token: str | bool | None = None, **kwargs):
    """Resolve, read and convert one original checkpoint file; `kwargs` go to `convert_original`."""
    hub = {k: v for k, v in dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                 token=token).items() if v is not None}
    path, source = resolve_file(path_or_repo_id, filename, **hub)
    return convert_original(read_checkpoint(path, trust_pickle), source, **kwargs)
