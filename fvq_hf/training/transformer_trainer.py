"""Training a class-conditional FVQTransformer on extracted codes with accelerate: `train(TransformerTrainConfig(...))`
runs the loop that `fvq-train-transformer` (`fvq_hf.cli.train_transformer`) starts.

The vocabulary, class count, class names and token grid come from the codes (`meta.json`): a preset fixes
the architecture, the data fixes those. Labels are replaced by the null class with probability
`class_dropout` (0.1, as LlamaGen) so that the model also learns the unconditional branch of guidance.
At the end `<output-dir>/transformer` holds the model and its card, `<output-dir>/pipeline` an
`FVQGenerationPipeline` and `<output-dir>/samples.png` one sample per class.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from ..data.tokens import TokenDataset
from ..hub.evaluation_file import save_evaluation
from ..hub.model_card import generator_card
from ..pipelines import FVQGenerationPipeline
from ..prior import FVQTransformer
from ..prior.transformer import DATA_KEYS, next_token_loss
from ..tokenizer import FVQModel
from . import runtime
from .config import TransformerTrainConfig

logger = logging.getLogger(__name__)


def build_model(run: TransformerTrainConfig, data: TokenDataset) -> FVQTransformer:
    """The preset's architecture with the data facts of the codes; --init-weights must already match them."""
    config = runtime.load_config(run.config, FVQTransformer, "a transformer preset, hub_configs/fvq-gpt-*")
    facts = dict(zip(DATA_KEYS, (data.codebook_size, data.num_classes, list(data.token_grid_size),
                                 data.meta.class_names), strict=True))
    changed = {k: (config.get(k), v) for k, v in facts.items() if config.get(k) != v}
    if run.init_weights:
        model = FVQTransformer.from_pretrained(run.config)
        if changed:
            raise ValueError(f"--init-weights: the weights of {run.config} do not fit the codes {run.codes}: "
                             + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in changed.items() if k != "class_names"))
        return model
    for key in ("vocab_size", "num_classes", "token_grid_size"):
        if key in changed:
            logger.info("%s = %s from the codes (the preset says %s).", key, changed[key][1], changed[key][0])
    return FVQTransformer.from_config({**config, **facts})


def optimizer_for(model: FVQTransformer, weight_decay: float, lr: float, betas: tuple[float, float],
                  eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW decaying matrices and embeddings, not norms (LlamaGen's grouping)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=torch.cuda.is_available() or None)


@torch.no_grad()
def evaluate_loss(model: FVQTransformer, folder: str | Path, batch_size: int, device) -> dict:
    """Teacher-forced next-token loss over every sample and view of a codes folder, with and without labels."""
    data = TokenDataset(folder, all_views=True)
    if (data.codebook_size, data.token_grid_size) != (model.config.vocab_size, model.config.token_grid_size):
        raise ValueError(f"--eval-codes {folder} were extracted with another tokenizer (K = {data.codebook_size}, grid "
                         f"{data.token_grid_size}) than the training codes (K = {model.config.vocab_size}, grid "
                         f"{model.config.token_grid_size}).")
    if data.meta.class_names != model.config.class_names:
        raise ValueError(f"--eval-codes {folder} name other classes than the training codes.")
    model.eval()
    total, unconditional, count = 0.0, 0.0, 0
    for tokens, labels in DataLoader(data, batch_size=batch_size):
        tokens, labels = tokens.to(device), labels.to(device)
        total += next_token_loss(model, tokens, labels).item() * tokens.numel()
        # The same tokens scored with the null class: the gap is what the class label tells the model.
        null = torch.full_like(labels, model.null_class)
        unconditional += next_token_loss(model, tokens, null).item() * tokens.numel()
        count += tokens.numel()
    return {"loss": total / count, "token_perplexity": math.exp(total / count),
            "loss_unconditional": unconditional / count, "num_tokens": count}


@dataclass
class TransformerTrainResult:
    """What a run returns on every process: the steps taken, the last training loss (mean over processes), the
    held-out losses of `eval_codes` (main process, when the run finished), the model, and the rank of `world_size`."""

    step: int
    loss: float
    eval: dict
    model: FVQTransformer
    rank: int = 0
    world_size: int = 1


def train(config: TransformerTrainConfig) -> TransformerTrainResult:
    """Run training (and the final evaluation) as `config` says; returns the last step, losses and the model."""
    loop, out = config.loop, Path(config.loop.output_dir)
    accelerator, mixed_precision = runtime.make_accelerator(loop)
    set_seed(loop.seed)

    # ---- data, model, optimizer -----------------------------------------------------------------------------
    data = TokenDataset(config.codes, seed=loop.seed)
    model = build_model(config, data)
    if loop.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    optimizer = optimizer_for(model, config.weight_decay, loop.lr, (loop.beta1, loop.beta2), loop.adam_eps)
    model, optimizer, loader, unwrapped, schedule = runtime.prepare_loop(accelerator, loop, data, model, optimizer)

    state = runtime.start_run(accelerator, loop, "fvq-gpt", config.to_dict())
    global_batch = loop.batch_size * accelerator.num_processes * loop.gradient_accumulation_steps
    logger.info("%s: %.1fM parameters, %d samples, %d steps (%d per epoch), global batch %d, %d processes, %s",
                config.config, sum(p.numel() for p in unwrapped.parameters()) / 1e6, len(data), schedule.total,
                schedule.steps_per_epoch, global_batch, accelerator.num_processes, mixed_precision)

    # ---- one step: next-token loss, with some labels dropped to the null class ------------------------------
    def step(batch: tuple[torch.Tensor, torch.Tensor], step_index: int) -> dict:
        tokens, labels = batch
        # Classifier-free guidance needs an unconditional model too: some labels become the null class.
        dropped = torch.rand(labels.shape, device=labels.device) < config.class_dropout
        loss = next_token_loss(model, tokens, labels.masked_fill(dropped, unwrapped.null_class))
        accelerator.backward(loss)
        logs = {"loss": loss.detach()}
        if accelerator.sync_gradients:
            logs["grad_norm"] = float(accelerator.clip_grad_norm_(model.parameters(), loop.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return logs

    # ---- the loop ---------------------------------------------------------------------------------------------
    run = runtime.Run(accelerator, loop, state, loader, data, schedule, (model,))
    logs: dict = {}
    for _, logs in run.steps(step):
        if run.due(loop.log_every):
            mean_loss = accelerator.reduce(logs["loss"], reduction="mean").item()
            run.log({"loss": mean_loss, "grad_norm": logs["grad_norm"]}, f"loss {mean_loss:.4f}")
        if run.due(loop.checkpoint_every):
            run.checkpoint()

    # ---- the held-out loss and the saved transformer, pipeline and samples ------------------------------------
    final_loss = accelerator.reduce(logs.get("loss", torch.zeros((), device=accelerator.device)),
                                    reduction="mean").item()
    results: dict = {}
    if state.step == schedule.total and accelerator.is_main_process:
        summary = (f"Trained with `fvq-train-transformer` for {schedule.total} steps on `{config.codes}` "
                   f"({len(data):,} samples), global batch {global_batch}, AdamW lr {loop.lr} ({loop.schedule}), "
                   f"weight decay {config.weight_decay}, class dropout {config.class_dropout}; last training loss "
                   f"{final_loss:.4f}.")
        results = save_outputs(config, out, unwrapped, data, summary, accelerator.device)
    runtime.end_run(accelerator, out)
    return TransformerTrainResult(state.step, final_loss, results, unwrapped, accelerator.process_index,
                                  accelerator.num_processes)


def save_outputs(config: TransformerTrainConfig, out: Path, model: FVQTransformer, data: TokenDataset, summary: str,
                 device) -> dict:
    """Evaluate on --eval-codes; save the transformer with its card, the pipeline and one sample per class."""
    results = {}
    if config.eval_codes:
        held_out = results[config.eval_codes] = evaluate_loss(model, config.eval_codes, config.eval_batch_size, device)
        logger.info("held-out next-token loss %.4f (perplexity %.1f) over %d tokens", held_out["loss"],
                    held_out["token_perplexity"], held_out["num_tokens"])
    model.eval().save_pretrained(out / "transformer")
    generator_card(model.config, evaluations=results or None, training=summary).save(out / "transformer" / "README.md")
    save_evaluation(out / "transformer", results, summary)
    (out / "eval.json").write_text(json.dumps(results, indent=2))
    tokenizer = config.tokenizer or data.meta.tokenizer
    try:
        vq = FVQModel.from_pretrained(tokenizer)
    except (OSError, ValueError) as error:
        logger.warning("Tokenizer %s cannot be loaded (%s): saved the transformer only; build the pipeline with "
                       "FVQGenerationPipeline(transformer=..., vq=...).", tokenizer, error)
        return results
    pipe = FVQGenerationPipeline(transformer=model, vq=vq.to(device).eval())
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(out / "pipeline")
    generator_card(model.config, evaluations=results or None, training=summary, pipeline=True).save(
        out / "pipeline" / "README.md")
    save_evaluation(out / "pipeline" / "transformer", results, summary)  # a later push_to_hub puts them in the card
    from diffusers.utils import make_image_grid

    classes = list(range(min(model.config.num_classes, 16)))
    images = pipe(classes, guidance_scale=config.sample_guidance,
                  generator=torch.Generator(device).manual_seed(config.loop.seed)).images
    make_image_grid(images, rows=1, cols=len(images)).save(out / "samples.png")
    logger.info("Saved %s, %s and %s.", out / "transformer", out / "pipeline", out / "samples.png")
    return results
