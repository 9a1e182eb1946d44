"""Model cards for trained tokenizers: what the model is, how to load it, and what was measured."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData, create_repo, upload_folder

from ..conversion.layouts import layout_named
from ..evaluation.metrics import REPORTS, format_metric
from ..quantizers import quantizer_class

EVALUATION_FILE = "evaluation.json"  # written next to trained weights: {"training": str, "evaluations": {...}}
ORIGINAL_FILE = "original_checkpoint.json"  # written next to converted weights by fvq-convert

TAGS = ["image-tokenization", "image-tokenizer", "vector-quantization", "fvq", "vqbridge", "diffusers"]


LLAMAGEN = dict(origin="LlamaGen (Sun et al., *Autoregressive Model Beats Diffusion*, arXiv 2406.06525; "
                "github.com/FoundationVision/LlamaGen)", base_model="FoundationVision/LlamaGen", license="mit",
                license_note="LlamaGen's repository is MIT-licensed (\"the majority of this project\"); its "
                "README gives no separate licence for the weights.")
FVQ = dict(origin="FVQ (Chang et al., *Scalable Training for Vector-Quantized Networks with 100% Codebook "
           "Utilization*, arXiv 2509.10140; github.com/yfChang-cv/FVQ)", base_model="yfChang/FVQ", license="unknown",
           license_note="The FVQ repository states no licence: ask the authors before redistributing these weights.")
# What the original authors reported for their released files (their numbers, ImageNet val; not measured here).
KNOWN_RELEASES = {
    "vq_ds16_c2i": (LLAMAGEN, ["rFID 2.19 at 256 px (16 x 16 tokens), 0.94 at 384 px, 0.70 at 512 px "
                               "(LlamaGen README)"]),
    "vq_ds8_c2i": (LLAMAGEN, ["rFID 0.59 at 256 px (32 x 32 tokens) (LlamaGen README)"]),
    "vq_ds16_t2i": (LLAMAGEN, []),
    "fullvq2vqgan": (FVQ, ["100% codebook usage at codebook sizes up to 262,144 and a headline rFID of 0.88 "
                           "(arXiv 2509.10140; see the paper for the setting of each figure)"]),
}


def release_of(original: Mapping) -> tuple[dict | None, list[str]]:
    """`(origin facts, reported numbers)` of a converted original, from its file name, else from its layout."""
    name = Path(str(original["source"])).name
    for prefix, (origin, reported) in KNOWN_RELEASES.items():
        if name.startswith(prefix):
            return origin, reported
    layout = layout_named(original["layout"])
    return (FVQ, []) if layout is not None and layout.origin == "fvq" else (None, [])


def provenance_section(original: Mapping) -> tuple[list[str], dict]:
    """Card lines saying where converted weights come from, and the card metadata that follows from it."""
    origin, reported = release_of(original)
    lines = ["## Where the weights come from", "",
             f"Converted with `fvq-convert` from `{original['source']}` (layout `{original['layout']}`, "
             f"`{original['weights']}` weights), without retraining: token ids are those of the original code "
             "(checked on every layout by this package's parity tests).",
             f"Codes are {'' if original['codebook_l2_norm'] else 'not '}l2-normalised ({original['l2_norm_reason']})."]
    if original.get("folded_label") is not None:
        lines.append(f"The DiT bridge was folded into a plain codebook at label {original['folded_label']} "
                     f"({original['folded_label_reason']}).")
    if original.get("kept_bridge"):
        lines.append("The DiT bridge was kept trainable (`bridge_type: dit`, `fvq-convert --keep-bridge`); "
                     "`fold_bridge()` gives the plain codebook.")
    if origin is None:
        lines += ["", "Origin: not a known release; the publisher should say where it comes from and its licence."]
        return lines + [""], {"license": "unknown"}
    lines += ["", f"- Origin: {origin['origin']}.", f"- Licence: {origin['license_note']}"]
    if reported:
        lines += ["", "Reported by the original authors (their numbers, not measured here):", "",
                  *[f"- {r}" for r in reported]]
    return lines + [""], {"license": origin["license"], "base_model": origin["base_model"]}


def dataset_id(data: str) -> str:
    """The data argument of fvq-train / fvq-eval as a dataset name for card metadata."""
    if data.startswith("builtin"):
        return "scikit-image-data"  # the sample photos of skimage.data; not a Hub dataset
    return data[3:].split(":")[0] if data.startswith("hf:") else "imagefolder"


def eval_results(evaluations: Mapping[str, Mapping]) -> list[EvalResult]:
    """The measured metrics as the Hub's model-index entries (task: image reconstruction)."""
    return [EvalResult(task_type="image-to-image", task_name="Image reconstruction", dataset_type=dataset_id(data),
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


def tokenizer_card(config: Mapping, bridge_name: str, repo_id: str | None = None,
                   evaluations: Mapping[str, Mapping] | None = None, training: str | None = None,
                   license: str = "apache-2.0", pipeline: bool = False, original: Mapping | None = None,
                   datasets: list[str] | None = None) -> ModelCard:
    """A `huggingface_hub.ModelCard` for an FVQModel config (or a pipeline around one), with measured metrics.
    `bridge_name` says what the codebook bridge is (`FVQModel.bridge_name`).

    `original`: what `fvq-convert` saved (`original_checkpoint.json`) for weights converted from the original code;
    the card then says where they come from, their licence status and the authors' reported numbers.
    `datasets`: Hub ids of the training data, for the metadata. Measured metrics also go into the model-index.
    """
    provenance, meta = provenance_section(original) if original else (None, {"license": license})
    name = repo_id or "path/to/model"
    factor = 2 ** (len(config["block_out_channels"]) - 1)
    size = config["sample_size"]
    side = size // factor
    quantizer = quantizer_class(config.get("quantizer_type", "vq"))
    grid, tokens = quantizer.describe_ids(quantizer.resolve_config(config.get("quantizer_config")), side, size)
    facts = [
        f"| codebook | {config['num_vq_embeddings']:,} codes x {config['vq_embed_dim']} dims"
        f"{', l2-normalised' if config.get('codebook_l2_norm') else ''} |",
        f"| codebook bridge | {bridge_name} |",
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


def save_evaluation(folder: str | Path, evaluations: Mapping[str, Mapping], training: str | None = None) -> None:
    """Keep measured metrics next to the weights, so that a later push puts them in the card."""
    Path(folder, EVALUATION_FILE).write_text(json.dumps({"training": training, "evaluations": evaluations}, indent=2))


def load_evaluation(folder: str | Path | None) -> tuple[dict | None, str | None]:
    """`(evaluations, training summary)` saved by `save_evaluation` in `folder`, or `(None, None)`."""
    path = Path(folder, EVALUATION_FILE) if folder else None
    if path is None or not path.is_file():
        return None, None
    saved = json.loads(path.read_text())
    return saved.get("evaluations") or None, saved.get("training")


def saved_card_inputs(folder: str | Path | None) -> dict:
    """What was saved next to a tokenizer's weights for its card: `evaluations`, `training`, `original`."""
    evaluations, training = load_evaluation(folder)
    path = Path(folder, ORIGINAL_FILE) if folder else None
    original = json.loads(path.read_text()) if path is not None and path.is_file() else None
    return {"evaluations": evaluations, "training": training, "original": original}


def push_with_card(obj, repo_id: str, card: ModelCard, commit_message: str | None = None,
                   private: bool | None = None, token: str | None = None, create_pr: bool = False) -> str:
    """`save_pretrained` a model or pipeline into a temporary folder, add `card` as README.md, upload it."""
    repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as tmp:
        obj.save_pretrained(tmp)
        card.save(Path(tmp) / "README.md")
        return upload_folder(repo_id=repo_id, folder_path=tmp, token=token, commit_message=commit_message,
                             create_pr=create_pr)
