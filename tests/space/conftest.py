"""The Space's modules live in space/, next to app.py, as on a Hugging Face Space."""

import sys

import pytest

from ..helpers import ROOT, make_tiny_model, perturb_bridge

SPACE = ROOT / "space"
sys.path.insert(0, str(SPACE))


@pytest.fixture
def model_dir(tmp_path):
    model = make_tiny_model()
    perturb_bridge(model)
    model.save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")
