"""Forwarded arguments: ``f(*xs)`` and ``f(**options)`` calls, and ``**kwargs`` parameters.

A call that unpacks a sequence or a mapping is dispatched when it runs (the
values it spreads are known only then); the tangent of ``xs`` is a tuple (a
list for a list) and of ``options`` a dict, like those of any container. A
function with a ``**options`` parameter differentiates each keyword it
collects as an argument of its own, named by its keyword in `wrt`; the name
of the parameter itself asks for the whole dict (see `test_varargs` for
``*args``).
"""

import math

import numpy as np
import pytest

import adtrans


def shifted_sine(x, scale=1.0, shift=0.0):
    return math.sin(x * scale) + shift


def spreads_a_tuple(x, y):
    arguments = (x * y, y)
    return shifted_sine(*arguments)


def spreads_a_mapping(x, y):
    options = {"scale": y, "shift": x * x}
    return shifted_sine(x, **options)


def spreads_both(x, y):
    head = [x]
    return shifted_sine(*head, y, **{"shift": y * y})


def layered(x, *layers):
    for W in layers:
        x = np.tanh(x @ W)
    return np.sum(x)


def forwards_layers(x, W1, W2):
    layers = [W1, W2]
    return layered(x, *layers) + layered(x, *layers[:1])


def with_options(x, **options):
    return x * options["a"] + options.get("b", 1.0) ** 2


def calls_with_options(x, y):
    return with_options(x, a=y, b=x * y) + with_options(y, a=x)


def forwards_options(x, **options):
    return shifted_sine(x, **options)


def scalar_fd(f, args, i, eps=1e-6):
    args_plus, args_minus = list(args), list(args)
    args_plus[i] += eps
    args_minus[i] -= eps
    return (f(*args_plus) - f(*args_minus)) / (2 * eps)


@pytest.mark.parametrize("f", [spreads_a_tuple, spreads_a_mapping, spreads_both, calls_with_options])
def test_spread_calls_match_finite_differences(f):
    args = (0.7, 1.3)
    got = adtrans.gradient(f, *args)
    for i, g in enumerate(got):
        assert type(g) is float
        assert g == pytest.approx(scalar_fd(f, args, i), rel=1e-6, abs=1e-8)


def test_spread_calls_of_array_functions():
    rng = np.random.default_rng(0)
    x, W1, W2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 4)), rng.standard_normal((4, 2))
    adtrans.check_gradient(forwards_layers, x, W1, W2)
    d_x, d_W1, d_W2 = adtrans.gradient(forwards_layers, x, W1, W2)
    assert d_W2.shape == W2.shape and d_W1.shape == W1.shape


def test_spread_call_generated_code_shows_the_call_as_written():
    text = adtrans.generated_source(spreads_both)
    assert "spread_call_with_pullback(shifted_sine, (0, 1, 2), ('*', '', '**'), head, y, " in text


def test_a_spread_mapping_gets_a_dict_tangent():
    def f(x, options):
        return shifted_sine(x, **options)

    d_x, d_options = adtrans.gradient(f, 0.5, {"scale": 2.0, "shift": 1.0})
    assert d_x == pytest.approx(2.0 * math.cos(1.0))
    assert d_options == pytest.approx({"scale": 0.5 * math.cos(1.0), "shift": 1.0})


def test_a_spread_list_gets_a_list_tangent():
    def f(xs):
        return shifted_sine(*xs)

    (d_xs,) = (adtrans.gradient(f, [0.5, 2.0]),)
    assert isinstance(d_xs, list)
    assert d_xs == pytest.approx([2.0 * math.cos(1.0), 0.5 * math.cos(1.0)])


def test_numpy_methods_with_spread_arguments():
    def f(x):
        axes = (1, 0)
        options = {"axis": 1}
        weights = np.arange(6.0).reshape(3, 2)
        return np.sum(x.transpose(*axes) * weights) + np.sum(x.reshape(*x.shape[::-1]).sum(**options) ** 2)

    x = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    adtrans.check_gradient(f, x)


def test_keyword_arguments_collected_by_kwargs_are_arguments():
    value_args = {"a": 2.0, "b": 3.0}
    d_x, d_a, d_b = adtrans.gradient(with_options, 1.0, **value_args)
    assert (d_x, d_a, d_b) == (2.0, 1.0, 6.0)
    assert adtrans.gradient(with_options, 1.0, wrt="b", **value_args) == 6.0
    assert adtrans.gradient(with_options, 1.0, wrt=("x", "a"), **value_args) == (2.0, 1.0)
    assert adtrans.gradient(with_options, 1.0, wrt="options", **value_args) == {"a": 1.0, "b": 6.0}


def test_a_default_from_get_gets_the_cotangent_when_used():
    def f(x, y):
        options = {"a": x}
        return options.get("a", y) * 3.0 + options.get("missing", y) * 5.0

    assert adtrans.gradient(f, 1.0, 2.0) == (3.0, 5.0)


def test_kwargs_forwarded_again():
    got = adtrans.gradient(forwards_options, 0.5, scale=2.0, shift=1.0)
    assert got == pytest.approx((2.0 * math.cos(1.0), 0.5 * math.cos(1.0), 1.0))


def test_kwargs_ints_are_promoted_only_when_named():
    assert adtrans.gradient(with_options, 1.0, a=2) == 2.0
    assert adtrans.gradient(with_options, 1.0, wrt="a", a=2) == 1.0


def test_kwargs_function_with_arrays_matches_finite_differences():
    def loss(W, X, **hyper):
        penalty = hyper.get("l2", 0.0) * np.sum(W ** 2)
        return np.mean(np.tanh(X @ W) ** 2) + penalty

    rng = np.random.default_rng(1)
    W, X = rng.standard_normal((3, 2)), rng.standard_normal((5, 3))
    adtrans.check_gradient(lambda W, X, l2: loss(W, X, l2=l2), W, X, 0.3)
    d_W, d_l2 = adtrans.gradient(loss, W, X, l2=0.3, wrt=("W", "l2"))
    assert d_l2 == pytest.approx(np.sum(W ** 2))
    np.testing.assert_array_equal(d_W, adtrans.gradient(lambda W: loss(W, X, l2=0.3), W))


def test_a_keyword_given_twice_is_the_error_python_gives():
    def f(x):
        options = {"scale": x}
        return shifted_sine(x, scale=2.0, **options)

    with pytest.raises(TypeError, match="multiple values for keyword argument 'scale'"):
        adtrans.gradient(f, 1.0)


def test_starred_in_a_display_of_constants_works():
    def f(x):
        return np.sum(x.reshape((*x.shape, 1)) * 2.0) + np.sum(x.reshape([*x.shape[:1], -1]))

    x = np.linspace(0.0, 1.0, 4)
    np.testing.assert_array_equal(adtrans.gradient(f, x), np.full(4, 3.0))


def test_starred_in_a_display_of_differentiated_values_differentiates():
    # Once a located error (see tests/test_sequences.py): each part gets its run of the cotangent.
    def f(x, rest):
        values = (x, *rest)
        return values[0] * values[-1]

    assert adtrans.gradient(f, 1.0, (2.0, 3.0)) == (3.0, (0.0, 1.0))
