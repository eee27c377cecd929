"""Nested ``def`` and ``lambda`` reading the enclosing function's differentiated values.

A closure is a value made of the locals it reads: calling it, or passing it
to a function that calls it, sends a derivative back into those locals. Its
tangent is a dict of theirs by name. Its generated code takes its free
variables as keyword-only parameters, given their values when it is called,
so a closure made in a loop pulls back with the values its forward saw.
"""

import math

import numpy as np
import pytest

import adtrans


def scalar_fd(f, args, i, eps=1e-6):
    plus, minus = list(args), list(args)
    plus[i] += eps
    minus[i] -= eps
    return (f(*plus) - f(*minus)) / (2 * eps)


def rk4(f, y, dt, steps):
    for _ in range(steps):
        k1 = f(y)
        k2 = f(y + 0.5 * dt * k1)
        k3 = f(y + 0.5 * dt * k2)
        k4 = f(y + dt * k3)
        y = y + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def decay(k, y0):
    def rhs(y):
        return -k * y
    return rk4(rhs, y0, 0.1, 10)


def nested_twice(a, x):
    def inner(v):
        return a * v

    def outer(v):
        return inner(v) + a
    return outer(x) * 2.0


def lambda_model(w, b, x):
    model = lambda inputs: math.tanh(inputs * w + b)
    return model(x) ** 2


def made_in_a_loop(w, x):
    total = 0.0
    for i in range(3):
        def term(v):
            return v * w * i
        total = total + term(x)
    return total


def loop_carried(w, x):
    for _ in range(3):
        step = lambda v: v * w + 0.1
        w = step(x)
    return w


def sort_key_reads_w(w, x, y):
    ys = sorted([x, y], key=lambda t: t * w)
    return ys[0] * w


def mapped(w, xs, ys):
    return sum(map(lambda t: t * w, xs)) + sum(map(math.sin, xs)) + sum(map(lambda a, b: a * b * w, xs, ys))


@pytest.mark.parametrize("f, args", [
    (decay, (0.7, 2.0)), (nested_twice, (1.5, 2.0)), (lambda_model, (0.3, -0.2, 1.1)),
    (made_in_a_loop, (1.5, 2.0)), (loop_carried, (1.5, 2.0)), (sort_key_reads_w, (1.5, 3.0, 1.0)),
])
def test_closures_match_finite_differences(f, args):
    got = adtrans.gradient(f, *args)
    for i, g in enumerate(got):
        assert g == pytest.approx(scalar_fd(f, args, i), rel=1e-6, abs=1e-8), f"argument {i}"


def test_a_loop_variable_read_by_a_closure_is_the_value_of_its_pass():
    # The pullback runs after the loop has moved i on: it must see the i its forward saw.
    def f(x):
        total = 0.0
        for i in range(3):
            scaled = lambda v: v * i
            total = total + scaled(x)
        return total

    assert adtrans.gradient(f, 2.0) == 3.0


def test_map_is_the_comprehension_it_means():
    args = (1.5, [1.0, 2.0], [3.0, 4.0])
    d_w, d_xs, d_ys = adtrans.gradient(mapped, *args)
    assert d_w == pytest.approx(3.0 + 11.0)
    assert d_xs == pytest.approx([1.5 + math.cos(1.0) + 4.5, 1.5 + math.cos(2.0) + 6.0])
    assert d_ys == pytest.approx([1.5, 3.0])
    assert "math.sin(" in adtrans.generated_source(mapped)


def test_closure_over_arrays():
    def loss(W, b, X):
        layer = lambda h: np.tanh(h @ W + b)
        return np.sum(layer(layer(X @ np.eye(3))) ** 2)

    rng = np.random.default_rng(0)
    adtrans.check_gradient(loss, rng.standard_normal((3, 3)), rng.standard_normal(3), rng.standard_normal((4, 3)))


def test_generated_code_reads_the_closure_cotangent():
    def f(w, x):
        def g(v):
            return v * w
        return g(x) ** 2

    text = adtrans.generated_source(f)
    assert "call_with_pullback(g, (-1, 0), x)" in text
    assert "d_w = captured_cotangent(d_g, 'w', w)" in text
    assert adtrans.gradient(f, 2.0, 3.0) == (36.0, 24.0)


def test_no_zero_derivative_warning_for_a_value_only_a_closure_reads(recwarn):
    def f(w, x):
        return (lambda v: v * w)(x)

    assert adtrans.gradient(f, 2.0, 3.0) == (3.0, 2.0)
    assert not [w for w in recwarn if issubclass(w.category, adtrans.ZeroDerivativeWarning)]


def test_a_recursive_closure_over_differentiated_values_is_a_located_error():
    def f(a, n):
        def power(k):
            return 1.0 if k == 0 else a * power(k - 1)
        return power(n)

    with pytest.raises(adtrans.DifferentiationError, match="calls itself") as info:
        adtrans.gradient(f, 1.3, 3, wrt=0)
    assert info.value.lineno == f.__code__.co_firstlineno + 1


def test_a_recursive_closure_over_constants_is_fine():
    def f(x, n):
        def power(v, k):
            return 1.0 if k == 0 else v * power(v, k - 1)
        return power(x, n)

    assert adtrans.gradient(f, 1.5, 3, wrt=0) == pytest.approx(3 * 1.5 ** 2)


def test_a_stored_closure_whose_variable_is_assigned_again_is_a_located_error():
    # Python's closure, called from the list, would see the new k; adtrans's cannot follow it there.
    def f(w):
        k = w
        stored = [lambda v: v * k]
        k = 2 * w
        return stored[0](1.0)

    with pytest.raises(adtrans.DifferentiationError, match="'k' is assigned again after a closure") as info:
        adtrans.gradient(f, 1.5)
    assert info.value.lineno == f.__code__.co_firstlineno + 3


def test_a_closure_called_or_passed_before_its_variable_is_assigned_again_is_fine():
    def apply(g, x):
        return g(x)

    def f(w, x):
        k = w
        g = lambda v: v * k
        before = g(x) + apply(g, x) + apply(lambda v: v * k, x)
        k = 2 * w
        return before + g(x) + apply(g, x)

    assert adtrans.gradient(f, 1.5, 2.0) == pytest.approx((3 * 2.0 + 2 * 4.0, 3 * 1.5 + 2 * 3.0))


def test_a_default_computed_from_locals_is_a_located_error():
    def f(w, x):
        g = lambda v, s=w * 2.0: v * s
        return g(x)

    with pytest.raises(adtrans.DifferentiationError, match="default value of a nested function computed") as info:
        adtrans.gradient(f, 1.5, 2.0)
    assert info.value.lineno == f.__code__.co_firstlineno + 1
    assert "give the default that name" in str(info.value)


# Several lambdas on one line: each is found by the columns its code came from (Python 3.11+),
# or by its bytecode and the names it reads.
POWERS = [lambda x: np.sum(x ** 3), lambda x: np.sum(x ** 4), lambda x: (lambda y: np.sum(y * x))(2.0)]


def lambdas_over_locals_on_one_line(x, a, b):
    scaled, waved = (lambda t: a * t), (lambda t: b * np.sin(t))
    return np.sum(waved(x)) + np.sum(scaled(x))


def test_each_lambda_on_a_line_is_differentiated_from_its_own_source():
    x = np.array([0.5, -1.5, 2.0])
    np.testing.assert_allclose(adtrans.gradient(POWERS[0], x), 3 * x ** 2)
    np.testing.assert_allclose(adtrans.gradient(POWERS[1], x), 4 * x ** 3)
    np.testing.assert_allclose(adtrans.gradient(POWERS[2], x), np.full(3, 2.0))
    d_x, d_a, d_b = adtrans.gradient(lambdas_over_locals_on_one_line, x, 0.7, -1.3)
    np.testing.assert_allclose(d_x, -1.3 * np.cos(x) + 0.7)
    assert (d_a, d_b) == pytest.approx((np.sum(x), np.sum(np.sin(x))))
