"""`fvq-eval`: measure a tokenizer over all tokens of a data set.

    fvq-eval --model outputs/fvq-cpu-4k/model --data builtin:unseen --json eval.json --save-usage usage.json

Reports usage (distinct codes / K over every token), perplexity, num_tokens, PSNR and SSIM, and LPIPS /
rFID when their weights are available; when they are not, the JSON's `notes` and stderr say what is
missing, and no value is reported for them. For a residual or multi-scale tokenizer, a second table (and the
JSON's `levels`) gives usage, perplexity and tokens per code of each depth or scale, and the usage file holds
each level's counts. Each metric's weight files are its own flags (`--lpips-vgg`, `--lpips-linear`,
`--inception-weights`: the options the metrics declare).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from ..evaluation.evaluate import format_level_table, format_table, load_model, run_evaluation
from ..evaluation.metrics import metric_weight_options
from ..evaluation.options import EvaluationOptions
from ..evaluation.usage import CodeCounter, save_usage_file
from .errors import add_debug_flag, run_command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fvq-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder, training output folder, or hub id")
    parser.add_argument("--data", required=True, nargs="+",
                        help="builtin[:train|heldout|unseen], an image folder, a saved dataset, or hf:<name>")
    parser.add_argument("--json", help="write the metrics here")
    parser.add_argument("--save-usage", help="write per-code counts (JSON; per level too, for a residual or "
                        "multi-scale tokenizer) here, for the Space's heatmap")
    parser.add_argument("--resolution", type=int, help="default: the model's sample_size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--split", default="validation", help="split of a datasets dataset")
    parser.add_argument("--image-column")
    parser.add_argument("--limit", type=int, help="evaluate at most this many images")
    for option, help in metric_weight_options().items():
        parser.add_argument(f"--{option.replace('_', '-')}", help=help)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_debug_flag(parser)
    run_command(parser, argv, command)


def command(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    options = EvaluationOptions(batch_size=args.batch_size, resolution=args.resolution, split=args.split,
                                image_column=args.image_column, limit=args.limit,
                                weights={option: getattr(args, option) for option in metric_weight_options()})
    model = load_model(args.model, args.device)
    results, counter = {}, CodeCounter.for_ids(model.quantizer.ids, model.codebook_size, args.device)
    for data in args.data:
        metrics, counts = run_evaluation(model, data, options, model_name=args.model)
        results[data] = metrics
        counter.merge(counts)
    print(format_table(results))
    levels = format_level_table(results)  # "" for ids without levels
    if levels:
        print(f"\n{levels}")
    if args.json:
        Path(args.json).write_text(json.dumps(results if len(results) > 1 else results[args.data[0]], indent=2))
    if args.save_usage:
        save_usage_file(args.save_usage, counter, args.model, ",".join(args.data))


if __name__ == "__main__":
    main()
