import pytest
import torch

from fvq_hf import FVQTransformer
from fvq_hf.prior.transformer import apply_rope, next_token_loss, rope_2d_angles

from ..helpers import TINY_TRANSFORMER, make_tiny_transformer
from ..testing_utils import ModelHubTests


def random_tokens(model, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.config.vocab_size, (batch, model.num_tokens), generator=g)
    labels = torch.randint(0, model.config.num_classes, (batch,), generator=g)
    return tokens, labels


@torch.no_grad()
def test_logits_with_a_cache_equal_the_full_pass():
    model = make_tiny_transformer()
    tokens, labels = random_tokens(model)
    full = model(tokens[:, :-1], labels).logits
    assert full.shape == (2, model.num_tokens, model.config.vocab_size)
    cache = model.make_cache(2)
    steps = [model(class_labels=labels, cache=cache).logits]
    steps += [model(tokens[:, t:t + 1], cache=cache).logits for t in range(model.num_tokens - 1)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-4, atol=1e-5)
    # A prefix then a block appended to a non-empty cache (causal with an offset).
    cache = model.make_cache(2)
    head = model(tokens[:, :10], labels, cache=cache).logits
    block = model(tokens[:, 10:20], cache=cache).logits
    torch.testing.assert_close(torch.cat([head, block], 1), full[:, :21], rtol=1e-4, atol=1e-5)
    assert cache.length == 21


@torch.no_grad()
def test_attention_is_causal_and_conditioned_on_the_class():
    model = make_tiny_transformer()
    tokens, labels = random_tokens(model)
    base = model(tokens[:, :-1], labels).logits
    changed = tokens.clone()
    changed[:, 30] = (changed[:, 30] + 1) % model.config.vocab_size
    after = model(changed[:, :-1], labels).logits
    torch.testing.assert_close(after[:, :31], base[:, :31])  # position j sees tokens < j only
    assert not torch.allclose(after[:, 31:], base[:, 31:])
    assert not torch.allclose(model(tokens[:, :-1], (labels + 1) % 3).logits, base)


def test_2d_rope_depends_on_row_and_column_offsets_only():
    grid, dim = (8, 8), 16
    q, k = torch.randn(1, 1, 1, dim), torch.randn(1, 1, 1, dim)

    def score(p_q, p_k):
        a = rope_2d_angles(grid, dim, 10000.0, torch.tensor([p_q]))
        b = rope_2d_angles(grid, dim, 10000.0, torch.tensor([p_k]))
        return (apply_rope(q, a) * apply_rope(k, b)).sum().item()

    # cells (row, col): (1, 2) vs (3, 5) has the same offsets as (2, 1) vs (4, 4); positions are cell + 1.
    assert score(1 + 1 * 8 + 2, 1 + 3 * 8 + 5) == pytest.approx(score(1 + 2 * 8 + 1, 1 + 4 * 8 + 4), rel=1e-5)
    assert score(1 + 1 * 8 + 2, 1 + 3 * 8 + 5) != pytest.approx(score(1 + 1 * 8 + 2, 1 + 5 * 8 + 3), rel=1e-3)
    assert torch.equal(rope_2d_angles(grid, dim, 10000.0, torch.tensor([0])), torch.zeros(1, dim // 2))  # class token


def test_llamagen_gpt_b_and_l_have_their_parameter_counts():
    # LlamaGen reports 111M (GPT-B) and 343M (GPT-L) parameters with its 16,384-code tokenizer.
    with torch.device("meta"):
        b = FVQTransformer(vocab_size=16384, hidden_size=768, num_layers=12, num_attention_heads=12)
        large = FVQTransformer(vocab_size=16384, hidden_size=1024, num_layers=24, num_attention_heads=16)
    assert round(sum(p.numel() for p in b.parameters()) / 1e6) == 111
    assert round(sum(p.numel() for p in large.parameters()) / 1e6) == 343


def test_training_step_lowers_the_loss():
    model = make_tiny_transformer().train()
    tokens, labels = random_tokens(model, batch=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = next_token_loss(model, tokens, labels)
    for _ in range(10):
        loss = next_token_loss(model, tokens, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert next_token_loss(model, tokens, labels).item() < first.item() - 0.5


@pytest.mark.parametrize("overrides, message", [
    (dict(hidden_size=36, num_attention_heads=2), "multiple of 4"),
    (dict(class_names=["a"]), "class_names has 1 names"),
    (dict(token_grid_size=(8,)), "token_grid_size"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_configs_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        FVQTransformer(**{**TINY_TRANSFORMER, **overrides})


def test_bad_inputs_are_named():
    model = make_tiny_transformer()
    tokens, labels = random_tokens(model)
    with pytest.raises(ValueError, match=r"Class label\(s\) \[5\] out of range: this model has 3 classes"):
        model(tokens[:, :3], torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"Token ids must lie in \[0, 256\)"):
        model(torch.full((2, 3), 256), labels)
    with pytest.raises(ValueError, match="exceeds the 64"):
        model(tokens, labels)
    with pytest.raises(ValueError, match="class_labels .B,. are needed"):
        model(tokens[:, :3])
    cache = model.make_cache(2)
    model(class_labels=labels, cache=cache)
    with pytest.raises(ValueError, match="this cache already holds one"):
        model(tokens[:, :1], labels, cache=cache)
    with pytest.raises(TypeError, match="integer token ids"):
        model(tokens[:, :3].float(), labels)
    assert model.null_class == 3  # the null class itself is a valid label (guidance)
    model(tokens[:, :3], torch.tensor([3, 3]))


class TestFVQTransformerHub(ModelHubTests):
    model_class = FVQTransformer
    breaking_change = ("vocab_size", 512)

    def make_model(self):
        return make_tiny_transformer()

    def output(self, model):
        tokens, labels = random_tokens(model)
        return model(tokens[:, :5], labels).logits

    def check_low_precision(self, model):
        tokens, labels = random_tokens(model)
        with torch.no_grad():
            assert model(tokens[:, :5], labels).logits.dtype == torch.float32  # logits are always fp32

    def test_class_names_and_grid_survive_the_round_trip(self, tmp_path):
        make_tiny_transformer().save_pretrained(tmp_path)
        loaded = FVQTransformer.from_pretrained(tmp_path)
        assert loaded.config.class_names == ["red", "green", "blue"] and loaded.config.token_grid_size == (8, 8)
