"""Shared fixtures: tiny models that build in milliseconds on a CPU."""

from __future__ import annotations

import os

import pytest
import torch

# No test may reach the network: the Hub, Gradio's analytics and telemetry stay off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

TINY_CONFIG = dict(
    sample_size=32,
    block_out_channels=(32, 32, 64),
    layers_per_block=1,
    latent_channels=32,
    num_vq_embeddings=256,
    vq_embed_dim=8,
    bridge_type="vqbridge",
    bridge_config={"patch_size": 4, "hidden_size": 32, "num_heads": 2},
    search_chunk_size=64,
)
# The tiny config of each bridge type, taken when a test overrides bridge_type alone.
TINY_BRIDGES = {"vqbridge": TINY_CONFIG["bridge_config"], "mlp": {"hidden_size": 32}, "linear": {}, "none": {}}


def make_tiny_model(seed: int = 0, **overrides):
    """A seeded FVQModel with downsample 4, K = 256 (16 x 16 grid), d = 8."""
    from fvq_hf import FVQModel

    torch.manual_seed(seed)
    if "bridge_type" in overrides and "bridge_config" not in overrides:
        overrides["bridge_config"] = TINY_BRIDGES.get(overrides["bridge_type"])
    return FVQModel(**{**TINY_CONFIG, **overrides})


@pytest.fixture
def tiny_model():
    return make_tiny_model()


def perturb_bridge(model) -> None:
    """Give a VQBridge's zero-initialised recover layer non-zero weights, as after a first training step."""
    bridge = model.quantizer.bridge
    with torch.no_grad():
        bridge.proj_out.weight.normal_(std=0.05)
        bridge.proj_out.bias.normal_(std=0.05)


TINY_TRANSFORMER = dict(vocab_size=256, num_classes=3, token_grid_size=(8, 8), hidden_size=32, num_layers=2,
                        num_attention_heads=2, class_names=["red", "green", "blue"])


def make_tiny_transformer(seed: int = 0, **overrides):
    """A seeded FVQTransformer for the tiny tokenizer (K = 256, 8 x 8 tokens at 32 px), 3 named classes.

    Its output layer gets random weights (LlamaGen initialises it to zero, which would make every logit equal).
    """
    from fvq_hf import FVQTransformer

    torch.manual_seed(seed)
    model = FVQTransformer(**{**TINY_TRANSFORMER, **overrides})
    with torch.no_grad():
        model.output.weight.normal_(std=0.3)
    return model.eval()
