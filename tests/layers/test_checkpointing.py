"""Gradient checkpointing through diffusers' `enable_gradient_checkpointing()`: same gradients, blocks recomputed."""

import copy

import pytest
import torch

from ..helpers import make_tiny_model, make_tiny_transformer, perturb_bridge


def tokenizer_loss(model):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = model(images)
    return (out.sample - images).pow(2).mean() + out.codebook_loss + out.commitment_loss


def transformer_loss(model):
    from fvq_hf.prior.transformer import next_token_loss

    tokens = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(0))
    return next_token_loss(model, tokens, torch.tensor([0, 2]))


def tiny_tokenizer():
    model = make_tiny_model(dropout=0.1)  # dropout: the recomputed pass must draw the same masks
    perturb_bridge(model)
    return model


@pytest.mark.parametrize("make, loss", [(tiny_tokenizer, tokenizer_loss),
                                        (lambda: make_tiny_transformer(dropout=0.1), transformer_loss)])
def test_gradients_are_identical_with_and_without_checkpointing(make, loss):
    plain = make().train()
    checkpointed = copy.deepcopy(plain)
    calls = []

    def counting_checkpoint(block, *args):
        calls.append(type(block).__name__)
        return torch.utils.checkpoint.checkpoint(block.__call__, *args, use_reentrant=False)

    checkpointed.enable_gradient_checkpointing(counting_checkpoint)
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        loss(model).backward()
    assert calls, "no block was checkpointed"
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.equal(a.grad, b.grad), name
    checkpointed.disable_gradient_checkpointing()
    calls.clear()
    loss(checkpointed).backward()
    assert not calls


def test_no_checkpointing_without_gradients():
    model = make_tiny_model()
    model.enable_gradient_checkpointing(lambda *a: pytest.fail("checkpointed under no_grad"))
    with torch.no_grad():
        model.tokenize(torch.zeros(1, 3, 32, 32))
