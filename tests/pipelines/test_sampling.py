import math

import pytest
import torch

from fvq_hf.pipelines.sampling import filter_logits, generate_tokens, guided_logits, next_tokens

from ..helpers import make_tiny_transformer


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]])
    kept = filter_logits(logits, top_k=2)
    assert torch.isfinite(kept).tolist() == [[False, True, False, True, False]]


def test_top_p_keeps_the_smallest_nucleus_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()


def test_zero_temperature_is_greedy_and_sampling_follows_the_filter():
    logits = torch.tensor([[0.0, 2.0, 1.0]]).repeat(500, 1)
    assert next_tokens(logits, temperature=0).tolist() == [1] * 500
    sampled = next_tokens(logits, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(sampled.tolist()) == {1, 2}
    share = (sampled == 1).float().mean().item()
    assert abs(share - math.e / (math.e + 1)) < 0.06  # softmax of (2, 1) renormalised over the two kept


@torch.no_grad()
def test_guidance_mixes_conditional_and_null_logits():
    model = make_tiny_transformer()
    labels = torch.tensor([0, 2])
    both = torch.cat([labels, torch.full_like(labels, model.null_class)])
    mixed = guided_logits(model, {"input_ids": None, "class_labels": both}, 3.0, 2, None)
    cond = model(class_labels=labels).logits[:, -1]
    uncond = model(class_labels=torch.full_like(labels, model.null_class)).logits[:, -1]
    torch.testing.assert_close(mixed, uncond + 3.0 * (cond - uncond))


def test_cached_and_uncached_greedy_sampling_agree():
    model = make_tiny_transformer()
    labels = torch.tensor([0, 1, 2])
    for scale in (1.0, 2.5):
        cached = generate_tokens(model, labels, guidance_scale=scale, temperature=0, use_cache=True)
        uncached = generate_tokens(model, labels, guidance_scale=scale, temperature=0, use_cache=False)
        assert cached.shape == (3, 8, 8)
        assert torch.equal(cached, uncached)
    assert not torch.equal(generate_tokens(model, labels, 1.0, temperature=0),
                           generate_tokens(model, labels, 4.0, temperature=0))


def test_sampling_is_reproducible_with_a_generator():
    model = make_tiny_transformer()
    labels = torch.tensor([1, 1])

    def sample(seed):
        return generate_tokens(model, labels, 2.0, top_k=50, top_p=0.9, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(guidance_scale=-1.0), "guidance_scale"), (dict(temperature=-0.5), "temperature"),
    (dict(top_k=0), "top_k"), (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
])
def test_bad_sampling_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_tokens(make_tiny_transformer(), torch.tensor([0]), **kwargs)


def test_the_null_class_is_not_a_label_to_sample():
    with pytest.raises(ValueError, match="out of range"):
        generate_tokens(make_tiny_transformer(), torch.tensor([3]))
