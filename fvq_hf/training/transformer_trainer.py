"""Training a class-conditional FVQTransformer on extracted codes with accelerate: `train(args)` runs the loop
that `fvq-train-transformer` (`fvq_hf.cli.train_transformer`) starts.

The vocabulary, class count, class names and token grid come from the codes (`meta.json`): a preset fixes
the architecture, the data fixes those. Labels are replaced by the null class with probability
`--class-dropout` (0.1, as LlamaGen) so that the model also learns the unconditional branch of guidance.
At the end `<output-dir>/transformer` holds the model and its card, `<output-dir>/pipeline` an
`FVQGenerationPipeline` and `<output-dir>/samples.png` one sample per class.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from ..data.tokens import TokenDataset
from ..hub.model_card import generator_card, save_evaluation
from ..pipelines import FVQGenerationPipeline
from ..prior import FVQTransformer
from ..prior.transformer import DATA_KEYS, next_token_loss
from ..tokenizer import FVQModel
from . import runtime

logger = logging.getLogger(__name__)


def build_model(args: argparse.Namespace, data: TokenDataset) -> FVQTransformer:
    """The preset's architecture with the data facts of the codes; --init-weights must already match them."""
    config = runtime.load_config(args.config, FVQTransformer, "a transformer preset, hub_configs/fvq-gpt-*")
    facts = dict(zip(DATA_KEYS, (data.codebook_size, data.num_classes, list(data.token_grid_size),
                                 data.meta["class_names"]), strict=True))
    changed = {k: (config.get(k), v) for k, v in facts.items() if config.get(k) != v}
    if args.init_weights:
        model = FVQTransformer.from_pretrained(args.config)
        if changed:
            raise ValueError(f"--init-weights: the weights of {args.config} do not fit the codes {args.codes}: "
                             + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in changed.items() if k != "class_names"))
        return model
    for key in ("vocab_size", "num_classes", "token_grid_size"):
        if key in changed:
            logger.info("%s = %s from the codes (the preset says %s).", key, changed[key][1], changed[key][0])
    return FVQTransformer.from_config({**config, **facts})


def optimizer_for(model: FVQTransformer, args: argparse.Namespace) -> torch.optim.AdamW:
    """AdamW decaying matrices and embeddings, not norms (LlamaGen's grouping)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2),
                             fused=torch.cuda.is_available() or None)


@torch.no_grad()
def evaluate_loss(model: FVQTransformer, folder: str | Path, batch_size: int, device) -> dict:
    """Teacher-forced next-token loss over every sample and view of a codes folder, with and without labels."""
    data = TokenDataset(folder, all_views=True)
    if (data.codebook_size, data.token_grid_size) != (model.config.vocab_size, model.config.token_grid_size):
        raise ValueError(f"--eval-codes {folder} were extracted with another tokenizer (K = {data.codebook_size}, grid "
                         f"{data.token_grid_size}) than the training codes (K = {model.config.vocab_size}, grid "
                         f"{model.config.token_grid_size}).")
    if data.meta["class_names"] != model.config.class_names:
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


def train(args: argparse.Namespace) -> dict:
    """Run training (and the final evaluation) as `args` say; returns the last step, losses and the model."""
    out = Path(args.output_dir)
    accelerator, mixed_precision = runtime.make_accelerator(args, out)
    set_seed(args.seed)

    # ---- data, model, optimizer -----------------------------------------------------------------------------
    data = TokenDataset(args.codes, seed=args.seed)
    model = build_model(args, data)
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    # The loader's own generator: creating an iterator then draws nothing from the global RNG, whose state
    # checkpoints restore, so class dropout and dropout stay exact across --resume.
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.num_workers,
                        generator=torch.Generator().manual_seed(args.seed))
    if len(loader) == 0:
        raise ValueError(f"{len(data)} training samples make no full batch of {args.batch_size}.")
    optimizer = optimizer_for(model, args)
    if args.compile:
        runtime.compile_modules(accelerator.device, model)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(model)
    steps_per_epoch = max(1, len(loader) // args.gradient_accumulation_steps)
    schedule = runtime.LearningRate(args, steps_per_epoch, [optimizer])

    state = runtime.start_run(accelerator, args, out, "fvq-gpt")
    global_batch = args.batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info("%s: %.1fM parameters, %d samples, %d steps (%d per epoch), global batch %d, %d processes, %s",
                args.config, sum(p.numel() for p in unwrapped.parameters()) / 1e6, len(data), schedule.total,
                steps_per_epoch, global_batch, accelerator.num_processes, mixed_precision)

    # ---- one step: next-token loss, with some labels dropped to the null class ------------------------------
    def step(batch: tuple[torch.Tensor, torch.Tensor], step_index: int) -> dict:
        tokens, labels = batch
        # Classifier-free guidance needs an unconditional model too: some labels become the null class.
        dropped = torch.rand(labels.shape, device=labels.device) < args.class_dropout
        loss = next_token_loss(model, tokens, labels.masked_fill(dropped, unwrapped.null_class))
        accelerator.backward(loss)
        logs = {"loss": loss.detach()}
        if accelerator.sync_gradients:
            logs["grad_norm"] = float(accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return logs

    def describe(logs: dict) -> tuple[dict, str]:
        mean_loss = accelerator.reduce(logs["loss"], reduction="mean").item()
        return {"loss": mean_loss, "grad_norm": logs["grad_norm"]}, f"loss {mean_loss:.4f}"

    run = runtime.Run(accelerator, args, state, loader, data, schedule, out / "checkpoints")
    logs = runtime.run_loop(run, (model,), step, describe)
    final_loss = accelerator.reduce(logs.get("loss", torch.zeros((), device=accelerator.device)),
                                    reduction="mean").item()
    results: dict = {}
    if state.step == schedule.total and accelerator.is_main_process:
        summary = (f"Trained with `fvq-train-transformer` for {schedule.total} steps on `{args.codes}` "
                   f"({len(data):,} samples), global batch {global_batch}, AdamW lr {args.lr} ({args.schedule}), "
                   f"weight decay {args.weight_decay}, class dropout {args.class_dropout}; last training loss "
                   f"{final_loss:.4f}.")
        results = save_outputs(args, out, unwrapped, data, summary, accelerator.device)
    runtime.end_run(accelerator, out)
    return {"step": state.step, "loss": final_loss, "eval": results, "model": unwrapped,
            "rank": accelerator.process_index, "world_size": accelerator.num_processes}


def save_outputs(args: argparse.Namespace, out: Path, model: FVQTransformer, data: TokenDataset, summary: str,
                 device) -> dict:
    """Evaluate on --eval-codes; save the transformer with its card, the pipeline and one sample per class."""
    results = {}
    if args.eval_codes:
        results[args.eval_codes] = evaluate_loss(model, args.eval_codes, args.eval_batch_size, device)
        logger.info("held-out next-token loss %.4f (perplexity %.1f) over %d tokens", results[args.eval_codes]["loss"],
                    results[args.eval_codes]["token_perplexity"], results[args.eval_codes]["num_tokens"])
    model.eval().save_pretrained(out / "transformer")
    generator_card(model.config, evaluations=results or None, training=summary).save(out / "transformer" / "README.md")
    save_evaluation(out / "transformer", results, summary)
    (out / "eval.json").write_text(json.dumps(results, indent=2))
    tokenizer = args.tokenizer or data.meta["tokenizer"]
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
    images = pipe(classes, guidance_scale=args.sample_guidance, generator=torch.Generator(device).manual_seed(args.seed)).images
    make_image_grid(images, rows=1, cols=len(images)).save(out / "samples.png")
    logger.info("Saved %s, %s and %s.", out / "transformer", out / "pipeline", out / "samples.png")
    return results
