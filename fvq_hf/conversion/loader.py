"""Read a checkpoint of the original tokenizer code (a local file or a file in a Hub repo) into an `FVQModel`.

`FVQModel.from_original_checkpoint` is the way in; `fvq-convert` is its command line. What the conversion
decided (layout, which weights, the l2-norm rule and why, and what the layout decided with its options) is returned
as an `OriginalCheckpointInfo` (`original_info`), which `fvq-convert` saves next to the converted weights for the card.
The loader is generic: what differs between layouts is theirs (`layouts`), their options included.
"""

from __future__ import annotations

import argparse
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

from .layouts import detect_layout, layout_options
from .original_info import OriginalCheckpointInfo

logger = logging.getLogger(__name__)

WEIGHT_ENTRIES = ("ema", "model", "state_dict")  # the authors' eval and convert scripts take them in this order


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
                     config: Mapping | None = None, codebook_l2_norm: bool | None = None, sample_size: int = 256,
                     **options):
    """A `model_class` (`FVQModel`, eval mode) holding the weights of an original checkpoint mapping, and what was
    decided. The file's layout (`layouts`) renames its keys, infers the config and says the l2-norm rule.

    `options` are the layout's own (`Layout.Options`: a DiT bridge's `dit_label`, `keep_bridge`, `num_heads`, ...);
    one that the file's layout does not take is a ValueError naming the options it takes."""
    raw, taken = select_state(checkpoint, weights)
    args = checkpoint_args(checkpoint) if taken != "bare" else None
    layout = detect_layout(raw)
    chosen = layout_options(layout, options)
    state, dropped = layout.rename(raw)
    inferred, decisions = layout.convert(state, sample_size, chosen)
    inferred, from_args = layout.read_args(inferred, args)
    decisions = {**decisions, **from_args}
    l2_norm, reason = layout.choose_l2_norm(args, inferred["vq_embed_dim"], codebook_l2_norm)
    inferred["codebook_l2_norm"] = l2_norm
    model_config = {**inferred, **dict(config)} if config is not None else inferred
    if config is not None and model_config.get("quantizer_type") == inferred.get("quantizer_type"):
        model_config["quantizer_config"] = {**(inferred.get("quantizer_config") or {}),
                                            **(config.get("quantizer_config") or {})}
    layout.check_config(model_config, config, source)
    model = model_class.from_config(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unknown or wrong:  # named as the file names them
        details = "; ".join(f"{name}: {[layout.original_key(k) for k in keys[:20]]}{' ...' if len(keys) > 20 else ''}"
                            for name, keys in (("missing", missing), ("unknown", unknown), ("wrong shape", wrong))
                            if keys)
        raise ValueError(f"{source} does not fit the {'given' if config else 'inferred'} config ({details}).")
    model.load_state_dict(state, strict=True)
    info = OriginalCheckpointInfo(source, layout.name, taken, l2_norm, reason, dropped, args, layout.origin or None,
                                  decisions)
    logger.info("Converted %s: layout %s, weights %r, codebook_l2_norm=%s (%s).", source, layout.name, taken, l2_norm,
                reason)
    return model.eval(), info


def load_original_checkpoint(path_or_repo_id: str | os.PathLike, filename: str | None = None, *,
                             trust_pickle: bool = False, revision: str | None = None, cache_dir: str | None = None,
                             local_files_only: bool | None = None, token: str | bool | None = None, **kwargs):
    """Resolve, read and convert one original checkpoint file; `kwargs` go to `convert_original` (`model_class`, the
    generic keywords and the layout's options)."""
    hub = {k: v for k, v in dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only,
                                 token=token).items() if v is not None}
    path, source = resolve_file(path_or_repo_id, filename, **hub)
    return convert_original(read_checkpoint(path, trust_pickle), source, **kwargs)
