"""Small variants registered by the test suite only (not shipped): each shows that a new quantizer type, original
layout or metric is one module plus its registry entry, and the registry-parametrised tests then cover it.
`register_examples` runs from conftest, before the test modules are collected."""

from __future__ import annotations


def register_examples() -> None:
    from fvq_hf.quantizers import QUANTIZERS, register_quantizer

    from .quantizer import ScaledResidualQuantizer

    if "scaled-residual" not in QUANTIZERS:
        register_quantizer("scaled-residual", ScaledResidualQuantizer)

    from . import layout, metric  # noqa: F401  (each registers itself: @LAYOUTS.register, @METRICS.register)
