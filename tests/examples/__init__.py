"""Small variants registered by the test suite only (not shipped): each shows that a new quantizer type (with a
table, or without one), bridge, original layout or metric is one module plus its registry entry, and the
registry-parametrised tests then cover it. `register_examples` runs from conftest, before the test modules are
collected."""

from __future__ import annotations


def register_examples() -> None:
    from fvq_hf.bridges import BRIDGES
    from fvq_hf.quantizers import QUANTIZERS

    from .bridge import ScaleBridge
    from .quantizer import ScaledResidualQuantizer
    from .scalar_quantizer import ScalarQuantizer

    QUANTIZERS.register(ScaledResidualQuantizer)
    QUANTIZERS.register(ScalarQuantizer)
    BRIDGES.register(ScaleBridge)

    from . import layout, metric  # noqa: F401  (each registers itself: @LAYOUTS.register, @METRICS.register)
