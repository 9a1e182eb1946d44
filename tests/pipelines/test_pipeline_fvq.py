import json

import numpy as np
import pytest
import torch
from PIL import Image

from fvq_hf import FVQModel
from fvq_hf.pipelines import FVQPipeline

from ..helpers import make_tiny_model, perturb_bridge
from ..testing_utils import PipelineHubTests


@pytest.fixture
def pipe():
    model = make_tiny_model()
    perturb_bridge(model)
    return FVQPipeline(vq=model.eval())


def _photo(size=(50, 40), seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_every_output_type_gives_images_ids_and_usage(pipe):
    images = [_photo(), _photo((33, 70), 1).convert("L")]
    pil = pipe(images)
    assert len(pil.images) == 2 and pil.images[0].size == (32, 32) and pil.images[0].mode == "RGB"
    assert pil.indices.shape == (2, 8, 8) and pil.indices.dtype == torch.long
    arr = pipe(images, output_type="np").images
    assert arr.shape == (2, 32, 32, 3) and arr.min() >= 0 and arr.max() <= 1
    pt = pipe(images, output_type="pt").images
    assert pt.shape == (2, 3, 32, 32) and pt.min() >= -1 and pt.max() <= 1
    usage, counts = pil.usage[0], pil.indices[0].unique(return_counts=True)[1].double()
    assert usage["distinct_codes"] == counts.numel() and usage["codebook_fraction"] == counts.numel() / 256
    share = counts / counts.sum()
    assert usage["perplexity"] == pytest.approx(float(torch.exp(-(share * share.log()).sum())), rel=1e-9)
    images_tuple, indices, _ = pipe(images, return_dict=False)
    assert torch.equal(indices, pil.indices)


def test_a_residual_tokenizer_gives_d_ids_per_position():
    model = make_tiny_model(quantizer_type="residual", quantizer_config={"depth": 2})
    perturb_bridge(model)
    pipe = FVQPipeline(vq=model.eval())
    out = pipe([_photo(), _photo(seed=1)], output_type="pt")
    assert out.indices.shape == (2, 8, 8, 2) and torch.equal(pipe.tokenize([_photo(), _photo(seed=1)]), out.indices)
    assert out.usage[0]["distinct_codes"] == out.indices[0].unique().numel()  # counted over both depths
    torch.testing.assert_close(pipe.detokenize(out.indices, output_type="pt"), out.images)
    assert len(pipe.detokenize(out.indices[0])) == 1  # (h, w, D) ids of one image


def test_a_multiscale_tokenizer_gives_one_sequence_per_image():
    model = make_tiny_model(quantizer_type="multiscale", quantizer_config={"scales": [1, 3, 8]})
    perturb_bridge(model)
    pipe = FVQPipeline(vq=model.eval())
    out = pipe([_photo(), _photo(seed=1)], output_type="pt")
    assert out.indices.shape == (2, 1 + 9 + 64) and torch.equal(pipe.tokenize([_photo(), _photo(seed=1)]), out.indices)
    torch.testing.assert_close(pipe.detokenize(out.indices, output_type="pt"), out.images, rtol=1e-4, atol=1e-4)
    assert len(pipe.detokenize(out.indices[0])) == 1  # (L,) ids of one image
    with pytest.raises(ValueError, match="takes only 32 px images"):
        pipe(_photo(), resolution=64)


def test_detokenize_matches_the_reconstruction(pipe):
    out = pipe(_photo(), output_type="pt")
    torch.testing.assert_close(pipe.detokenize(out.indices, output_type="pt"), out.images)
    assert pipe.detokenize(out.indices[0]).__len__() == 1  # (h, w) ids work too


def test_torch_dtype_loads_in_it_with_the_quantizer_in_fp32(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = FVQPipeline.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert loaded.vq.dtype == torch.bfloat16 and loaded.vq.quantizer.embedding.weight.dtype == torch.float32
    assert loaded(_photo(), output_type="pt").images.shape == (1, 3, 32, 32)


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [([{"a": 1}], TypeError, "Unsupported image type"), ([], ValueError, "No images")],
)
def test_bad_images_are_named(pipe, images, error, match):
    with pytest.raises(error, match=match):
        pipe(images)


def test_bad_arguments_are_named(pipe):
    with pytest.raises(ValueError, match="output_type"):
        pipe(_photo(), output_type="latent")
    with pytest.raises(ValueError, match="multiple of the downsample factor"):
        pipe(_photo(), resolution=30)
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        pipe.detokenize(torch.full((1, 8, 8), 300))


class TestFVQPipelineHub(PipelineHubTests):
    pipeline_class = FVQPipeline

    def make_pipeline(self):
        model = make_tiny_model()
        perturb_bridge(model)
        return FVQPipeline(vq=model.eval())

    def outputs(self, pipe):
        out = pipe(_photo(), output_type="pt")
        return out.indices, out.images

    def test_components_are_read_back_as_fvq_hf_classes(self, tmp_path):
        self.make_pipeline().save_pretrained(tmp_path)
        index = json.loads((tmp_path / "model_index.json").read_text())
        assert index["vq"] == ["fvq_hf_remote", "FVQModel"]  # the module file diffusers' generic loader imports
        assert FVQPipeline.load_config(tmp_path)["vq"] == ["fvq_hf.tokenizer.fvq_model", "FVQModel"]
        assert type(FVQPipeline.from_pretrained(tmp_path).vq) is FVQModel
