"""Shared fixtures: tiny models that build in milliseconds on a CPU."""

from __future__ import annotations

import os

import pytest

from .helpers import make_tiny_model

# No test may reach the network: the Hub, Gradio's analytics and telemetry stay off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

@pytest.fixture
def tiny_model():
    return make_tiny_model()
