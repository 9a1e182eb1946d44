"""`fvq-publish`: push the `hub_configs/` variants to a Hub namespace, with trained weights where given; or push
one converted original tokenizer.

    fvq-publish --namespace my-org                                  # every variant, config and card only
    fvq-publish --namespace my-org --only fvq-262k --weights fvq-262k=runs/fvq-262k/model --pipeline
    fvq-publish --converted converted/llamagen-vq16 --repo-id my-org/llamagen-vq16 --pipeline

A variant without weights is pushed as its config.json and model card (`FVQModel.load_config("my-org/fvq-262k")`
works; `from_pretrained` needs weights). With `--weights NAME=FOLDER`, the trained model in FOLDER is
checked against the variant's config and pushed with a card holding its measured metrics; `--pipeline`
also pushes `NAME-pipeline` as an `FVQPipeline` (tokenizers only). Transformer presets (fvq-gpt-*) take
their weights the same way; a generation pipeline is pushed with `FVQGenerationPipeline.push_to_hub`.

`--converted FOLDER` takes what `fvq-convert` wrote: its card says where the weights come from, their licence
status and the original authors' reported numbers (marked as theirs), and the metrics of `fvq-eval` if any.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from huggingface_hub import create_repo, upload_folder

from .cli import add_debug_flag, run_command
from .models import FVQModel, FVQTransformer
from .models.original_checkpoint import OriginalCheckpointInfo
from .models.transformer import DATA_KEYS
from .pipelines import FVQPipeline

MODEL_CLASSES = {"FVQModel": FVQModel, "FVQTransformer": FVQTransformer}

HUB_CONFIGS = Path(__file__).resolve().parent / "hub_configs"  # package data; hub_configs/ at the root links here
# Keys that may differ between a hub config and a trained model of the same variant: runtime settings, and
# what a transformer takes from the codes it was trained on.
RUNTIME_KEYS = {"search_chunk_size", "sample_size", "_name_or_path", "_diffusers_version", "_class_name",
                "_use_default_values", *DATA_KEYS}


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fvq-publish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--converted", help="a folder written by fvq-convert (needs --repo-id)")
    parser.add_argument("--repo-id", help="where to push --converted, e.g. my-org/llamagen-vq16")
    parser.add_argument("--namespace", help="your user or organisation on the Hub (for hub_configs/ variants)")
    parser.add_argument("--configs", default=str(HUB_CONFIGS), help="folder of variants (default: hub_configs/)")
    parser.add_argument("--only", nargs="+", help="push only these variants")
    parser.add_argument("--weights", nargs="+", default=[], metavar="NAME=FOLDER",
                        help="trained model folder for a variant, e.g. fvq-262k=runs/fvq-262k/model")
    parser.add_argument("--pipeline", action="store_true", help="also push NAME-pipeline for variants with weights")
    parser.add_argument("--private", action="store_true")
    add_debug_flag(parser)

    def command(args: argparse.Namespace) -> None:
        if bool(args.converted) != bool(args.repo_id) or bool(args.converted) == bool(args.namespace):
            raise ValueError("give either --namespace (hub_configs/ variants) or --converted FOLDER with --repo-id.")
        pairs = [w.partition("=") for w in args.weights]
        if any(not sep or not folder for _, sep, folder in pairs):
            raise ValueError(f"--weights takes NAME=FOLDER pairs, got {args.weights}.")
        pushed = publish_converted(args.converted, args.repo_id, args.pipeline, args.private or None) \
            if args.converted else publish(args.namespace, Path(args.configs), args.only,
                                           {n: f for n, _, f in pairs}, args.pipeline, args.private or None)
        for repo_id in pushed:
            print(f"pushed {repo_id}")

    run_command(parser, argv, command)


if __name__ == "__main__":
    main()
