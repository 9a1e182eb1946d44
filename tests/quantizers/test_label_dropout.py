"""A conditional DiT bridge with label_rule="dropout" (the FVQ authors' class-conditional training): in training each
image is quantized with the codebook of its own label, label 0 or, dropped, the null class, in every table type.

`label_dropout.safetensors` (`benchmarks/authors_training.py labels`) holds their class-conditional quantizer
(`vq_model_qbridge.VectorQuantizer`, `is_uncondition=False`, QBridge-XS/2, K = 256, d = 8) in training mode at seed 3
on 16 images: the labels their `LabelEmbedder.token_drop` gave, ids, quantized latents, losses and gradients.
"""

import json

import pytest
import torch
from safetensors import safe_open

from fvq_hf.bridges import qbridge_config
from fvq_hf.conversion.layouts.fvq_dit import FVQDiTLayout
from fvq_hf.quantizers import QUANTIZERS, quantizer_class, resolve_quantizer_config

from ..helpers import FIXTURES, TINY_BRIDGES, TINY_QUANTIZERS

TABLE_TYPES = QUANTIZERS.names(lambda cls: cls.has_table)
NULL = 2  # the null class of a 3-row label table


def conditional_quantizer(quantizer_type: str, **bridge):
    """A tiny `quantizer_type` quantizer over a 3-row conditional DiT bridge whose labels give different codebooks
    (zero-initialised layers perturbed, label embeddings N(0, 1)), and `(B, d, s, s)` latents of its side."""
    torch.manual_seed(0)
    cls = quantizer_class(quantizer_type)
    config = resolve_quantizer_config(quantizer_type, TINY_QUANTIZERS.get(quantizer_type))
    quantizer = cls.build(256, 8, config, bridge_type="dit",
                          bridge_config={**TINY_BRIDGES["dit"], "num_labels": 3, **bridge}, search_chunk_size=64)
    with torch.no_grad():
        for parameter in quantizer.bridge.parameters():
            if not parameter.any():
                parameter.normal_(std=0.05)
        quantizer.bridge.label_embed.weight.normal_()
    side = cls.ids_spec(config).fixed_latent_side or 4
    return quantizer, torch.randn(12, 8, side, side)


@pytest.mark.parametrize("quantizer_type", TABLE_TYPES)
def test_in_training_each_image_is_quantized_with_its_labels_codebook(quantizer_type):
    quantizer, latents = conditional_quantizer(quantizer_type, label_rule="dropout", label_dropout=0.5)
    torch.manual_seed(1)
    labels = torch.where(torch.rand(len(latents)) < 0.5, NULL, 0)  # the draw, replayed
    assert 0 < int((labels == NULL).sum()) < len(latents)
    torch.manual_seed(1)
    out = quantizer.train()(latents)
    (out.codebook_loss + out.commitment_loss).backward()
    # The same weights at one fixed label each (the single-label codebooks), on the images of that label.
    single = {}
    for label in (0, NULL):
        fixed, _ = conditional_quantizer(quantizer_type, label=label)
        fixed.load_state_dict(quantizer.state_dict())
        single[label] = fixed.train()(latents[labels == label])
        assert torch.equal(out.indices[labels == label], single[label].indices)
        torch.testing.assert_close(out.latents[labels == label], single[label].latents)
        if label == 0:  # label 0's codebook gives the dropped images other ids: an image in the wrong one is seen
            assert not torch.equal(fixed(latents[labels == NULL]).indices, out.indices[labels == NULL])
    # The losses are the means over the whole batch, as theirs over one codebook per image.
    share = float((labels == NULL).float().mean())
    for name in ("codebook_loss", "commitment_loss"):
        expected = (1 - share) * getattr(single[0], name) + share * getattr(single[NULL], name)
        torch.testing.assert_close(getattr(out, name), expected)
    # The bridge learns from both codebooks: label 0's embedding and the null class's get gradient, no other.
    rows = quantizer.bridge.label_embed.weight.grad.abs().sum(dim=1)
    assert rows[0] > 0 and rows[NULL] > 0 and rows[1] == 0


@pytest.mark.parametrize("quantizer_type", TABLE_TYPES)
def test_out_of_training_every_image_takes_the_configured_label(quantizer_type):
    quantizer, latents = conditional_quantizer(quantizer_type, label_rule="dropout", label_dropout=0.5)
    assert quantizer.bridge.config.label == NULL
    fixed, _ = conditional_quantizer(quantizer_type)
    fixed.load_state_dict(quantizer.state_dict())
    reference = fixed.eval()(latents).indices
    rng = torch.get_rng_state()
    with torch.no_grad():
        assert torch.equal(quantizer.eval()(latents).indices, reference)
        assert torch.equal(quantizer.train()(latents).indices, reference)  # no autograd: no draw
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("num_labels", [1, 3])
def test_the_default_rule_is_one_codebook_for_the_batch(num_labels):
    # Bit-identical to fvq-hf before the option (checked against it); here: training gives eval's ids and
    # latents exactly, and draws nothing.
    quantizer, latents = conditional_quantizer("vq", num_labels=num_labels)
    assert quantizer.bridge.config.label_rule == "fixed"
    with torch.no_grad():
        reference = quantizer.eval()(latents)
    rng = torch.get_rng_state()
    out = quantizer.train()(latents)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(out.indices, reference.indices) and torch.equal(out.latents, reference.latents)


def test_in_training_the_quantizer_is_their_conditional_quantizer():
    with safe_open(FIXTURES / "label_dropout.safetensors", "pt") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items()}
        theirs = {k: f.get_tensor(k) for k in f.keys()}
    state = {k: v.float() for k, v in theirs.items() if k.startswith("quantize.")}
    layout = FVQDiTLayout.recognise(state)
    renamed, _ = layout.rename(state)
    bridge = {**qbridge_config("QBridge-XS/2", conditional=True), "num_heads": 4, "label_rule": "dropout"}
    quantizer = quantizer_class("vq").build(256, 8, {}, bridge_type="dit", bridge_config=bridge)
    quantizer.load_state_dict({k[len("quantizer."):]: v for k, v in renamed.items()})
    assert quantizer.bridge.config.label == meta["null_class"] == 1000
    latents = theirs["latents"].float().requires_grad_(True)
    torch.manual_seed(meta["seed"])
    assert torch.equal(quantizer.train().bridge.image_labels(meta["batch"], latents.device), theirs["labels"])
    torch.manual_seed(meta["seed"])
    out = quantizer(latents)
    (out.codebook_loss + out.commitment_loss + out.latents.square().mean()).backward()
    assert torch.equal(out.indices.flatten(1), theirs["ids"])
    torch.testing.assert_close(out.latents, theirs["quantized"])
    torch.testing.assert_close(torch.stack([out.codebook_loss, out.commitment_loss]).double(), theirs["losses"])
    torch.testing.assert_close(latents.grad, theirs["grad.latents"])
    their_grads, _ = layout.rename({k[len("grad."):]: v for k, v in theirs.items() if k.startswith("grad.quantize.")})
    ours = {f"quantizer.{k}": p.grad for k, p in quantizer.named_parameters() if p.requires_grad}
    assert set(ours) == set(their_grads)
    # Their bridge runs once per image, ours once per label: the sums differ by rounding (measured: relative L2 at
    # most 5.1e-7 per parameter).
    for name, grad in ours.items():
        assert (grad - their_grads[name]).norm() <= 1e-5 * their_grads[name].norm(), name
    rows = quantizer.bridge.label_embed.weight.grad.abs().sum(dim=1)
    assert rows.nonzero().flatten().tolist() == [0, 1000]
