"""Pushing the `hub_configs/` variants (with trained weights where given), or one converted original tokenizer,
to the Hub; its command is `fvq-publish` (`fvq_hf.cli.publish`).

One module above the models and pipelines it pushes (it loads `FVQModel` and `FVQTransformer` and wraps a tokenizer
in an `FVQPipeline`); the Hub support the models themselves use stays below them, in `hub/`."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import create_repo, upload_folder

from .conversion.original_info import OriginalCheckpointInfo
from .pipelines import FVQPipeline
from .prior import FVQTransformer
from .prior.transformer import DATA_KEYS
from .tokenizer import FVQModel

MODEL_CLASSES = {"FVQModel": FVQModel, "FVQTransformer": FVQTransformer}

HUB_CONFIGS = Path(__file__).resolve().parent / "hub_configs"  # package data; hub_configs/ at the root links here
# Keys that may differ between a hub config and a trained model of the same variant: runtime settings (the
# quantizer's precision under autocast among them), and what a transformer takes from the codes it was trained on.
RUNTIME_KEYS = {"search_chunk_size", "quantizer_precision", "sample_size", "_name_or_path", "_diffusers_version",
                "_class_name", "_use_default_values", *DATA_KEYS}


def check_matches(config: dict, model: FVQModel | FVQTransformer, name: str) -> None:
    """Raise ValueError naming every architecture key where `model` differs from the variant's config."""
    trained = dict(model.config)
    diffs = {k: (v, trained.get(k)) for k, v in config.items()
             if k not in RUNTIME_KEYS and (list(v) if isinstance(v, tuple) else v) !=
             (list(trained.get(k)) if isinstance(trained.get(k), tuple) else trained.get(k))}
    if diffs:
        raise ValueError(f"The weights given for {name} do not match hub_configs/{name}: "
                         + ", ".join(f"{k}: config {a!r} vs weights {b!r}" for k, (a, b) in diffs.items()))


def publish(namespace: str, configs_dir: Path = HUB_CONFIGS, only: list[str] | None = None,
            weights: dict[str, str] | None = None, pipeline: bool = False, private: bool | None = None,
            token: str | None = None) -> list[str]:
    """Push each variant; returns the repo ids written."""
    weights = weights or {}
    if not configs_dir.is_dir():
        raise FileNotFoundError(f"No hub_configs folder at {configs_dir}; pass --configs path/to/hub_configs.")
    folders = sorted(p for p in configs_dir.iterdir() if (p / "config.json").exists())
    names = [p.name for p in folders]
    unknown = sorted(set(only or []) - set(names)) + sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"No hub config named {unknown}; choose from {names}.")
    pushed = []
    for folder in folders:
        if only and folder.name not in only:
            continue
        repo_id = f"{namespace}/{folder.name}"
        if folder.name in weights:
            config = FVQModel.load_config(folder)
            model = MODEL_CLASSES[config["_class_name"]].from_pretrained(weights[folder.name])
            check_matches(config, model, folder.name)
            model.push_to_hub(repo_id, private=private, token=token)
            if pipeline and isinstance(model, FVQModel):
                FVQPipeline(vq=model).push_to_hub(f"{repo_id}-pipeline", private=private, token=token)
                pushed.append(f"{repo_id}-pipeline")
        else:
            create_repo(repo_id, private=private, token=token, exist_ok=True)
            upload_folder(repo_id=repo_id, folder_path=str(folder), token=token,
                          commit_message=f"Config and card of {folder.name}")
        pushed.append(repo_id)
    return pushed


def publish_converted(folder: str | Path, repo_id: str, pipeline: bool = False, private: bool | None = None,
                      token: str | None = None) -> list[str]:
    """Push a tokenizer converted by `fvq-convert` (and `REPO-pipeline` with `pipeline`); returns the repo ids."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"No converted model folder at {folder}; write one with fvq-convert.")
    if OriginalCheckpointInfo.load(folder) is None:
        raise ValueError(f"{folder} holds no original_checkpoint.json, so it is not a converted original: write it "
                         "with fvq-convert, or publish trained weights with --namespace and --weights.")
    model = FVQModel.from_pretrained(folder)
    model.push_to_hub(repo_id, private=private, token=token)
    pushed = [repo_id]
    if pipeline:
        FVQPipeline(vq=model).push_to_hub(f"{repo_id}-pipeline", private=private, token=token)
        pushed.append(f"{repo_id}-pipeline")
    return pushed
