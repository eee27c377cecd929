"""Derivatives of the ``math`` module: Python floats in, Python floats out.

Each rule reads as the maths: ``d_y`` is the cotangent of the result ``y``.
Where a derivative is infinite (``sqrt`` at 0) Python float arithmetic raises
``ZeroDivisionError`` in the pullback, as it would in the forward expression.
"""

import math

from adtrans.registry import NONZERO, constant_function, integer_valued, rules_for
from adtrans.rules.support import (
    DEGREES_PER_RADIAN, LN2, LN10, RADIANS_PER_DEGREE, TWO_OVER_SQRT_PI, digamma, dist_cotangent,
    each_cotangent, hypot_cotangent, power_slope, prod_items_cotangent, sign, sumprod_cotangent, xlogy)

rule = rules_for(globals())

# Trigonometric and hyperbolic functions and their inverses.
rule(math.sin, "x", x="d_y * math.cos(x)")
rule(math.cos, "x", x="-d_y * math.sin(x)")
rule(math.tan, "x", x="d_y * (1 + y * y)")
rule(math.asin, "x", x="d_y / math.sqrt(1 - x * x)")
rule(math.acos, "x", x="-d_y / math.sqrt(1 - x * x)")
rule(math.atan, "x", x="d_y / (1 + x * x)")
rule(math.atan2, "x1, x2", x1="d_y * x2 / (x1 * x1 + x2 * x2)", x2="-d_y * x1 / (x1 * x1 + x2 * x2)")
rule(math.sinh, "x", x="d_y * math.cosh(x)")
rule(math.cosh, "x", x="d_y * math.sinh(x)")
rule(math.tanh, "x", x="d_y * (1 - y * y)")
rule(math.asinh, "x", x="d_y / math.sqrt(x * x + 1)")
rule(math.acosh, "x", x="d_y / math.sqrt(x * x - 1)")
rule(math.atanh, "x", x="d_y / (1 - x * x)")
rule(math.degrees, "x", x="d_y * DEGREES_PER_RADIAN")
rule(math.radians, "x", x="d_y * RADIANS_PER_DEGREE")

# Exponentials, logarithms, powers.
rule(math.exp, "x", x="d_y * y")
rule(math.expm1, "x", x="d_y * (y + 1)")
if hasattr(math, "exp2"):
    rule(math.exp2, "x", x="d_y * y * LN2")
rule(math.log, "x, base=None", when={"base": None}, x="d_y / x")
rule(math.log, "x, base=None", x="d_y / (x * math.log(base))", base="-d_y * y / (base * math.log(base))")
rule(math.log2, "x", x="d_y / (x * LN2)")
rule(math.log10, "x", x="d_y / (x * LN10)")
rule(math.log1p, "x", x="d_y / (1 + x)")
rule(math.sqrt, "x", x="d_y / (2 * y)")
if hasattr(math, "cbrt"):
    rule(math.cbrt, "x", x="d_y / (3 * y * y)")
rule(math.pow, "a, b", when={"b": 2}, a="d_y * 2 * a")
rule(math.pow, "a, b", when={"b": 2.0}, a="d_y * 2 * a")
rule(math.pow, "a, b", when={"b": NONZERO}, a="d_y * b * a ** (b - 1)")
rule(math.pow, "a, b", a="d_y * power_slope(a, b)", b="d_y * xlogy(y, a)")

# Magnitudes and signs: |x| has derivative 0 at 0.
rule(math.fabs, "x", x="d_y * sign(x)")
rule(math.copysign, "x1, x2", x1="d_y * sign(x1) * math.copysign(1.0, x2)")
rule(math.hypot, "*coordinates", coordinates="hypot_cotangent(d_y, y, coordinates)")
rule(math.dist, "p, q", p="dist_cotangent(d_y, y, p, q)", q="dist_cotangent(d_y, y, q, p)")

# Special functions.
rule(math.erf, "x", x="d_y * TWO_OVER_SQRT_PI * math.exp(-x * x)")
rule(math.erfc, "x", x="-d_y * TWO_OVER_SQRT_PI * math.exp(-x * x)")
rule(math.gamma, "x", x="d_y * y * digamma(x)")
rule(math.lgamma, "x", x="d_y * digamma(x)")

# Remainders and the exponent-mantissa split: (x1 - y) / x2 is the integer quotient taken.
rule(math.fmod, "x1, x2", x1="d_y", x2="-d_y * ((x1 - y) / x2)")
rule(math.remainder, "x1, x2", x1="d_y", x2="-d_y * ((x1 - y) / x2)")
rule(math.modf, "x", x="d_y[0]")
rule(math.frexp, "x", x="math.ldexp(d_y[0], -y[1])")
rule(math.ldexp, "x, i", x="math.ldexp(d_y, i)")

# Sums and products of iterables: one cotangent per element.
rule(math.fsum, "seq", seq="each_cotangent(d_y, seq)")
if hasattr(math, "prod"):
    rule(math.prod, "iterable, *, start=1", iterable="prod_items_cotangent(d_y, iterable, start)",
         start="d_y * math.prod(iterable)")
if hasattr(math, "sumprod"):
    rule(math.sumprod, "p, q", p="sumprod_cotangent(d_y, p, q)", q="sumprod_cotangent(d_y, q, p)")
if hasattr(math, "fma"):
    rule(math.fma, "a, b, c", a="d_y * b", b="d_y * a", c="d_y")

integer_valued(math.floor, math.ceil, math.trunc, math.factorial, math.gcd, math.isqrt)
integer_valued(*[getattr(math, name) for name in ("comb", "perm", "lcm") if hasattr(math, name)])
constant_function(math.isfinite, math.isnan, math.isinf, math.isclose,
                  *[getattr(math, name) for name in ("nextafter", "ulp") if hasattr(math, name)],
                  reason="its result does not change with its arguments' values almost everywhere")
