"""adtrans: source-to-source automatic differentiation for Python and NumPy.

    import adtrans, math

    def f(x, y):
        return math.sin(x) * y

    adtrans.gradient(f, 1.0, 2.0)            # (2 cos 1, sin 1)
    print(adtrans.generated_source(f))       # the code that computed it
"""

from adtrans.api import (
    checkpointed,
    recomputed,
    segmented,
    DifferentiableFunction,
    derivative,
    differentiable,
    differentiable_function,
    generated_source,
    gradient,
    gradient_of,
    pullback,
    value_with_gradient,
    value_with_gradient_of,
    value_with_pullback,
    with_derivative,
    without_derivative,
)
from adtrans.errors import DifferentiationError, ZeroDerivativeWarning
from adtrans.tangents import move

try:
    from adtrans.checking import check_gradient
except ImportError:  # pragma: no cover - written alongside the rules
    pass

__version__ = "0.1.0"

__all__ = [
    "DifferentiableFunction", "DifferentiationError", "checkpointed", "recomputed", "segmented", "ZeroDerivativeWarning", "check_gradient",
    "derivative", "differentiable", "differentiable_function", "generated_source", "gradient",
    "gradient_of", "move", "pullback", "value_with_gradient", "value_with_gradient_of",
    "value_with_pullback", "with_derivative", "without_derivative",
]
