"""Functions with a ``*args`` parameter: each argument it collects is an argument of its own.

``gradient(f, x, a, b)`` of ``def f(x, *ws)`` is ``(d_x, d_a, d_b)``, as
JAX's ``argnums`` counts positional arguments; positions in `wrt` count the
collected ones too, and the name of the ``*args`` parameter stands for the
whole tuple. The same holds for registered derivatives taking ``*args``
(their pullbacks return a tuple for it), called directly or from
differentiated code.
"""

import math

import numpy as np
import pytest

import adtrans


def weighted(x, *ws):
    total = 0.0
    for w in ws:
        total = total + w * math.sin(x)
    return total


def first_two(x, *ws):
    return ws[0] * x + math.sin(ws[1])


def arrays(x, *ws):
    return np.sum(np.tanh(x @ ws[0]) * ws[1])


def calls_weighted(x, y):
    return weighted(x, y, 2.0 * y) + first_two(y, x, x)


def scale_vjp(x, *ws):
    value = x * sum(ws)
    return value, lambda d: (d * sum(ws), tuple(d * x for _ in ws))


scale = adtrans.differentiable_function(scale_vjp)


def calls_scale(x, a, b):
    return scale(x, a, b) * math.cos(a)


def test_one_tangent_per_argument():
    s = math.sin(2.0)
    assert adtrans.gradient(weighted, 2.0, 3.0, 4.0) == pytest.approx((7.0 * math.cos(2.0), s, s))
    assert adtrans.gradient(first_two, 2.0, 3.0, 4.0) == (3.0, 2.0, math.cos(4.0))
    for f, args in ((weighted, (2.0, 3.0, 4.0)), (first_two, (0.5, -1.0, 2.0))):
        adtrans.check_gradient(f, *args)


def test_wrt_counts_positions_and_names_the_tuple():
    assert adtrans.gradient(first_two, 2.0, 3.0, 4.0, wrt=2) == math.cos(4.0)
    assert adtrans.gradient(first_two, 2.0, 3.0, 4.0, wrt=(2, "x")) == (math.cos(4.0), 3.0)
    assert adtrans.gradient(first_two, 2.0, 3.0, 4.0, wrt=-1) == math.cos(4.0)
    assert adtrans.gradient(first_two, 2.0, 3.0, 4.0, wrt="ws") == (2.0, math.cos(4.0))
    with pytest.raises(adtrans.DifferentiationError, match="wrt position 3 is out of range"):
        adtrans.gradient(first_two, 2.0, 3.0, 4.0, wrt=3)


def test_ints_are_constants_unless_named():
    assert adtrans.gradient(first_two, 2.0, 3, 4.0) == (3.0, math.cos(4.0))
    d = adtrans.gradient(first_two, 2.0, 3, 4.0, wrt=1)
    assert d == 2.0 and type(d) is float
    with pytest.raises(adtrans.DifferentiationError, match="argument 0 of '\\*ws'.*str"):
        adtrans.gradient(first_two, 2.0, "a", 4.0, wrt=1)


def test_arrays_keep_their_shapes_and_dtypes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    w0 = rng.normal(size=(3, 2)).astype(np.float32)
    w1 = rng.normal(size=(4, 2)).astype(np.float32)
    d_x, d_w0, d_w1 = adtrans.gradient(arrays, x, w0, w1)
    assert [(d.shape, d.dtype) for d in (d_x, d_w0, d_w1)] == [(a.shape, a.dtype) for a in (x, w0, w1)]
    adtrans.check_gradient(arrays, x.astype(np.float64), w0.astype(np.float64), w1.astype(np.float64))


def test_called_from_differentiated_code():
    x, y = 0.7, -1.3
    # sin(x) * (y + 2y) + (x * y + sin(x))
    want = (math.cos(x) * 3.0 * y + y + math.cos(x), math.sin(x) * 3.0 + x)
    assert adtrans.gradient(calls_weighted, x, y) == pytest.approx(want)
    adtrans.check_gradient(calls_weighted, x, y)


def test_a_registered_derivative_taking_args():
    assert adtrans.gradient(scale, 2.0, 3.0, 4.0) == (7.0, 2.0, 2.0)
    assert adtrans.gradient(scale, 2.0, 3.0, 4.0, wrt=(2, 0)) == (2.0, 7.0)
    value, (d_x, d_a, d_b) = adtrans.value_with_gradient(calls_scale, 2.0, 3.0, 4.0)
    assert value == 14.0 * math.cos(3.0)
    assert (d_x, d_b) == (7.0 * math.cos(3.0), 2.0 * math.cos(3.0))
    assert d_a == pytest.approx(2.0 * math.cos(3.0) - 14.0 * math.sin(3.0))
    adtrans.check_gradient(calls_scale, 2.0, 3.0, 4.0)


def bad_vjp(x, *ws):
    return x * sum(ws), lambda d: (d, d, d)     # one tangent per argument: not the contract


def test_a_registered_derivative_must_return_a_tuple_for_args():
    bad = adtrans.differentiable_function(bad_vjp)
    with pytest.raises(adtrans.DifferentiationError, match="must return 2 tangents.*a tuple for '\\*ws'"):
        adtrans.gradient(bad, 2.0, 3.0, 4.0)
