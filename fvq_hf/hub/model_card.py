"""Model cards for tokenizers, priors and latent generators: what the model is, how to load it, where converted weights come from, and
what was measured. The card takes facts only: the config, what the model says of itself (its bridge and its ids),
the original-checkpoint info (`conversion.original_info`) and the measured values, labelled by `hub.reports`."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData, create_repo, upload_folder

from ..conversion.original_info import OriginalCheckpointInfo
from ..data.spec import DataSpec
from .reports import REPORTS, format_metric

TAGS = ["image-tokenization", "image-tokenizer", "vector-quantization", "fvq", "vqbridge", "diffusers"]
# A DiT bridge's decisions, said in words (files of fvq-hf 0.1 hold them too); any other layout's are listed as saved.
DIT_DECISIONS = ("folded_label", "folded_label_reason", "kept_bridge")


def provenance_section(original: OriginalCheckpointInfo) -> tuple[list[str], dict]:
    """Card lines saying where converted weights come from, and the card metadata that follows from it."""
    origin, reported = original.release()
    decisions = original.decisions
    lines = ["## Where the weights come from", "",
             f"Converted with `fvq-convert` from `{original.source}` (layout `{original.layout}`, "
             f"`{original.weights}` weights), without retraining: token ids are those of the original code "
             "(checked on every layout by this package's parity tests).",
             f"Codes are {'' if original.codebook_l2_norm else 'not '}l2-normalised ({original.l2_norm_reason})."]
    if decisions.get("folded_label") is not None:
        lines.append(f"The DiT bridge was folded into a plain codebook at label {decisions['folded_label']} "
                     f"({decisions['folded_label_reason']}).")
    if decisions.get("kept_bridge"):
        lines.append("The DiT bridge was kept trainable (`bridge_type: dit`, `fvq-convert --keep-bridge`); "
                     "`fold_bridge()` gives the plain codebook.")
    others = {k: v for k, v in decisions.items() if k not in DIT_DECISIONS and v is not None}
    if others:
        lines.append("What the layout decided: " + "; ".join(f"{k}: {v}" for k, v in others.items()) + ".")
    if origin is None:
        lines += ["", "Origin: not a known release; the publisher should say where it comes from and its licence."]
        return lines + [""], {"license": "unknown"}
    lines += ["", f"- Origin: {origin['origin']}.", f"- Licence: {origin['license_note']}"]
    if reported:
        lines += ["", "Reported by the original authors (their numbers, not measured here):", "",
                  *[f"- {r}" for r in reported]]
    return lines + [""], {"license": origin["license"], "base_model": origin["base_model"]}


def dataset_type(data: str) -> str:
    """An evaluated data set (its `--data` text) as a model-index dataset type (`DataSpec.dataset_type`)."""
    try:
        return DataSpec.parse(data).dataset_type
    except ValueError:  # not a `--data` text (a codes folder's name, say): a folder of files
        return "imagefolder"


def eval_results(evaluations: Mapping[str, Mapping]) -> list[EvalResult]:
    """The measured metrics as the Hub's model-index entries (task: image reconstruction)."""
    return [EvalResult(task_type="image-to-image", task_name="Image reconstruction", dataset_type=dataset_type(data),
                       dataset_name=data, metric_type=report.model_index, metric_name=report.label,
                       metric_value=metrics[key])
            for data, metrics in evaluations.items() for key, report in REPORTS.items()
            if report.model_index and isinstance(metrics.get(key), int | float) and math.isfinite(metrics[key])]


def metrics_table(evaluations: Mapping[str, Mapping]) -> str:
    """Markdown rows of measured metrics, one per evaluated data set."""
    keys = [k for k, report in REPORTS.items() if report.label and any(k in m for m in evaluations.values())]
    lines = ["| data | tokens | " + " | ".join(REPORTS[k].label for k in keys) + " |",
             "| --- | --- |" + " --- |" * len(keys)]
    for data, metrics in evaluations.items():
        cells = [format_metric(k, metrics[k]) if k in metrics else "n/a" for k in keys]
        lines.append(f"| {data} | {metrics.get('num_tokens', 0):,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def assemble_card(data: ModelCardData, name: str, intro: str, facts: list[str], usage: list[str],
                  training: str | None, evaluations: Mapping[str, Mapping] | None, how: str, todo: str,
                  provenance: list[str] | None = None) -> ModelCard:
    """The layout every fvq-hf card shares: title, intro, a table of facts, a usage snippet, where converted
    weights come from, training, and the measured metrics (with how they were measured) or what to run."""
    body = [f"# {name.split('/')[-1]}", "", intro, "", "| | |", "| --- | --- |", *facts, "", "## Use", "",
            "```python", *usage, "```", "", *(provenance or [])]
    if training:
        body += ["## Training", "", training, ""]
    if evaluations:
        notes = sorted({n for m in evaluations.values() for n in m.get("notes", [])})
        body += ["## Measured", "", how, "", metrics_table(evaluations), "", *[f"- {n}" for n in notes],
                 *([""] if notes else [])]
    else:
        body += ["## Measured", "", f"Not evaluated yet: {todo}", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def tokenizer_card(config: Mapping, bridge_name: str, ids: tuple[str, str], repo_id: str | None = None,
                   evaluations: Mapping[str, Mapping] | None = None, training: str | None = None,
                   license: str = "apache-2.0", pipeline: bool = False, original: OriginalCheckpointInfo | None = None,
                   datasets: list[str] | None = None) -> ModelCard:
    """A `huggingface_hub.ModelCard` for an FVQModel config (or a pipeline around one), with measured metrics.
    What the model says of itself: `bridge_name` (`FVQModel.bridge_name`), and `ids`, the shape and the words of one
    `sample_size` image's token ids (`FVQModel.token_description()`, e.g. `("16, 16", "16 x 16 per 256 px image")`).

    `original`: what `fvq-convert` decided, for weights converted from the original code; the card then says where
    they come from, their licence status and the authors' reported numbers.
    `datasets`: Hub ids of the training data, for the metadata. Measured metrics also go into the model-index.
    """
    provenance, meta = provenance_section(original) if original else (None, {"license": license})
    name = repo_id or "path/to/model"
    factor = 2 ** (len(config["block_out_channels"]) - 1)
    size = config["sample_size"]
    grid, tokens = ids
    facts = [
        f"| codebook | {config['num_vq_embeddings']:,} codes x {config['vq_embed_dim']} dims"
        f"{', l2-normalised' if config.get('codebook_l2_norm') else ''} |",
        f"| codebook bridge | {bridge_name} |",
        *([f"| codebook table | {config['num_vq_embeddings']:,} x {config.get('table_dim') or config['vq_embed_dim']}"
           f"{', frozen' if config.get('freeze_table') else ''}"
           f"{', moving averages (EMA)' if config.get('table_update') == 'ema' else ''} |"]
          if config.get("table_dim") or config.get("freeze_table") or config.get("table_update") == "ema" else []),
        f"| backbone | LlamaGen VQ family, widths {list(config['block_out_channels'])}, downsample {factor} |",
        f"| tokens | {tokens} |",
    ]
    usage = [
        "from fvq_hf import FVQPipeline",
        "",
        f'pipe = FVQPipeline.from_pretrained("{name}")',
        "out = pipe(image)                        # PIL / numpy / tensor, any size: resized and centre-cropped",
        f"out.images, out.indices, out.usage     # reconstructions, (B, {grid}) ids, per-image usage",
        "again = pipe.detokenize(out.indices)",
    ] if pipeline else [
        "from fvq_hf import FVQModel",
        "",
        f'model = FVQModel.from_pretrained("{name}")',
        f"indices = model.tokenize(images)        # (B, 3, {size}, {size}) in [-1, 1] -> (B, {grid})",
        "reconstruction = model.detokenize(indices)",
    ]
    return assemble_card(
        ModelCardData(library_name="fvq-hf", pipeline_tag="image-to-image", tags=TAGS, datasets=datasets,
                      model_name=name.split("/")[-1], eval_results=eval_results(evaluations or {}) or None, **meta),
        name,
        "A discrete image tokenizer of the FVQ family (Chang et al., *Scalable Training for Vector-Quantized "
        "Networks with 100% Codebook Utilization*, arXiv 2509.10140), packaged with `fvq-hf`.",
        facts, usage, training, evaluations, "Usage counts every token of the evaluation data (not a rolling buffer).",
        "run `fvq-eval` and push again.", provenance)


def generator_card(config: Mapping, repo_id: str | None = None, evaluations: Mapping[str, Mapping] | None = None,
                   training: str | None = None, license: str = "apache-2.0", pipeline: bool = False) -> ModelCard:
    """A `huggingface_hub.ModelCard` for an FVQTransformer config (or an FVQGenerationPipeline around one)."""
    name = repo_id or "path/to/model"
    h, w = config["token_grid_size"]
    names = config.get("class_names")
    facts = [
        f"| vocabulary | {config['vocab_size']:,} token ids (the tokenizer's codebook size) |",
        f"| sequence | class token + {h} x {w} tokens in raster order |",
        f"| classes | {config['num_classes']:,}" + (f": {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}"
                                                     if names else "") + " (+ a null class for guidance) |",
        f"| size | {config['num_layers']} layers, width {config['hidden_size']}, "
        f"{config['num_attention_heads']} heads; RMSNorm, SwiGLU, 2-D RoPE |",
    ]
    usage = [
        "import torch",
        "from fvq_hf import FVQGenerationPipeline",
        "",
        f'pipe = FVQGenerationPipeline.from_pretrained("{name}")',
        "out = pipe(class_labels=[0, 1], guidance_scale=4.0, top_k=None, generator=torch.Generator().manual_seed(0))",
        f"out.images, out.indices                # PIL images, (B, {h}, {w}) token ids",
    ] if pipeline else [
        "from fvq_hf import FVQGenerationPipeline, FVQModel, FVQTransformer",
        "",
        f'transformer = FVQTransformer.from_pretrained("{name}")',
        "pipe = FVQGenerationPipeline(transformer=transformer, vq=FVQModel.from_pretrained('path/to/tokenizer'))",
    ]
    # The Hub has no class-conditional pipeline tag (text-to-image would be wrong): only one class gets one.
    data = ModelCardData(library_name="fvq-hf", license=license, tags=[*TAGS, "autoregressive", "class-conditional"],
                         pipeline_tag="unconditional-image-generation" if config["num_classes"] == 1 else None)
    return assemble_card(
        data, name, "A LlamaGen-style class-conditional autoregressive transformer over the tokens of an FVQ image "
        "tokenizer (Chang et al., arXiv 2509.10140), packaged with `fvq-hf`.", facts, usage, training, evaluations,
        "Next-token loss of teacher-forced held-out tokens.",
        "train with `fvq-train-transformer --eval-codes ...` and push again.")


def latent_generator_card(facts: Mapping, repo_id: str | None = None, evaluations: Mapping[str, Mapping] | None = None,
                          training: str | None = None, license: str = "apache-2.0") -> ModelCard:
    """A `huggingface_hub.ModelCard` for an `FVQLatentPipeline`, from its `card_facts()`: tokenizer, latents and
    scaling factor, generator, objective, sampler, classes."""
    name = repo_id or "path/to/pipeline"
    d, h, w = facts["latent_shape"]
    names = facts.get("class_names")
    rows = [
        f"| tokenizer | `{facts['tokenizer']}`: {facts['codebook_size']:,} codes of d = {d}, downsample "
        f"{facts['downsample']} (`vq/`) |",
        f"| latents | {d} x {h} x {w}, the tokenizer's pre-quantization latents times the scaling factor "
        f"{facts['scaling_factor']:.6g} (`vq/config.json`) |",
        f"| generator | {facts['generator']} |",
        f"| objective | {facts['objective']} |",
        f"| sampler | {facts['sampler']}; samples are quantized with the codebook before decoding (`quantize=False` "
        "skips it) |",
        f"| classes | {facts['num_classes']:,}" + (f": {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}"
                                                   if names else "") + " (+ a null class for guidance) |",
    ]
    usage = ["import torch", "from fvq_hf import FVQLatentPipeline", "",
             f'pipe = FVQLatentPipeline.from_pretrained("{name}")',
             "out = pipe(class_labels=[0, 1], guidance_scale=4.0, num_inference_steps=50, "
             "generator=torch.Generator().manual_seed(0))",
             "out.images, out.latents"]
    data = ModelCardData(library_name="fvq-hf", license=license, tags=[*TAGS, "latent-diffusion", "class-conditional"],
                         pipeline_tag="unconditional-image-generation" if facts["num_classes"] == 1 else None)
    return assemble_card(
        data, name, "A class-conditional latent generator (diffusion or flow) on the continuous latents of an FVQ "
        "image tokenizer, as VQGAN-LC's DiT-LC / SiT-LC / LDM-LC (Zhu et al., arXiv 2406.11837), packaged with "
        "`fvq-hf`.", rows, usage, training, evaluations,
        "Held-out denoising loss (MSE on the training objective's target) at fixed, seeded noise and timesteps, "
        "with two baselines on the same draws: the untrained model and the class-Gaussian denoiser (the optimal "
        "one if each class's latents were Gaussian with their per-position mean and variance).",
        "train with `fvq-train-latent --eval-latents ...` and push again.")


def push_with_card(obj, repo_id: str, card: ModelCard, commit_message: str | None = None,
                   private: bool | None = None, token: str | None = None, create_pr: bool = False) -> str:
    """`save_pretrained` a model or pipeline into a temporary folder, add `card` as README.md, upload it."""
    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        obj.save_pretrained(tmp)
        card.save(Path(tmp) / "README.md")
        return upload_folder(repo_id=repo_id, folder_path=tmp, token=token, commit_message=commit_message,
                             create_pr=create_pr)
