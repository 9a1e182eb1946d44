r"""`fvq-train-transformer`: train a class-conditional FVQTransformer on extracted codes, with accelerate.

    # CPU, minutes: codes of the builtin photos (see fvq-extract-codes), the small preset
    fvq-train-transformer --config hub_configs/fvq-gpt-cpu --codes outputs/codes-cpu-4k \
        --eval-codes outputs/codes-cpu-4k-heldout --output-dir outputs/fvq-gpt-cpu --max-steps 1500 --lr 1e-3
    # 8 GPUs, LlamaGen's c2i recipe (global batch 256 = 8 x 32, AdamW lr 1e-4, wd 0.05, 300 epochs, constant lr)
    accelerate launch --multi_gpu --num_processes 8 -m fvq_hf.cli.train_transformer --config hub_configs/fvq-gpt-b \
        --codes codes/imagenet-256 --batch-size 32 --epochs 300 --output-dir runs/fvq-262k-gpt-b
    # Resume after a crash or preemption: the same command with --resume

The vocabulary, class count, class names and token grid come from the codes (`meta.json`): a preset fixes
the architecture, the data fixes those. Labels are replaced by the null class with probability
`--class-dropout` (0.1, as LlamaGen) so that the model also learns the unconditional branch of guidance.
At the end `<output-dir>/transformer` holds the model and its card (with the held-out next-token loss of
`--eval-codes`), `<output-dir>/pipeline` an `FVQGenerationPipeline` with the tokenizer the codes were
extracted with, and `<output-dir>/samples.png` one sample per class.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..training.config import TransformerTrainConfig, transformer_loop
from ..training.transformer_trainer import train
from .errors import add_debug_flag, run_command
from .loop_args import add_loop_args, loop_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fvq-train-transformer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="transformer config folder (hub_configs/fvq-gpt-*) or hub id")
    p.add_argument("--init-weights", action="store_true",
                   help="start from the weights stored with --config (fine-tuning) instead of random ones")
    p.add_argument("--codes", required=True, help="training codes folder written by fvq-extract-codes")
    p.add_argument("--eval-codes", help="held-out codes folder: its next-token loss is measured at the end")
    p.add_argument("--tokenizer", help="tokenizer for the saved pipeline and samples (default: the codes' tokenizer)")
    add_loop_args(p, transformer_loop())
    defaults = {f.name: f.default for f in dataclasses.fields(TransformerTrainConfig)}
    p.add_argument("--weight-decay", type=float, default=defaults["weight_decay"],
                   help="AdamW decay of matrices and embeddings")
    p.add_argument("--class-dropout", type=float, default=defaults["class_dropout"],
                   help="probability of training a label as null")
    p.add_argument("--sample-guidance", type=float, default=defaults["sample_guidance"],
                   help="guidance scale of samples.png")
    p.add_argument("--eval-batch-size", type=int, default=defaults["eval_batch_size"])
    add_debug_flag(p)
    return p


def train_config(args: argparse.Namespace) -> TransformerTrainConfig:
    """The `TransformerTrainConfig` of parsed flags (its checks name the flag of a bad value)."""
    return TransformerTrainConfig(
        config=args.config, codes=args.codes, eval_codes=args.eval_codes, tokenizer=args.tokenizer,
        init_weights=args.init_weights, loop=loop_config(args), weight_decay=args.weight_decay,
        class_dropout=args.class_dropout, sample_guidance=args.sample_guidance, eval_batch_size=args.eval_batch_size)


def build_config(argv: list[str] | None = None) -> TransformerTrainConfig:
    """`fvq-train-transformer`'s command line -> its `TransformerTrainConfig`."""
    return train_config(build_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    run_command(build_parser(), argv, lambda args: train(train_config(args)))


if __name__ == "__main__":
    main()
