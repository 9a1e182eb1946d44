"""Folders saved by an earlier fvq-hf still load, and give the outputs they gave then.

tests/fixtures/saved_v1/ was written once by fvq-hf at commit dfdf1df (before the package's second layout),
with tiny models whose bridge and phi weights were perturbed so that codes differ: a model of each quantizer type
(with four bridge types between them), an `FVQPipeline`, an `FVQGenerationPipeline`, and the config.json and
`original_checkpoint.json` that `fvq-convert` wrote for the llamagen_vq8 parity fixture (its weights are
converted again here, to keep the fixture small). `expected.safetensors` holds what that code computed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fvq_hf import FVQGenerationPipeline, FVQModel, FVQPipeline

from .helpers import original_file

SAVED = Path(__file__).parent / "fixtures" / "saved_v1"
EXPECTED = load_file(SAVED / "expected.safetensors")
MODELS = ["vq_vqbridge", "vq_none", "residual_linear", "multiscale_mlp"]


@pytest.mark.parametrize("name", MODELS)
def test_saved_model_gives_the_same_ids_and_images(name):
    model = FVQModel.from_pretrained(SAVED / name).eval()
    with torch.no_grad():
        ids = model.tokenize(EXPECTED["inputs"])
        assert torch.equal(ids, EXPECTED[f"{name}.indices"])
        torch.testing.assert_close(model(EXPECTED["inputs"]).sample, EXPECTED[f"{name}.sample"], rtol=0, atol=1e-5)
    assert ids.unique().numel() > 4  # the perturbed codebook is not one code


def test_saved_pipelines_load_through_their_classes():
    pipe = FVQPipeline.from_pretrained(SAVED / "pipeline_fvq")
    with torch.no_grad():
        assert torch.equal(pipe.vq.tokenize(EXPECTED["inputs"]), EXPECTED["vq_vqbridge.indices"])
    generator = FVQGenerationPipeline.from_pretrained(SAVED / "pipeline_generation")
    with torch.no_grad():
        logits = generator.transformer(EXPECTED["transformer.ids"], torch.tensor([1])).logits
    torch.testing.assert_close(logits, EXPECTED["transformer.logits"], rtol=0, atol=1e-5)


def test_a_converted_folder_loads_with_the_provenance_it_had(tmp_path):
    folder = shutil.copytree(SAVED / "converted_llamagen_vq8", tmp_path / "converted")
    path, tensors = original_file("llamagen_vq8", tmp_path)
    FVQModel.from_original_checkpoint(path).save_pretrained(tmp_path / "weights")
    shutil.copy(tmp_path / "weights" / "diffusion_pytorch_model.safetensors", folder)
    model = FVQModel.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.equal(model.tokenize(EXPECTED["converted_llamagen_vq8.inputs"]),
                           EXPECTED["converted_llamagen_vq8.indices"])
    card = model.model_card("org/vq8")
    # the lines fvq-hf 0.1 gave from this file, which has no origin and the (empty) DiT decisions at the top level
    assert "\n".join(PROVENANCE) in str(card) and card.data.license == "unknown"


PROVENANCE = [
    "Converted with `fvq-convert` from `llamagen_vq8.safetensors` (layout `vqgan`, `model` weights), without "
    "retraining: token ids are those of the original code (checked on every layout by this package's parity tests).",
    "Codes are l2-normalised (release rule: LlamaGen's d = 8 tokenizers (vq_ds16_c2i, vq_ds8_c2i, vq_ds16_t2i) use "
    "l2-norm).",
    "",
    "Origin: not a known release; the publisher should say where it comes from and its licence.",
]
