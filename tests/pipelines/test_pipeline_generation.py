import numpy as np
import PIL.Image
import pytest
import torch

from fvq_hf import FVQGenerationPipeline

from ..helpers import make_tiny_model, make_tiny_transformer
from ..testing_utils import PipelineHubTests


@pytest.fixture
def pipe():
    pipeline = FVQGenerationPipeline(transformer=make_tiny_transformer(), vq=make_tiny_model().eval())
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_residual_and_multiscale_tokenizers_are_refused():
    with pytest.raises(ValueError, match="residual.*one code per position"):
        FVQGenerationPipeline(transformer=make_tiny_transformer(), vq=make_tiny_model(quantizer_type="residual"))
    multiscale = make_tiny_model(quantizer_type="multiscale", quantizer_config={"scales": [1, 8]})
    with pytest.raises(ValueError, match="multiscale.*one code per position"):
        FVQGenerationPipeline(transformer=make_tiny_transformer(), vq=multiscale)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def test_images_have_the_shape_and_type_asked_for(pipe):
    out = pipe([0, 2], generator=seeded(0))
    assert out.indices.shape == (2, 8, 8)
    assert all(isinstance(i, PIL.Image.Image) and i.size == (32, 32) for i in out.images)
    array = pipe(1, output_type="np", generator=seeded(0)).images
    assert array.shape == (1, 32, 32, 3) and 0 <= array.min() and array.max() <= 1
    tensor = pipe([1], output_type="pt", generator=seeded(0)).images
    assert tensor.shape == (1, 3, 32, 32)
    images, indices = pipe([1], generator=seeded(0), return_dict=False)
    assert indices.shape == (1, 8, 8)


def test_the_images_decode_the_sampled_tokens(pipe):
    out = pipe([0, 1], output_type="pt", generator=seeded(3))
    torch.testing.assert_close(out.images, pipe.vq.detokenize(out.indices).clamp(-1, 1))


def test_the_same_seed_gives_the_same_images(pipe):
    a = pipe([0, 1, 2], guidance_scale=3.0, top_k=100, generator=seeded(7), output_type="np")
    b = pipe([0, 1, 2], guidance_scale=3.0, top_k=100, generator=seeded(7), output_type="np")
    c = pipe([0, 1, 2], guidance_scale=3.0, top_k=100, generator=seeded(8), output_type="np")
    assert np.array_equal(a.images, b.images) and torch.equal(a.indices, b.indices)
    assert not torch.equal(a.indices, c.indices)


def test_the_cache_changes_no_token_and_guidance_changes_them(pipe):
    greedy = dict(temperature=0, output_type="pt")
    assert torch.equal(pipe([0, 2], use_cache=True, **greedy).indices, pipe([0, 2], use_cache=False, **greedy).indices)
    assert not torch.equal(pipe([0, 2], guidance_scale=1.0, **greedy).indices,
                           pipe([0, 2], guidance_scale=5.0, **greedy).indices)


def test_class_names_give_their_ids(pipe):
    assert pipe.labels == {"red": 0, "green": 1, "blue": 2}
    assert pipe.get_label_ids(["blue", 0, "green"]).tolist() == [2, 0, 1]
    assert pipe.get_label_ids(torch.tensor([1, 2])).tolist() == [1, 2]
    named = pipe(["blue"], temperature=0, output_type="pt").indices
    assert torch.equal(named, pipe([2], temperature=0, output_type="pt").indices)


@pytest.mark.parametrize("labels, message", [
    ([0, 3], r"Class label\(s\) \[3\] out of range: this model has 3 classes, ids 0..2\."),
    ([-1], "out of range"),
    (["purple"], r"Unknown class name\(s\) \['purple'\]; known names: red, green, blue"),
    ([], "class_labels is empty"),
])
def test_bad_labels_are_named(pipe, labels, message):
    with pytest.raises(ValueError, match=message):
        pipe(labels)


def test_a_tokenizer_of_another_codebook_size_is_refused():
    with pytest.raises(ValueError, match=r"vocabulary \(256 token ids\) does not match the tokenizer's codebook "
                                         r"\(1,024 codes\)"):
        FVQGenerationPipeline(transformer=make_tiny_transformer(), vq=make_tiny_model(num_vq_embeddings=1024))


def test_bad_options_are_named(pipe):
    with pytest.raises(ValueError, match="output_type"):
        pipe([0], output_type="jpeg")
    with pytest.raises(ValueError, match="top_p"):
        pipe([0], top_p=2.0)


class TestFVQGenerationPipelineHub(PipelineHubTests):
    pipeline_class = FVQGenerationPipeline

    def make_pipeline(self):
        pipeline = FVQGenerationPipeline(transformer=make_tiny_transformer(), vq=make_tiny_model().eval())
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    def outputs(self, pipe):
        out = pipe([0, 1], guidance_scale=2.0, generator=seeded(5), output_type="pt")
        return out.indices, out.images
