"""Shared fixtures: tiny models that build in milliseconds on a CPU, a fresh accelerate state; the example variants
registered."""

from __future__ import annotations

import os

# No test may reach the network: the Hub, Gradio's analytics and telemetry stay off (set before they are imported).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest  # noqa: E402

from .examples import register_examples  # noqa: E402
from .helpers import make_tiny_model  # noqa: E402

register_examples()


@pytest.fixture
def tiny_model():
    return make_tiny_model()


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state, fixed by the first Accelerator: reset it around a bf16 run."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
