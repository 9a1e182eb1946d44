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

from ..publishing import HUB_CONFIGS, publish, publish_converted
from .errors import add_debug_flag, run_command


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
