"""Scalar simplification of the fused gradient functions (adtrans/simplify.py), and the entry
points that call them directly (`gradient`, `gradient_of`, `value_with_gradient_of`).

The pass folds the constant seed in, nests single-use float temporaries and
removes forward code only the value needed; none of it may change a number
or hide an error the function raises.  Random float programs
(tests/test_random_programs.py) check the numbers bit for bit; here the
generated text is pinned and the edge cases are named.
"""

import inspect
import linecache
import math
import textwrap

import numpy as np
import pytest

import adtrans
from adtrans import api
from adtrans.simplify import simplify_scalar


def simplified(source, floats=("x", "y")):
    resolve = {"math": math, "np": np}.get
    return simplify_scalar(textwrap.dedent(source), frozenset(floats), resolve)


def test_the_seed_is_folded_into_the_products_that_read_it():
    out = simplified("""\
        def f_gradient(x, y):
            s = math.sin(x)
            c = math.cos(y)
            d_result = 1.0
            d_c = -d_result * math.sin(c)
            d_s = d_result * y
            d_x = d_s * math.cos(x)
            d_y = d_c * math.sin(y)
            return (d_x, d_y)""")
    # `s` is read by nothing, but math.sin raises for an infinite x: it stays.
    assert out.text == textwrap.dedent("""\
        def f_gradient(x, y):
            s = math.sin(x)
            c = math.cos(y)
            d_c = -math.sin(c)
            d_x = y * math.cos(x)
            d_y = d_c * math.sin(y)
            return (d_x, d_y)""")
    assert out.returns_floats


def test_a_product_with_something_that_may_not_be_a_float_keeps_its_factor():
    # 1.0 * a makes a new array of a's values; `a` alone would alias the caller's array.
    out = simplified("""\
        def f_gradient(x, a):
            d_result = 1.0
            d_a = d_result * a
            d_x = d_result * x
            return (d_x, d_a)""", floats=("x",))
    assert "d_a = 1.0 * a" in out.text and "d_x = x" in out.text
    assert not out.returns_floats


@pytest.mark.parametrize("line,stays", [
    ("r = math.log(x)", True),          # raises for x <= 0
    ("r = math.sin(x)", True),          # raises for an infinite x
    ("r = math.sin(math.sin(x))", True),
    ("r = math.exp(x)", True),          # raises OverflowError
    ("r = x / y", True),                # raises ZeroDivisionError
    ("r = x ** 2.5", True),             # may raise OverflowError (or make a complex number)
    ("r = print(x)", True),             # an effect
    ("r = math.sin(math.exp(x))", True),
    ("r = math.sin(math.tanh(x))", False),      # sin of a value in [-1, 1]
    ("r = math.cos(math.tanh(x) * 3.0 + math.atan(y))", False),
    ("r = math.tanh(x) + math.erf(y) * x", False),
    ("r = -x * y + 2.0", False),
])
def test_dead_code_stays_only_if_it_may_raise_or_has_an_effect(line, stays):
    source = f"""\
        def f_gradient(x, y):
            {line}
            d_x = y
            return d_x"""
    assert (line in simplified(source).text) == stays


def test_an_augmented_assignment_reads_its_target():
    out = simplified("""\
        def f_gradient(x, y):
            t = x * y
            t += 1.0
            d_x = y
            return d_x""")
    assert "t = x * y" in out.text and "t += 1.0" in out.text


def test_a_temporary_is_nested_only_into_the_next_line_that_reads_it_once():
    out = simplified("""\
        def f_gradient(x, y):
            a = math.sin(x)
            b = a * y
            # another source line
            c = b * 2.0
            d = c + c
            return d""")
    assert out.text == textwrap.dedent("""\
        def f_gradient(x, y):
            b = math.sin(x) * y
            # another source line
            c = b * 2.0
            d = c + c
            return d""")


def test_a_loop_carried_float_stays_a_float_and_a_replayed_name_is_trusted():
    out = simplified("""\
        def f_gradient(x, y):
            tape = []
            for i in range(3):
                tape.append(x)
                x = x * y
            d_x = 1.0
            for x in reversed(tape):
                d_x = d_x * y + -x
            return d_x""")
    assert "d_x = d_x * y - x" in out.text
    assert out.returns_floats


# -- the generated functions gradient() runs

def sines(x, y):
    return math.sin(math.sin(math.sin(x))) + math.cos(math.cos(math.cos(y)))


SINES_GRADIENT = '''\
def sines_gradient(x, y):
    # tests/test_simplify.py:{line}: return math.sin(math.sin(math.sin(x))) + math.cos(math.cos(math.cos(y)))
    sin_x = math.sin(x)
    sin_sin_x = math.sin(sin_x)
    cos_y = math.cos(y)
    cos_cos_y = math.cos(cos_y)
    d_y = -(math.sin(cos_cos_y) * math.sin(cos_y)) * math.sin(y)
    d_x = math.cos(sin_sin_x) * math.cos(sin_x) * math.cos(x)
    return (d_x, d_y)
'''


@pytest.fixture
def at_repository_root(monkeypatch):
    import pathlib
    monkeypatch.chdir(pathlib.Path(__file__).resolve().parent.parent)
    for cache in (api._cache, api._instances, api._plans, api._by_type):
        cache.clear()
    yield
    for cache in (api._cache, api._instances, api._plans, api._by_type):
        cache.clear()


def test_gradient_runs_the_handwritten_chain_rule(at_repository_root):
    # Like the gradient one would write by hand: the result itself is never computed.
    assert adtrans.gradient(sines, 2.0, 3.0) == adtrans.value_with_pullback(sines, 2.0, 3.0)[1](1.0)
    plan = api._plan_for(sines, (2.0, 3.0), {}, None)
    line = sines.__code__.co_firstlineno + 1
    assert textwrap.dedent(inspect.getsource(plan.gradient_only)) == SINES_GRADIENT.format(line=line)
    assert api._by_type[(sines, None, float, float)].gradient is plan.gradient_only


def sin_of_double(x):
    return math.sin(x * 2.0)


def unused_log(x):
    y = math.log(x)
    return x * 3.0


def overflowing(x):
    return math.exp(x) * 0.0 + x


@pytest.mark.parametrize("f,x,error", [
    (sin_of_double, math.inf, ValueError),
    (unused_log, -1.0, ValueError),
    (overflowing, 1000.0, OverflowError),
])
def test_gradient_raises_where_the_function_raises(f, x, error):
    with pytest.raises(error):
        f(x)
    with pytest.raises(error):
        adtrans.gradient(f, x)
    with pytest.raises(error):
        adtrans.gradient_of(f)(x)


def mixed(x, y):
    return np.sin(x) * y      # np.sin of a float is a NumPy scalar: no float proof


def test_gradients_keep_their_types_without_a_float_proof():
    for _ in range(2):
        d_x, d_y = adtrans.gradient(mixed, 0.5, 2.0)
        assert type(d_x) is float and type(d_y) is float
        assert d_x == pytest.approx(2.0 * math.cos(0.5)) and d_y == pytest.approx(math.sin(0.5))


def product(x, y):
    return x * math.sin(y)


def with_default(x, y=2.0):
    return x * math.sin(y)


def test_gradient_of_is_a_function_with_the_parameters_of_f():
    g = adtrans.gradient_of(product)
    assert g.__name__ == "product" and g.__wrapped__ is product
    assert g.__code__.co_name == "gradient_of_product"
    assert inspect.signature(g) == inspect.signature(product)
    want = (math.sin(3.0), 2.0 * math.cos(3.0))
    assert g(2.0, 3.0) == want and g(2.0, 3.0) == want      # the second call: the fast way
    assert g.__globals__["by_types"][(float, float)] is not None
    assert g(x=2.0, y=3.0) == want and g(2.0, y=3.0) == want
    assert g(2, 3.0) == want[1]         # an int argument is not differentiated
    d_x, d_y = g(np.float32(2.0), np.float32(3.0))
    assert type(d_x) is np.float32 and d_x == pytest.approx(want[0])
    with pytest.raises(adtrans.DifferentiationError, match="scalar result"):
        g(np.array([2.0, 1.0]), 3.0)


def test_gradient_of_in_every_layout():
    want = (math.sin(3.0), 2.0 * math.cos(3.0))
    assert adtrans.gradient_of(product, wrt=("y", "x"))(2.0, 3.0) == want[::-1]
    assert adtrans.gradient_of(product, wrt=("x",))(2.0, 3.0) == want[:1]
    assert adtrans.gradient_of(product, wrt="y")(2.0, 3.0) == want[1]
    assert adtrans.gradient(product, 2.0, 3.0, wrt=("y", "x")) == want[::-1]
    assert adtrans.gradient(product, 2.0, 3.0, wrt=("x",)) == want[:1]
    g = adtrans.gradient_of(with_default)     # defaults: the general entry point
    assert g(2.0) == math.sin(2.0) and g(2.0, 3.0) == want
    v = adtrans.value_with_gradient_of(product)
    assert v(2.0, 3.0) == (2.0 * math.sin(3.0), want) and v(2.0, 3.0) == (2.0 * math.sin(3.0), want)
    assert adtrans.value_with_gradient(product, 2.0, 3.0) == (2.0 * math.sin(3.0), want)


# -- the entry value_with_gradient runs for arrays: dtype and shape checks written out

def two_layers(W, b, X):
    return np.mean(np.tanh(X @ W + b) ** 2)


def not_a_scalar(W, b, X):
    return np.tanh(X @ W + b)


def test_array_calls_run_a_checked_entry_and_fall_back_when_a_check_fails():
    rng = np.random.default_rng(0)
    W, b, X = (rng.normal(size=s).astype(np.float32) for s in ((3, 2), (2,), (5, 3)))
    first = adtrans.value_with_gradient(two_layers, W, b, X)
    typed = api._by_type[(two_layers, None, np.ndarray, np.ndarray, np.ndarray)]
    entry = typed.value_with_gradient
    assert entry.__code__.co_name == "two_layers_entry"
    assert "type(X) is ndarray and X.dtype is dtype_X:" in \
        "".join(linecache.getlines(entry.__code__.co_filename))
    again = adtrans.value_with_gradient(two_layers, W, b, X)
    assert again[0] == first[0] and all(np.array_equal(g, h) for g, h in zip(again[1], first[1]))
    # float64 arrays: the dtype check fails, the general path answers in their dtype.
    d64 = adtrans.value_with_gradient(two_layers, *(a.astype(np.float64) for a in (W, b, X)))[1]
    assert all(g.dtype == np.float64 for g in d64)
    # float64 X with float32 weights: the gradients come out float64 and are given W's dtype.
    mixed = adtrans.value_with_gradient(two_layers, W, b, X.astype(np.float64))[1]
    assert [g.dtype for g in mixed] == [np.float32, np.float32, np.float64]
    np.testing.assert_allclose(mixed[0], first[1][0], rtol=1e-5)
    # A batch of another size: the same entry, the right shapes.
    d_W, d_b, d_X = adtrans.value_with_gradient(two_layers, W, b, X[:2])[1]
    assert d_X.shape == (2, 3) and d_W.shape == W.shape


def test_the_entry_names_the_function_when_its_result_is_not_a_scalar():
    rng = np.random.default_rng(1)
    args = [rng.normal(size=s) for s in ((3, 2), (2,), (5, 3))]
    for _ in range(2):
        with pytest.raises(adtrans.DifferentiationError, match="gradient needs a scalar result.*not_a_scalar"):
            adtrans.value_with_gradient(not_a_scalar, *args)


def test_the_array_entry_is_found_by_function_and_wrt_and_checks_every_argument():
    rng = np.random.default_rng(2)
    W, b, X = (rng.normal(size=s).astype(np.float32) for s in ((3, 2), (2,), (5, 3)))
    want = adtrans.value_with_gradient(two_layers, W, b, X)
    count, entry = api._array_entries[(two_layers, None)]
    assert count == 3 and "type(W) is ndarray and W.dtype is dtype_W" in \
        "".join(linecache.getlines(entry.__code__.co_filename))
    # Other layouts alternate with it: each goes the general way, none is confused with another.
    for _ in range(2):
        got = adtrans.value_with_gradient(two_layers, W, b, X)
        assert got[0] == want[0] and all(np.array_equal(g, h) for g, h in zip(got[1], want[1]))
        d_W, d_b, d_X = adtrans.value_with_gradient(two_layers, W.astype(np.float64), b, X)[1]
        assert d_W.dtype == np.float64 and d_b.dtype == np.float32
        d_W, d_b = adtrans.value_with_gradient(two_layers, W, b, X, wrt=["W", "b"])[1]   # a list
        np.testing.assert_array_equal(d_W, want[1][0])
        value, (d_W, d_b, d_X) = adtrans.value_with_gradient(two_layers, W, 0.5, X)
        assert type(d_b) is float and value == two_layers(W, 0.5, X)
    assert adtrans.value_with_gradient(two_layers, W, b, X[:1])[1][2].shape == (1, 3)


def newton_cube_root(a):
    x = a
    it = 0
    while it < 50:
        step = (x ** 3 - a) / (3.0 * x ** 2)
        x = x - step
        if abs(step) < 1e-12:
            break
        it += 1
    return x


def test_negated_products_are_subtracted_and_plain_numbers_not_released():
    text = adtrans.generated_source(newton_cube_root, gradient=True, floats=("a",))
    # `d + -e * f / g` is written `d - e * f / g` (exact), the pow rule's `3 - 1` folded.
    assert "d_x_1 = d_x_1 - d_step * step / three_times_x_1_pow_2 * 3.0 * (2 * x_1)" in text
    assert "x_1 ** 2" in text and "(3 - 1)" not in text and "+ -" not in text
    # Counters, flags and conditions hold numbers: releasing them frees nothing.
    released = {name.strip() for line in text.splitlines() if line.strip().endswith("= None")
                for name in line.split("=")[:-1]}
    assert not released & {"it", "it_2", "broke", "broke_2", "condition", "condition_2"}, released
    for a in (0.5, 2.0, 27.0):
        assert adtrans.gradient(newton_cube_root, a) == pytest.approx(a ** (-2.0 / 3.0) / 3.0, rel=1e-9)
