r"""`fvq-train`: train an FVQ tokenizer (or a baseline) with accelerate, from one CPU to many GPUs and nodes.

    # CPU, minutes: the small config on the photos that ship with scikit-image
    fvq-train --config hub_configs/fvq-cpu-4k --data builtin --output-dir outputs/fvq-cpu-4k --max-steps 1000 --lr 1e-3
    # 8 GPUs, the paper's recipe for the 262k variant (global batch 128 = 8 x 16)
    accelerate launch --multi_gpu --num_processes 8 -m fvq_hf.cli.train --config hub_configs/fvq-262k \
        --data /data/imagenet/train --resolution 256 --batch-size 16 --epochs 40 --warmup-epochs 4 \
        --mixed-precision bf16 --lpips-vgg vgg16.pth --lpips-linear vgg.pth --output-dir runs/fvq-262k
    # 2 nodes x 8 GPUs: the same, with --num_machines 2 --machine_rank R --main_process_ip HOST
    # Resume after a crash or preemption: the same command with --resume
    # Streamed tar shards, EMA weights, an evaluation every 5k steps (README: "Training at scale")
    fvq-train ... --data 'shards/{0000..1023}.tar' --max-steps 400000 --ema-decay 0.9999 --eval-every 5000 \
        --eval-data /data/imagenet/val

The flags build a `fvq_hf.training.TrainConfig` (one field per flag), which `fvq_hf.training.train` runs: the same run
from Python or a notebook is `train(TrainConfig(...))`. Checkpoints are atomic (see `fvq_hf.training.runtime`). The final model is written with `save_pretrained`
to `<output-dir>/model` (as trained) and `<output-dir>/model-folded` (`fold_bridge()`), each with a model
card holding the evaluation measured at the end of training (by every process, `training.evaluation`). With
`--ema-decay` those hold the weights' moving average (`training.ema`) and `<output-dir>/model-raw` the raw ones.
"""

from __future__ import annotations

import argparse
import json

from ..bridges import BRIDGES
from ..evaluation.metrics import metric_weight_options
from ..evaluation.options import EvaluationOptions
from ..quantizers.base import QUANTIZER_PRECISIONS
from ..training.config import BUILTIN_SAMPLES_PER_EPOCH, DISC_FAKES, LoopConfig, LossConfig, TrainConfig
from ..training.trainer import train
from .errors import add_debug_flag, run_command
from .loop_args import add_loop_args, loop_config


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object of config keys: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fvq-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="model config folder (hub_configs/<variant>) or hub id")
    p.add_argument("--init-weights", action="store_true",
                   help="start from the weights stored with --config (fine-tuning) instead of random ones")
    p.add_argument("--init-table", metavar="FILE", help="start the codebook table from this table file "
                   "(fvq-build-codebook's .safetensors, or VQGAN-LC's codebook .pth); its (K, D) must be the config's "
                   "(num_vq_embeddings, table_dim)")
    p.add_argument("--add-bridge", choices=sorted(BRIDGES.names()),
                   help="with --init-weights of a plain codebook (e.g. one converted by fvq-convert): fine-tune with a "
                   "fresh bridge of this type over it")
    p.add_argument("--bridge-config", type=json_object, help="the added bridge's config as JSON, e.g. "
                   "'{\"depth\": 4}' (default: the bridge's defaults)")
    p.add_argument("--data", default="builtin", help="builtin, an image folder, a saved dataset, hf:<name>[:split], "
                   "or webdataset tar shards ('shards/{000..099}.tar', streamed)")
    p.add_argument("--streaming", action="store_true", help="read hf:<name> as a stream (datasets streaming=True), "
                   "each process its own shards; needs --max-steps")
    p.add_argument("--image-column", help="image column of a datasets dataset (default: the first Image column)")
    p.add_argument("--eval-data", nargs="*", help="evaluated at the end and every --eval-every steps (default for "
                   "builtin: builtin:heldout builtin:unseen; none otherwise)")
    p.add_argument("--eval-every", type=int, help="also evaluate every N steps, on every process (default: at the end "
                   "only)")
    p.add_argument("--ema-decay", type=float, help="keep an exponential moving average of the weights with this decay "
                   "(e.g. 0.999); the final model and evaluation use it, the raw weights go to model-raw (default: off)")
    p.add_argument("--ema-warmup", action=argparse.BooleanOptionalAction, default=True,
                   help="with --ema-decay: diffusers' warmup min(decay, (1 + t) / (10 + t)) (default); "
                   "--no-ema-warmup: the decay from the first step, as the FVQ authors' utils/ema.py")
    p.add_argument("--quantizer-precision", choices=QUANTIZER_PRECISIONS,
                   help="under --mixed-precision bf16/fp16: fp32 keeps the quantizer (bridge, search, losses) in fp32, "
                   "the exact nearest code; autocast runs it in the loop's precision, as the FVQ authors' loop "
                   "(default: the model config's quantizer_precision, fp32 unless set)")
    add_loop_args(p, LoopConfig())
    p.add_argument("--resolution", type=int, help="training crop size (default: the config's sample_size)")
    p.add_argument("--samples-per-epoch", type=int, help=f"crops per epoch (default: one per image; "
                   f"{BUILTIN_SAMPLES_PER_EPOCH} for builtin)")
    loss = LossConfig()
    p.add_argument("--reconstruction-weight", type=float, default=loss.reconstruction_weight)
    p.add_argument("--perceptual-weight", type=float, default=loss.perceptual_weight,
                   help="LPIPS weight, when its weights are given")
    p.add_argument("--disc-weight", type=float, default=loss.disc_weight)
    p.add_argument("--disc-start", type=int, default=loss.disc_start, help="step (1-based) at which the PatchGAN loss "
                   "starts (VQGAN-LC's --disc_start D, on after 0-based iteration D, is D + 2 here)")
    p.add_argument("--reconstruction-loss", choices=("l2", "l1"), default=loss.reconstruction_loss,
                   help="l2 (LlamaGen, FVQ) or l1 (taming, VQGAN-LC)")
    p.add_argument("--disc-adaptive", action="store_true", help="taming's adaptive GAN weight (gradient-norm ratio "
                   "at the decoder's last layer, clamped to [0, 1e4]) times --disc-weight, as VQGAN-LC (0.1)")
    p.add_argument("--disc-layers", type=int, default=loss.disc_layers,
                   help="the PatchGAN's layers, taming's n_layers (3: LlamaGen, FVQ; 2: VQGAN-LC)")
    p.add_argument("--disc-fakes", choices=DISC_FAKES, default=loss.disc_fakes, help="what the discriminator learns "
                   "from: the generator step's reconstructions (step: LlamaGen, FVQ) or a second forward's after the "
                   "generator's update (updated: taming, VQGAN-LC)")
    p.add_argument("--perceptual-dropout", type=float, default=loss.perceptual_dropout, help="dropout on LPIPS' "
                   "feature differences in the training loss (0.5: taming, VQGAN-LC, whose LPIPS trains in train mode)")
    for option, text in metric_weight_options().items():  # every registered metric's weight files (the LPIPS ones
        p.add_argument(f"--{option.replace('_', '-')}", dest=option, help=text)  # also give the perceptual loss)
    p.add_argument("--usage-window", type=int, default=100, help="steps in the rolling training-usage indicator")
    p.add_argument("--eval-batch-size", type=int, default=EvaluationOptions().batch_size)
    add_debug_flag(p)
    return p


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed `fvq-train` flags (its checks name the flag of a bad value)."""
    return TrainConfig(
        config=args.config, data=args.data, streaming=args.streaming, image_column=args.image_column,
        init_weights=args.init_weights, init_table=args.init_table, add_bridge=args.add_bridge, bridge_config=args.bridge_config,
        resolution=args.resolution, samples_per_epoch=args.samples_per_epoch, loop=loop_config(args),
        loss=LossConfig(reconstruction_weight=args.reconstruction_weight, perceptual_weight=args.perceptual_weight,
                        disc_weight=args.disc_weight, disc_start=args.disc_start,
                        reconstruction_loss=args.reconstruction_loss, disc_adaptive=args.disc_adaptive,
                        disc_layers=args.disc_layers, disc_fakes=args.disc_fakes,
                        perceptual_dropout=args.perceptual_dropout),
        ema_decay=args.ema_decay, ema_warmup=args.ema_warmup, quantizer_precision=args.quantizer_precision,
        usage_window=args.usage_window, eval_data=args.eval_data, eval_every=args.eval_every,
        evaluation=EvaluationOptions(batch_size=args.eval_batch_size,
                                     weights={option: getattr(args, option) for option in metric_weight_options()
                                              if getattr(args, option)}))


def build_config(argv: list[str] | None = None) -> TrainConfig:
    """`fvq-train`'s command line -> its `TrainConfig`."""
    return train_config(build_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    def command(args: argparse.Namespace) -> None:
        result = train(train_config(args))
        if result.eval:
            print(result.table())

    run_command(build_parser(), argv, command)


if __name__ == "__main__":
    main()
