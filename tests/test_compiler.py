"""The reverse transform on straight-line code: values, gradients, generated code, caching."""

import linecache
import math
import subprocess
import sys
import textwrap
import traceback
import warnings

import numpy as np
import pytest

import adtrans
from adtrans import api


def foo(x):
    return (x + x) * (x + x)


FOO_GENERATED = '''\
def foo_value_with_pullback(x):
    # tests/test_compiler.py:19: return (x + x) * (x + x)
    x_plus_x = x + x
    x_plus_x_1 = x + x
    result = x_plus_x * x_plus_x_1

    def pullback(d_result):
        # tests/test_compiler.py:19: return (x + x) * (x + x)
        d_x_plus_x = unbroadcast(d_result * x_plus_x_1, x_plus_x)
        d_x_plus_x_1 = unbroadcast(d_result * x_plus_x, x_plus_x_1)
        d_x = d_x_plus_x_1 + d_x_plus_x_1
        d_x = d_x + (d_x_plus_x + d_x_plus_x)
        return d_x
    return result, pullback
'''


def test_generated_code_of_foo_is_pinned(monkeypatch):
    monkeypatch.chdir(_repository_root())
    api._cache.clear()
    api._instances.clear()
    assert adtrans.generated_source(foo) == FOO_GENERATED


FOO_GRADIENT = '''\
def foo_value_with_gradient(x):
    # tests/test_compiler.py:19: return (x + x) * (x + x)
    x_plus_x = x + x
    x_plus_x_1 = x + x
    result = x_plus_x * x_plus_x_1
    d_x = x_plus_x + x_plus_x
    d_x = d_x + (x_plus_x_1 + x_plus_x_1)
    return result, d_x
'''

# What gradient() runs: the seed 1.0 folded in (no `1.0 * x_plus_x_1`), the result not computed.
FOO_GRADIENT_ONLY = '''\
def foo_gradient(x):
    # tests/test_compiler.py:19: return (x + x) * (x + x)
    x_plus_x = x + x
    x_plus_x_1 = x + x
    d_x = x_plus_x + x_plus_x
    d_x = d_x + (x_plus_x_1 + x_plus_x_1)
    return d_x
'''


def test_gradient_runs_one_fused_function(monkeypatch):
    # gradient() needs no pullback closure: the forward, the seed and the pullback's body run
    # as one function (what a debugger steps into); on a float it is plain float arithmetic.
    import inspect

    monkeypatch.chdir(_repository_root())
    api._cache.clear()
    api._instances.clear()
    api._plans.clear()
    api._by_type.clear()
    assert adtrans.gradient(foo, 3.0) == 24.0
    plan = api._plan_for(foo, (3.0,), {}, None)
    assert textwrap.dedent(inspect.getsource(plan.fused)) == FOO_GRADIENT
    assert textwrap.dedent(inspect.getsource(plan.gradient_only)) == FOO_GRADIENT_ONLY
    assert adtrans.value_with_gradient(foo, 3.0) == (36.0, 24.0)
    assert adtrans.gradient(foo, np.float32(3.0)) == np.float32(24.0)
    assert type(adtrans.gradient(foo, np.float32(3.0))) is np.float32
    with pytest.raises(adtrans.DifferentiationError, match="gradient needs a scalar result.*'foo'"):
        adtrans.gradient(foo, np.ones(2))


def test_value_with_pullback_of_foo():
    value, back = adtrans.value_with_pullback(foo, 3.0)
    assert value == 36.0
    assert back(1.0) == 24.0
    assert back(2.0) == 48.0   # a pullback can be called many times


def _repository_root():
    import pathlib
    return pathlib.Path(__file__).resolve().parent.parent


def test_generated_code_is_deterministic_across_processes():
    script = textwrap.dedent("""
        import sys; sys.path.insert(0, "tests")
        import adtrans, test_compiler
        print(adtrans.generated_source(test_compiler.mlp_loss, wrt=("W1", "b1", "W2", "b2")))
    """)
    root = _repository_root()
    runs = [subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    assert "def mlp_loss_value_with_pullback(W1, b1, W2, b2, X, Y):" in runs[0]


def mlp_loss(W1, b1, W2, b2, X, Y):
    h = np.maximum(X @ W1 + b1, 0.0)
    out = h @ W2 + b2
    return np.mean((out - Y) ** 2)


def _mlp_data(dtype=np.float64):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 5)).astype(dtype)
    Y = rng.normal(size=(7, 3)).astype(dtype)
    W1 = rng.normal(size=(5, 4)).astype(dtype)
    b1 = rng.normal(size=4).astype(dtype)
    W2 = rng.normal(size=(4, 3)).astype(dtype)
    b2 = rng.normal(size=3).astype(dtype)
    return W1, b1, W2, b2, X, Y


def test_mlp_gradient_matches_finite_differences():
    adtrans.check_gradient(mlp_loss, *_mlp_data(), wrt=("W1", "b1", "W2", "b2"))


def test_mlp_gradient_keeps_float32():
    data = _mlp_data(np.float32)
    value, grads = adtrans.value_with_gradient(mlp_loss, *data, wrt=("W1", "b1", "W2", "b2"))
    assert value.dtype == np.float32
    for g, w in zip(grads, data):
        assert g.shape == w.shape and g.dtype == np.float32


def test_activity_no_adjoint_for_inputs_not_asked_for():
    text = adtrans.generated_source(mlp_loss, wrt=("W1", "b1", "W2", "b2"))
    assert "d_X " not in text and "d_X=" not in text and "d_Y" not in text
    assert "d_X =" not in text


def reassigned(x, y):
    x = x * 2.0
    x = np.sin(x) * y
    y = x + y
    return x * y


def test_reassigned_variables_get_versions():
    text = adtrans.generated_source(reassigned)
    assert "x_1 = x * 2.0" in text and "x_2 = " in text
    adtrans.check_gradient(reassigned, 0.3, 1.7)


def swap(a, b):
    a, b = b, a * 2.0
    return a * b + a


def test_tuple_swap_and_unpacking():
    adtrans.check_gradient(swap, 0.5, 3.0)
    assert adtrans.gradient(swap, 0.5, 3.0) == pytest.approx((2 * 3.0, 2 * 0.5 + 1.0))


def pair(x):
    return x * 2.0, x * x


def uses_pair(x, y):
    a, b = pair(x)
    p = (a, y)
    first, second = p
    return first * second + b


def test_tuples_flow_through_calls_and_unpacking():
    adtrans.check_gradient(uses_pair, 1.3, -0.7)


def scale_helper(v, k):
    return v * k


def calls_helper(x):
    return scale_helper(x, 3.0) + scale_helper(x * x, 2.0)


def test_python_callees_are_transformed_recursively():
    text = adtrans.generated_source(calls_helper)
    assert "scale_helper_value_with_pullback" in text
    assert adtrans.gradient(calls_helper, 2.0) == pytest.approx(3.0 + 4.0 * 2.0)


def test_lambdas_and_closures_read_free_variables_at_call_time():
    k = 2.0
    f = lambda x: math.sin(x) * k  # noqa: E731
    assert adtrans.gradient(f, 0.5) == pytest.approx(math.cos(0.5) * 2.0)
    k = 5.0
    assert adtrans.gradient(f, 0.5) == pytest.approx(math.cos(0.5) * 5.0)


def two_lambdas():
    return (lambda x: x * 3.0), (lambda x: x * 5.0)


def test_two_lambdas_on_one_line_are_told_apart():
    three, five = two_lambdas()
    assert adtrans.gradient(three, 1.0) == 3.0
    assert adtrans.gradient(five, 1.0) == 5.0


def apply_twice(fn, x):
    return fn(fn(x))


def test_functions_passed_as_arguments_are_dispatched_at_run_time():
    text = adtrans.generated_source(apply_twice, wrt="x")
    assert "call_with_pullback(fn, (0,), x)" in text
    assert adtrans.gradient(apply_twice, np.sin, 0.3, wrt="x") == pytest.approx(
        math.cos(math.sin(0.3)) * math.cos(0.3))
    assert adtrans.gradient(apply_twice, lambda t: t * t * t, 1.1, wrt="x") == pytest.approx(
        9 * 1.1 ** 8)


def test_second_request_does_no_parsing(monkeypatch):
    def f(x):
        return np.exp(x) * 2.0

    adtrans.gradient(f, 1.0)
    calls = []
    monkeypatch.setattr(api, "parse_function", lambda fn: calls.append(fn))
    assert adtrans.gradient(f, 1.0) == pytest.approx(2 * math.e)
    adtrans.generated_source(f)
    assert calls == []


def test_generated_lines_show_in_tracebacks():
    def hook(d):
        raise ValueError("from the hook")

    def f(x):
        y = adtrans.with_derivative(x * 2.0, hook)
        return y * y

    _, back = adtrans.value_with_pullback(f, 1.0)
    with pytest.raises(ValueError) as info:
        back(1.0)
    text = "".join(traceback.format_tb(info.tb))
    assert "<adtrans tests/test_compiler.py" in text or "<adtrans " in text
    assert "call_hook(hook, d_y)" in text


def test_linecache_holds_generated_code():
    adtrans.gradient(calls_helper, 1.0)
    names = [name for name in linecache.cache if name.startswith("<adtrans") and "calls_helper" in name]
    assert names
    assert any("def calls_helper_value_with_pullback" in "".join(linecache.getlines(n)) for n in names)


def hygiene(x, d_x, pullback, unbroadcast):
    result = x * d_x + pullback * unbroadcast
    x_plus_x = result + x
    return x_plus_x * x


def test_user_names_never_collide_with_generated_names():
    adtrans.check_gradient(hygiene, 0.4, 1.2, -0.3, 2.2)


def broadcasting(W, b):
    return np.sum((W + b) * b)


def test_broadcasting_is_undone_in_pullbacks():
    W = np.arange(12.0).reshape(4, 3)
    b = np.array([1.0, -2.0, 0.5])
    dW, db = adtrans.gradient(broadcasting, W, b)
    assert dW.shape == (4, 3) and db.shape == (3,)
    adtrans.check_gradient(broadcasting, W, b)


def test_without_and_with_derivative():
    seen = []

    def f(x):
        a = adtrans.with_derivative(np.sin(x), lambda d: seen.append(d))
        b = adtrans.without_derivative(np.cos(x))
        return a * b + np.log(adtrans.with_derivative(x, lambda d: 0.5))

    x = 0.8
    g = adtrans.gradient(f, x)
    assert g == pytest.approx(math.cos(x) * math.cos(x) + 0.5)
    assert seen == [pytest.approx(math.cos(x))]


def test_zero_derivative_warning_and_explicit_silence():
    def ignores_y(x, y):
        return x * 2.0

    with pytest.warns(adtrans.ZeroDerivativeWarning, match="'y'"):
        assert adtrans.gradient(ignores_y, 1.0, 2.0) == (2.0, 0.0)

    def stops_y(x, y):
        return x * adtrans.without_derivative(y)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert adtrans.gradient(stops_y, 1.0, 2.0) == (2.0, 0.0)


def test_zero_gradient_has_shape_and_dtype_of_argument():
    def f(x, y):
        return np.sum(x * 2.0) + adtrans.without_derivative(np.sum(y))

    y = np.ones((2, 3), np.float32)
    dx, dy = adtrans.gradient(f, np.ones(4, np.float32), y)
    assert dy.shape == (2, 3) and dy.dtype == np.float32 and not dy.any()


def test_int_named_in_wrt_is_promoted_and_left_out_by_default():
    def f(x, n):
        return x ** 2 * n

    assert adtrans.gradient(f, 3.0, 2) == 12.0             # n is an int: not differentiated
    assert adtrans.gradient(f, 3.0, 2, wrt="n") == 9.0       # unless named
    assert adtrans.gradient(f, 3.0, 2, wrt=(0, 1)) == (12.0, 9.0)


def test_wrt_by_position_name_and_order():
    def f(x, y, z):
        return x * 2.0 + y * 3.0 + z * 4.0

    assert adtrans.gradient(f, 1.0, 1.0, 1.0, wrt=1) == 3.0
    assert adtrans.gradient(f, 1.0, 1.0, 1.0, wrt=("z", "x")) == (4.0, 2.0)
    assert adtrans.gradient(f, 1.0, 1.0, 1.0, wrt=("y",)) == (3.0,)


def test_keyword_arguments_and_defaults():
    def f(x, scale=2.0, *, shift=1.0):
        return (x + shift) * scale

    # wrt=None: every argument passed; defaults not passed are constants
    assert adtrans.gradient(f, 1.0) == 2.0
    assert adtrans.gradient(f, 1.0, shift=3.0) == (2.0, 2.0)
    assert adtrans.gradient(f, 1.0, scale=4.0, wrt=("x", "scale")) == (4.0, 2.0)
    g = adtrans.gradient_of(f, wrt="scale")
    assert g(1.0, shift=0.5) == 1.5
    vg = adtrans.value_with_gradient_of(f)
    assert vg(2.0) == (6.0, 2.0)


def test_decorated_function_calls_the_original_and_is_differentiable():
    calls = []

    @adtrans.differentiable
    def f(x):
        calls.append(x)
        return x * x * x

    assert f(2.0) == 8.0
    assert calls == [2.0]
    assert adtrans.gradient(f, 2.0) == 12.0


def test_decorator_with_wrt():
    @adtrans.differentiable(wrt="x")
    def f(x, y):
        return x * y

    @adtrans.differentiable(wrt=("x",))
    def g(x, y):
        return x * y

    assert adtrans.gradient(f, 2.0, 5.0) == 5.0
    assert adtrans.gradient(g, 2.0, 5.0) == (5.0,)     # a tuple of names gives a tuple, like JAX


def test_decorator_resolves_names_defined_later():
    @adtrans.differentiable
    def f(x):
        return defined_later_helper(x) * 2.0

    assert adtrans.gradient(f, 3.0) == 12.0


def defined_later_helper(x):
    return x * x


class Scaler:
    def __init__(self, k):
        self.k = k

    @adtrans.differentiable
    def apply(self, x):
        return np.tanh(x) * self.k


def test_method_decorator():
    s = Scaler(3.0)
    assert s.apply(0.0) == 0.0
    assert adtrans.gradient(s.apply, 0.5, wrt="x") == pytest.approx(3.0 * (1 - math.tanh(0.5) ** 2))


def test_registered_derivative_overrides_automatic_derivative_and_is_called():
    def cube(x):
        return x * x * x

    used = []

    @adtrans.derivative(of=cube)
    def cube_vjp(x):
        used.append(x)
        y = cube(x)
        return y, lambda v: v * 100.0    # deliberately wrong: proves the rule is used

    def f(x):
        return cube(x) + x

    assert adtrans.gradient(f, 2.0) == 101.0
    assert adtrans.gradient(cube, 2.0) == 100.0
    assert used == [2.0, 2.0]


def test_registered_derivative_of_a_c_function_through_ctypes():
    import ctypes
    import ctypes.util

    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    c_cos = libm.cos
    c_cos.restype = ctypes.c_double
    c_cos.argtypes = [ctypes.c_double]

    @adtrans.derivative(of=c_cos)
    def c_cos_vjp(x):
        return c_cos(x), lambda v: -v * math.sin(x)

    def f(x):
        return c_cos(x) * x

    assert adtrans.gradient(f, 0.7) == pytest.approx(-math.sin(0.7) * 0.7 + math.cos(0.7))


def test_registered_derivative_with_several_parameters_and_wrt():
    def mix(a, n, b):
        return a * n + b

    @adtrans.derivative(of=mix, wrt=("a", "b"))
    def mix_vjp(a, n, b):
        return mix(a, n, b), lambda v: (v * n, v)

    def f(x, y):
        return mix(x, 3, y) * 2.0

    assert adtrans.gradient(f, 1.0, 2.0) == (6.0, 2.0)


def test_differentiable_function_from_vjp():
    square = adtrans.differentiable_function(lambda x: (x * x, lambda v: 2.0 * x * v))
    assert square(3.0) == 9.0
    assert adtrans.gradient(square, 3.0) == 6.0

    def f(x):
        return square(np.sin(x))

    assert adtrans.gradient(f, 0.4) == pytest.approx(2 * math.sin(0.4) * math.cos(0.4))


def test_gradient_of_builtin_rule_directly():
    assert adtrans.gradient(np.sin, 0.3) == pytest.approx(math.cos(0.3))
    assert adtrans.gradient(math.exp, 1.0) == pytest.approx(math.e)


def test_side_effects_happen_once_per_forward_call(capsys):
    def f(x):
        print("forward", x)
        return x * 2.0

    value, back = adtrans.value_with_pullback(f, 1.5)
    back(1.0)
    back(1.0)
    assert capsys.readouterr().out == "forward 1.5\n"


def test_value_is_bit_for_bit_the_function_value():
    data = _mlp_data(np.float32)
    assert adtrans.value_with_pullback(mlp_loss, *data)[0] == mlp_loss(*data)
    assert adtrans.value_with_pullback(reassigned, 0.3, 1.7)[0] == reassigned(0.3, 1.7)


def test_methods_of_arrays():
    def f(x):
        return (x.T @ x).sum() + x.mean(axis=0).sum() * 2.0

    x = np.random.default_rng(1).normal(size=(4, 3))
    adtrans.check_gradient(f, x)


def test_metadata_attributes_are_constants():
    def f(x):
        n = x.shape[0]
        return np.sum(x) / n

    assert np.allclose(adtrans.gradient(f, np.ones(4)), 0.25)


def test_subscripts_of_arrays_and_tuples():
    def f(x, pair):
        return x[0] * x[1:3].sum() + x[..., -1] * pair[1] + np.sum(x[None, [0, 0, 2]])

    x = np.array([0.5, -1.0, 2.0, 3.0])
    adtrans.check_gradient(f, x, (1.0, 2.5))
    dx, dpair = adtrans.gradient(f, x, (1.0, 2.5))
    assert isinstance(dpair, tuple) and dpair[0] == 0.0 and dpair[1] == pytest.approx(3.0)


def test_pullback_of_non_scalar_result():
    def f(x):
        return np.sin(x) * 2.0

    x = np.array([0.1, 0.2, 0.3])
    value, back = adtrans.value_with_pullback(f, x)
    assert np.allclose(back(np.ones(3)), 2 * np.cos(x))
    assert adtrans.pullback(f, x)(np.array([1.0, 0.0, 0.0]))[1] == 0.0


def numpy_on_floats(x, y):
    return np.sin(x) * y          # NumPy on Python floats: np.float64 values and tangents


def float_vector(x):
    return np.ones(3) * x


def test_gradient_of_floats_returns_python_floats_whatever_the_code_makes():
    dx, dy = adtrans.gradient(numpy_on_floats, 0.5, 2.0)
    assert type(dx) is float and type(dy) is float
    assert dx == pytest.approx(math.cos(0.5) * 2.0) and dy == pytest.approx(math.sin(0.5))
    assert type(adtrans.gradient(numpy_on_floats, 0.5, 2.0, wrt="x")) is float
    (only,) = adtrans.gradient(numpy_on_floats, 0.5, 2.0, wrt=("y",))
    assert type(only) is float and only == pytest.approx(math.sin(0.5))
    with pytest.raises(adtrans.DifferentiationError, match="gradient needs a scalar result.*'float_vector'"):
        adtrans.gradient(float_vector, 0.5)


def scaled_product(a, b, scale=1.0):
    return scale * a * b


ASKED = []


@adtrans.derivative(of=scaled_product, wrt=("a", "b"))
def scaled_product_vjp(a, b, scale=1.0, *, needed=("a", "b")):
    ASKED.append(needed)

    def pullback(d):
        return (d * scale * b if "a" in needed else None,
                d * scale * a if "b" in needed else None)
    return scaled_product(a, b, scale), pullback


def uses_only_a(a, b):
    return scaled_product(a, np.cos(b) * 0.0 + 2.0, scale=3.0)


def test_a_vjp_taking_needed_is_told_which_tangents_are_used():
    # Like PyTorch's ctx.needs_input_grad: a VJP with a keyword-only `needed` gets the names
    # of the parameters whose tangents will be used, and may skip the others.
    ASKED.clear()
    assert "needed=('a',)" in adtrans.generated_source(uses_only_a, wrt=("a",))
    assert adtrans.gradient(uses_only_a, 0.5, 0.7, wrt="a") == pytest.approx(6.0)
    assert ASKED[-1] == ("a",)
    d_a, d_b = adtrans.gradient(scaled_product, 0.5, 0.7)
    assert ASKED[-1] == ("a", "b") and d_a == pytest.approx(0.7) and d_b == pytest.approx(0.5)
    assert adtrans.gradient(scaled_product, 0.5, 0.7, wrt="b") == pytest.approx(0.5)
    assert ASKED[-1] == ("b",)
    adtrans.check_gradient(lambda a, b: scaled_product(a, b, 2.0) * a, 0.5, 0.7)


def test_identical_functions_in_two_files_get_their_own_code(tmp_path):
    # Code objects compare equal across files when text and line numbers are equal; what their
    # names mean may differ, so the transform is cached per file too.
    import importlib.util

    functions = []
    for name, first_line in (("uses_math", "from math import sin"),
                             ("uses_own", "sin = lambda x: 3.0 * x")):
        path = tmp_path / f"{name}.py"
        path.write_text(first_line + "\n\n\ndef f(x):\n    return sin(x)\n")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        functions.append(module.f)
    assert functions[0].__code__ == functions[1].__code__
    assert adtrans.gradient(functions[0], 0.5) == math.cos(0.5)
    assert adtrans.gradient(functions[1], 0.5) == 3.0


def summed_pair(x, y):
    return np.sum(x + y)


def test_two_gradients_are_never_one_array():
    # The pullback of x + y hands both the same cotangent; a caller clipping one gradient in place
    # (g *= 0.5) must not change the other, as with PyTorch's separate .grad tensors.
    x, y = np.ones(3), np.ones(3)
    for _ in range(2):          # the first call and the cached entry
        for g in (adtrans.gradient(summed_pair, x, y), adtrans.value_with_gradient(summed_pair, x, y)[1],
                  adtrans.gradient_of(summed_pair)(x, y),
                  adtrans.value_with_pullback(lambda x, y: x + y, x, y)[1](np.ones(3))):
            assert not np.shares_memory(g[0], g[1])
            d_x, d_y = g
            d_x *= 0.5
            np.testing.assert_array_equal(d_y, np.ones(3))
