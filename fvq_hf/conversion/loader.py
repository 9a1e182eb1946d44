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
from .layouts import RELEASE_NUM_HEADS, detect_layout

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
    # A DiT bridge kept trainable (`keep_bridge`) instead of folded; its label is in the config.
    kept_bridge: bool = False

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


def convert_original(checkpoint: Mapping, source: str = "<memory>", *, model_class: type, weights: str = "auto",
                     config: Mapping | None = None, codebook_l2_norm: bool | None = None, num_heads: int | None = None,
                     sample_size: int = 256, dit_label: int | None = None, keep_bridge: bool = False):
    """A `model_class` (`FVQModel`, eval mode) holding the weights of an original checkpoint mapping, and what was
    decided. The file's layout (`layouts`) renames its keys, infers the config and says the l2-norm rule.

    A DiT bridge is folded into a plain codebook at `dit_label` (inference); `keep_bridge=True` keeps it as
    `bridge_type="dit"` at that label, to train or fine-tune it."""
    raw, taken = select_state(checkpoint, weights)
    args = checkpoint_args(checkpoint) if taken != "bare" else None
    layout = detect_layout(raw)
    num_scales = layout.num_scales(raw)
    state, dropped = layout.rename(raw)
    heads = num_heads or RELEASE_NUM_HEADS
    label, label_reason = layout.prepare(state, heads, dit_label, keep_bridge)
    code_dim = state["quantizer.embedding.weight"].shape[1]
    l2_norm, reason = layout.choose_l2_norm(args, code_dim, codebook_l2_norm)
    inferred = {**layout.infer_config(state, sample_size, heads, num_scales), "codebook_l2_norm": l2_norm}
    if keep_bridge and label is not None:
        inferred["bridge_config"] = {**inferred["bridge_config"], "label": label}
    model_config = {**inferred, **dict(config)} if config is not None else inferred
    given_quantizer = (config or {}).get("quantizer_config") or {}
    if config is not None and model_config.get("quantizer_type") == inferred.get("quantizer_type"):
        model_config["quantizer_config"] = {**(inferred.get("quantizer_config") or {}), **given_quantizer}
    layout.check_config(model_config, num_scales, "scales" in given_quantizer, source)
    model = model_class.from_config(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unknown or wrong:
        details = "; ".join(f"{name}: {keys[:20]}{' ...' if len(keys) > 20 else ''}" for name, keys in
                            (("missing", missing), ("unknown", unknown), ("wrong shape", wrong)) if keys)
        raise ValueError(f"{source} does not fit the {'given' if config else 'inferred'} config ({details}).")
    model.load_state_dict(state, strict=True)
    folded = (None, None) if keep_bridge else (label, label_reason)
    info = OriginalCheckpointInfo(source, layout.name, taken, l2_norm, reason, dropped, *folded, args, keep_bridge)
    logger.info("Converted %s: layout %s, weights %r, codebook_l2_norm=%s (%s).", source, layout.name, taken, l2_norm,
                reason)
    return model.eval(), info


def load_original_checkpoint(path_or_repo_id: str | os.PathLike, filename: str | None = None, *,
                             trust_pickle: bool = False, revision: str | None = None, cache_dir: str | None = None,
                             local_files_only: bool | None = None, token: str | bool | None = None, **kwargs):
    """Resolve, read and convert one original checkpoint file; `kwargs` go to `convert_original` (with `model_class`)."""
    hub = {k: v for k, v in dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                 token=token).items() if v is not None}
    path, source = resolve_file(path_or_repo_id, filename, **hub)
    return convert_original(read_checkpoint(path, trust_pickle), source, **kwargs)
