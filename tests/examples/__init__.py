"""Small variants registered by the test suite only (not shipped): each shows that a new quantizer type, bridge,
original layout or metric is one module plus its registry entry, and the registry-parametrised tests then cover it.
`register_examples` runs from conftest, before the test modules are collected."""

from __future__ import annotations


def register_examples() -> None:
    from fvq_hf.bridges import BRIDGES

    from .bridge import ScaleBridge

    BRIDGES.register(ScaleBridge)

    from fvq_hf.quantizers import QUANTIZERS, register_quantizer

    from .quantizer import ScaledResidualQuantizer

    if "scaled-residual" not in QUANTIZERS:
        register_quantizer("scaled-residual", ScaledResidualQuantizer)

    from fvq_hf.conversion.layouts import layout_named, register_layout

    from .layout import VQGANEMALayout

    if layout_named("vqgan-ema") is None:
        register_layout(VQGANEMALayout())

    from fvq_hf.evaluation.metrics import METRICS, register_metric

    from .metric import MeanAbsoluteError

    if "l1" not in METRICS:
        register_metric(MeanAbsoluteError)
