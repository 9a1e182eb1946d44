"""What a training run is, as typed configs: the loop both trainers share (`LoopConfig`), the tokenizer's run
(`TrainConfig`, what `fvq-train` builds from its flags) and the prior's (`TransformerTrainConfig`, what
`fvq-train-transformer` builds) and the latent generator's (`LatentTrainConfig`, `fvq-train-latent`). The command line only builds them; every library function receives the part it uses.

    from fvq_hf.training import LoopConfig, TrainConfig, train

    result = train(TrainConfig(config="hub_configs/fvq-cpu-4k", data="builtin",
                               loop=LoopConfig(output_dir="outputs/fvq-cpu-4k", max_steps=600, lr=3e-4)))
    print(result.table())

Each field is the flag of the same name (`max_steps` is `--max-steps`); values are checked when a config is made, and
an error names the flag.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..data.spec import DataSpec
from ..evaluation.options import EvaluationOptions
from ..quantizers.base import QUANTIZER_PRECISIONS
from .schedule import SCHEDULES

MIXED_PRECISIONS = ("no", "bf16", "fp16")
# What the discriminator learns from: the generator step's reconstructions, or a second forward's after its update.
DISC_FAKES = ("step", "updated")
# Crops per epoch of the builtin photos: 14 photos would make epochs of one batch.
BUILTIN_SAMPLES_PER_EPOCH = 2048


def _at_least_one(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}.")


@dataclass
class LoopConfig:
    """The optimisation loop of both trainers: output folder, batch, length, learning annealing, Adam's betas,
    precision, checkpoints and logging. The defaults are `fvq-train`'s (`transformer_loop()` gives
    `fvq-train-transformer`'s).

    `batch_size` is per process (global = batch x processes x accumulation); `max_steps` (optimizer steps) overrides
    `epochs`; warmup is `warmup_epochs` if given, else `warmup_fraction` of the run; Adam's `beta1`, `beta2`,
    `adam_eps` (VQGAN-LC: 0.5, 0.9, 1e-7); `max_grad_norm` clips the gradient norm (inf: no clipping, as VQGAN-LC);
    `mixed_precision` None is bf16 on GPU and no on CPU; `stop_after` checkpoints and stops after that many steps of
    this run (continue with `resume`); `report_to` is an accelerate tracker or "none".
    """

    output_dir: str = "outputs/fvq"
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    max_steps: int | None = None
    epochs: int = 40
    lr: float = 1e-4
    schedule: str = "lin"
    warmup_epochs: float | None = None
    warmup_fraction: float = 0.1
    constant_fraction: float = 0.3
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    compile: bool = False
    mixed_precision: str | None = None
    num_workers: int = 2
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 1000
    checkpoints_total_limit: int = 2
    resume: bool = False
    stop_after: int | None = None
    report_to: str = "tensorboard"

    def __post_init__(self) -> None:
        _at_least_one(self, "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every",
                      "checkpoints_total_limit", "max_steps", "stop_after", "epochs")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0 (the peak learning rate), got {self.lr}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule {self.schedule!r}: choose one of {', '.join(SCHEDULES)}.")
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"--mixed-precision {self.mixed_precision!r}: choose one of {', '.join(MIXED_PRECISIONS)}.")
        if self.num_workers < 0:
            raise ValueError(f"--num-workers must be >= 0, got {self.num_workers}.")
        if not self.adam_eps > 0:
            raise ValueError(f"--adam-eps must be > 0 (Adam's epsilon, e.g. 1e-8), got {self.adam_eps}.")
        if not self.max_grad_norm > 0:
            raise ValueError(f"--max-grad-norm must be > 0 (inf: no clipping), got {self.max_grad_norm}.")


def transformer_loop(**changes) -> LoopConfig:
    """`fvq-train-transformer`'s loop defaults (LlamaGen's c2i recipe: batch 32 per process, 300 epochs, constant
    learning rate, no warmup), with `changes`."""
    defaults = dict(output_dir="outputs/fvq-gpt", batch_size=32, epochs=300, schedule="const", warmup_fraction=0.0)
    return LoopConfig(**{**defaults, **changes})


@dataclass
class LossConfig:
    """The tokenizer's loss weights (`losses.TokenizerLoss`, which checks them): L2 (or `reconstruction_loss` "l1")
    reconstruction, LPIPS (when its weights are given), and the PatchGAN loss from step `disc_start` on, at
    `disc_weight` or (`disc_adaptive`) taming's adaptive weight times it.

    The discriminator has `disc_layers` layers (taming's `n_layers`: 3 in LlamaGen and FVQ, 2 in VQGAN-LC) and learns from
    `disc_fakes`: "step", the reconstructions of the generator's step (LlamaGen, FVQ), or "updated", those of a second
    forward pass after the generator's update (taming's and VQGAN-LC's loops; one more forward, without gradients).
    `perceptual_dropout`: the dropout rate on LPIPS' feature differences during training (0: none; 0.5 is taming's
    and VQGAN-LC's, whose training mode reaches their LPIPS heads' `Dropout()`).

    VQGAN-LC's recipe (`hub_configs/vqgan-lc-*`): l1, adaptive, disc_weight 0.1, disc_layers 2, disc_fakes "updated",
    perceptual_dropout 0.5, and `disc_start` = their `--disc_start` + 2 (their GAN is on when the 0-based iteration
    exceeds it; here when the 1-based step reaches it: their 50,000 is 50,002 here).
    """

    reconstruction_weight: float = 1.0
    perceptual_weight: float = 1.0
    disc_weight: float = 0.5
    disc_start: int = 20000
    reconstruction_loss: str = "l2"
    disc_adaptive: bool = False
    disc_layers: int = 3
    disc_fakes: str = "step"
    perceptual_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.disc_layers < 1:
            raise ValueError(f"--disc-layers must be >= 1 (the PatchGAN's layers, taming's n_layers), got {self.disc_layers}.")
        if self.disc_fakes not in DISC_FAKES:
            raise ValueError(f"--disc-fakes {self.disc_fakes!r}: choose one of {', '.join(DISC_FAKES)}.")
        if not 0 <= self.perceptual_dropout < 1:
            raise ValueError(f"--perceptual-dropout must lie in [0, 1), got {self.perceptual_dropout}.")


@dataclass
class TrainConfig:
    """What `train` runs (`fvq-train`'s flags).

    `config`: a model config folder (`hub_configs/<variant>`) or hub id; with `init_weights` its stored weights are
    the start (fine-tuning), and `add_bridge` / `bridge_config` put a fresh bridge on a plain codebook. `init_table`:
    a table file (`fvq-build-codebook`'s, or VQGAN-LC's `.pth`) the learnable table starts from (`FVQModel.load_table`). `data` is a
    `--data` value (text or `DataSpec`; `streaming` reads `hf:` data as a stream; streams need `loop.max_steps`).
    `resolution` is the training crop (default: the config's sample_size); `samples_per_epoch` the crops per epoch
    (default: one per image, `BUILTIN_SAMPLES_PER_EPOCH` for the builtin photos). `eval_data` are evaluated at the
    end and, with `eval_every`, every that many steps (default: builtin:heldout and builtin:unseen for builtin data,
    none otherwise), with `evaluation`'s options (whose `image_column` defaults to `image_column`); its `weights`
    (metric weight files) also give the perceptual loss its LPIPS files. `ema_decay` keeps diffusers' EMA of the
    weights, with its warmup or (`ema_warmup` False) at a constant decay from the first step, as the FVQ authors'
    code; `quantizer_precision` sets the model's (`FVQModel`'s key of that name: "fp32" keeps the quantizer out of
    mixed precision, "autocast" runs it under the loop's as the FVQ authors' loop does; None: as the config says);
    `usage_window` is the rolling usage indicator's length in steps.
    """

    config: str
    data: DataSpec | str = "builtin"
    streaming: bool = False
    image_column: str | None = None
    init_weights: bool = False
    init_table: str | None = None
    add_bridge: str | None = None
    bridge_config: dict | None = None
    resolution: int | None = None
    samples_per_epoch: int | None = None
    loop: LoopConfig = field(default_factory=LoopConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    ema_decay: float | None = None
    ema_warmup: bool = True
    quantizer_precision: str | None = None
    usage_window: int = 100
    eval_data: list[str] | None = None
    eval_every: int | None = None
    evaluation: EvaluationOptions = field(default_factory=EvaluationOptions)

    def __post_init__(self) -> None:
        self.data = DataSpec.parse(self.data, self.streaming)
        self.streaming = self.data.streaming
        if self.evaluation.image_column is None and self.image_column is not None:  # the evaluation data's too
            self.evaluation = dataclasses.replace(self.evaluation, image_column=self.image_column)
        if self.eval_data is None:
            self.eval_data = ["builtin:heldout", "builtin:unseen"] if self.data.is_builtin else []
        for data in self.eval_data:
            try:
                DataSpec.parse(data)
            except ValueError as error:
                raise ValueError(f"--eval-data: {error}") from None
        self.eval_data = list(self.eval_data)
        _at_least_one(self, "usage_window", "eval_every", "resolution", "samples_per_epoch")
        if (self.add_bridge or self.bridge_config) and not self.init_weights:
            raise ValueError("--add-bridge puts a bridge on trained weights: it needs --init-weights (to train a "
                             "bridged model from scratch, set bridge_type in the config).")
        if self.bridge_config and not self.add_bridge:
            raise ValueError("--bridge-config configures the bridge of --add-bridge; pass --add-bridge too.")
        if self.streaming:
            if self.loop.max_steps is None:
                raise ValueError(f"Streamed data ({self.data}) has no known epoch length: pass --max-steps.")
            for name, value in (("warmup_epochs", self.loop.warmup_epochs), ("samples_per_epoch", self.samples_per_epoch)):
                if value is not None:
                    raise ValueError(f"--{name.replace('_', '-')} does not apply to streamed data ({self.data}), "
                                     "whose epoch length is unknown: use --max-steps and --warmup-fraction.")
        if self.quantizer_precision not in (None, *QUANTIZER_PRECISIONS):
            raise ValueError(f"--quantizer-precision {self.quantizer_precision!r}: choose one of "
                             f"{', '.join(QUANTIZER_PRECISIONS)}.")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"--ema-decay must lie in (0, 1) (e.g. 0.999), got {self.ema_decay}.")

    def to_dict(self) -> dict:
        """JSON-safe, as recorded in `<output-dir>/train_config.json`: the data as its `--data` text."""
        return {**dataclasses.asdict(self), "data": str(self.data)}


@dataclass
class TransformerTrainConfig:
    """What the prior's `train` runs (`fvq-train-transformer`'s flags).

    `config`: a transformer preset (`hub_configs/fvq-gpt-*`) or hub id (`init_weights`: start from its weights);
    `codes`: a codes folder of `fvq-extract-codes` (its vocabulary, classes and grid override the preset's);
    `eval_codes`: held-out codes whose next-token loss is measured at the end; `tokenizer`: the tokenizer of the
    saved pipeline and samples (default: the codes'). Labels become the null class with probability `class_dropout`
    (LlamaGen's 0.1); `sample_guidance` is the guidance scale of `samples.png`.
    """

    config: str
    codes: str
    eval_codes: str | None = None
    tokenizer: str | None = None
    init_weights: bool = False
    loop: LoopConfig = field(default_factory=transformer_loop)
    weight_decay: float = 0.05
    class_dropout: float = 0.1
    sample_guidance: float = 4.0
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        if not 0 <= self.class_dropout < 1:
            raise ValueError(f"--class-dropout must lie in [0, 1), got {self.class_dropout}.")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}.")
        _at_least_one(self, "eval_batch_size")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def latent_loop(**changes) -> LoopConfig:
    """`fvq-train-latent`'s loop defaults (DiT's recipe: AdamW lr 1e-4 constant, betas (0.9, 0.999), no warmup;
    batch 32 per process), with `changes`."""
    defaults = dict(output_dir="outputs/fvq-latent", batch_size=32, epochs=100, lr=1e-4, schedule="const",
                    warmup_fraction=0.0, beta2=0.999)
    return LoopConfig(**{**defaults, **changes})


@dataclass
class LatentTrainConfig:
    """What the latent generator's `train` runs (`fvq-train-latent`'s flags).

    `config`: a latent generator preset (`hub_configs/latent-*`: `transformer/` or `unet/`, and `scheduler/`) or a
    trained pipeline folder (`init_weights`: start from its weights); `latents`: a codes folder extracted with
    `fvq-extract-codes --latents` (its latent shape and classes override the preset's); `eval_latents`: held-out
    latents whose denoising loss is measured at the end (and every `eval_every` steps); `tokenizer`: the pipeline's
    tokenizer (default: the latents'). `scaling_factor`: what the latents are multiplied by (None: measured, 1 / their
    std over the training latents, and stored in the tokenizer's config). Labels become the null class with
    probability `class_dropout`; `ema_decay` keeps an EMA of the weights (DiT: 0.9999), whose weights are saved;
    `sampler`, `sample_steps`, `sample_guidance`, `samples_per_class` and `quantize_samples` make `samples.png`.
    """

    config: str
    latents: str
    eval_latents: str | None = None
    tokenizer: str | None = None
    init_weights: bool = False
    loop: LoopConfig = field(default_factory=latent_loop)
    weight_decay: float = 0.0
    class_dropout: float = 0.1
    scaling_factor: float | None = None
    ema_decay: float | None = None
    ema_warmup: bool = True
    eval_every: int | None = None
    eval_batch_size: int = 64
    eval_draws: int = 4
    sampler: str | None = None
    sample_steps: int = 50
    sample_guidance: float = 4.0
    samples_per_class: int = 4
    quantize_samples: bool = True

    def __post_init__(self) -> None:
        from ..diffusion.schedulers import SAMPLER_NAMES

        if not 0 <= self.class_dropout < 1:
            raise ValueError(f"--class-dropout must lie in [0, 1), got {self.class_dropout}.")
        if self.weight_decay < 0:
            raise ValueError(f"--weight-decay must be >= 0, got {self.weight_decay}.")
        if self.scaling_factor is not None and not (self.scaling_factor > 0 and math.isfinite(self.scaling_factor)):
            raise ValueError(f"--scaling-factor must be a finite number > 0 (the latents are multiplied by it, and "
                             f"samples divided by it), got {self.scaling_factor}.")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"--ema-decay must lie in (0, 1) (e.g. 0.9999), got {self.ema_decay}.")
        if self.sampler is not None and self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"--sampler {self.sampler!r}: choose one of {', '.join(SAMPLER_NAMES)}.")
        if self.sample_guidance < 1:
            raise ValueError(f"--sample-guidance must be >= 1 (1: no guidance), got {self.sample_guidance}.")
        _at_least_one(self, "eval_every", "eval_batch_size", "eval_draws", "sample_steps", "samples_per_class")
        if self.eval_every is not None and not self.eval_latents:
            raise ValueError("--eval-every evaluates the held-out latents: give --eval-latents too.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def flat_scalars(record: Mapping, prefix: str = "") -> dict:
    """The int, float and str values of a nested config record as `loop.lr`-style keys (for trackers' hparams)."""
    flat = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat.update(flat_scalars(value, f"{prefix}{key}."))
        elif isinstance(value, bool | int | float | str):
            flat[f"{prefix}{key}"] = value
    return flat
