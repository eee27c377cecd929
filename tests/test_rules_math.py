"""The ``math`` rules, each checked against central finite differences."""

import math

import numpy as np
import pytest
from gradcheck import case, module_rules, run_case, template_problems, untested

from adtrans import registry
from adtrans.rules.support import digamma

CASES = [
    case(math.sin, 0.7), case(math.cos, 0.7), case(math.tan, 0.4),
    case(math.asin, 0.3), case(math.acos, 0.3), case(math.atan, 1.7),
    case(math.atan2, 0.6, -1.3),
    case(math.sinh, 0.8), case(math.cosh, 0.8), case(math.tanh, 0.8),
    case(math.asinh, 1.2), case(math.acosh, 1.9), case(math.atanh, 0.45),
    case(math.degrees, 0.3), case(math.radians, 40.0),
    case(math.exp, 1.3), case(math.expm1, 0.2),
    case(math.log, 2.5), case(math.log, 2.5, 3.0), case(math.log2, 2.5), case(math.log10, 2.5),
    case(math.log1p, 0.4), case(math.sqrt, 2.2),
    case(math.pow, 1.7, 2), case(math.pow, 1.7, 2.0), case(math.pow, 1.7, 0.6), case(math.pow, 0.0, 0),
    case(math.fabs, -1.2), case(math.fabs, 0.9),
    case(math.copysign, 1.5, -2.0), case(math.copysign, -1.5, 2.0),
    case(math.hypot, 3.0, 4.0), case(math.hypot, 1.0, 2.0, 2.5),
    case(math.dist, [1.0, 2.0], [3.5, -1.0]),
    case(math.erf, 0.5), case(math.erfc, 0.5),
    case(math.gamma, 2.7), case(math.gamma, -1.3), case(math.lgamma, 4.2), case(math.lgamma, 0.3),
    case(math.fmod, 7.3, 2.1), case(math.fmod, -7.3, 2.1),
    case(math.remainder, 7.3, 2.1), case(math.remainder, -7.9, 2.1),
    case(math.modf, 3.7), case(math.frexp, 12.5), case(math.ldexp, 1.3, 3),
    case(math.fsum, [0.1, 0.2, 0.3]), case(math.fsum, (1.5, -2.0)),
]
if hasattr(math, "exp2"):
    CASES.append(case(math.exp2, 1.5))
if hasattr(math, "cbrt"):
    CASES.append(case(math.cbrt, 2.5))
if hasattr(math, "prod"):
    CASES += [case(math.prod, [1.5, 2.0, -0.5]), case(math.prod, [1.5, 0.0, 3.0]),
              case(math.prod, (2.0, 3.0), start=1.5)]
if hasattr(math, "sumprod"):
    CASES.append(case(math.sumprod, [1.0, 2.0], [3.0, -4.0]))
if hasattr(math, "fma"):
    CASES.append(case(math.fma, 1.5, 2.0, -0.5))


@pytest.mark.parametrize("c", CASES)
def test_rule_matches_finite_differences(c):
    run_case(c)


def test_every_math_rule_and_case_is_tested():
    assert untested("adtrans.rules.math", CASES) == []


@pytest.mark.parametrize("rule", module_rules("adtrans.rules.math"), ids=lambda r: r.name)
def test_templates_are_well_formed(rule):
    assert template_problems(rule) == []


def test_python_floats_get_python_float_cotangents():
    rule = registry.lookup_rule(math.atan2)
    _, pullback = registry.vjp_from_rule(rule, (0.5, 2.0), {})
    for cotangent in pullback(1.0).values():
        assert type(cotangent) is float


def test_pow_special_case_is_used_for_a_constant_square():
    rule = registry.lookup_rule(math.pow)
    assert rule.case_for({"b": 2}).when == {"b": 2}
    assert rule.case_for({"b": 3}).when == {"b": registry.NONZERO}   # inlined: b * a ** (b - 1)
    assert rule.case_for({"b": 0}).when == {}                         # power_slope: 0 even at a = 0


def test_pow_exponent_derivative_is_zero_at_a_zero_base():
    rule = registry.lookup_rule(math.pow)
    # Both wanted: a constant exponent 1.5 would select the case for a nonzero constant, without b.
    _, pullback = registry.vjp_from_rule(rule, (0.0, 1.5), {}, wanted=("a", "b"))
    assert pullback(1.0) == {"a": 0.0, "b": 0.0}


@pytest.mark.parametrize("x", [0.1, 0.5, 1.0, 2.5, 7.0, 30.0, -0.5, -2.3])
def test_digamma_is_the_derivative_of_lgamma(x):
    h = 1e-5
    assert digamma(x) == pytest.approx((math.lgamma(x + h) - math.lgamma(x - h)) / (2 * h), rel=1e-7, abs=1e-7)


def test_digamma_known_values():
    euler_gamma = 0.5772156649015329
    assert digamma(1.0) == pytest.approx(-euler_gamma, rel=1e-13)
    assert digamma(0.5) == pytest.approx(-euler_gamma - 2 * math.log(2), rel=1e-13)
    assert math.isnan(digamma(-2.0))


def test_integer_valued_and_constant_functions():
    for fn in (math.floor, math.ceil, math.trunc):
        assert registry.integer_valued_name(fn) is not None
    for fn in (math.isfinite, math.isnan, math.isinf):
        assert registry.is_constant_function(fn)


def test_hypot_at_the_origin_has_zero_cotangent():
    rule = registry.lookup_rule(math.hypot)
    _, pullback = registry.vjp_from_rule(rule, (0.0, 0.0), {})
    assert pullback(1.0)["coordinates"] == (0.0, 0.0)


def test_fsum_cotangent_of_an_array_is_an_array():
    rule = registry.lookup_rule(math.fsum)
    x = np.array([1.0, 2.0], dtype=np.float32)
    _, pullback = registry.vjp_from_rule(rule, (x,), {})
    d = pullback(2.0)["seq"]
    assert d.dtype == np.float32 and d.tolist() == [2.0, 2.0]
