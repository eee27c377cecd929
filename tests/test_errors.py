"""Every DifferentiationError: its message, its note, and the user's line and column."""

import math

import numpy as np
import pytest

import adtrans

FILE = "tests/test_errors.py"


@pytest.fixture(autouse=True)
def _run_from_repository_root(monkeypatch):
    import pathlib
    monkeypatch.chdir(pathlib.Path(__file__).resolve().parent.parent)


def line_of(fn, offset):
    """The line `offset` lines below `fn`'s def."""
    return fn.__code__.co_firstlineno + offset


def truncates(x, y):
    return float(int(x + y))


def test_integer_conversion_of_an_active_value():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(truncates, 1.0, 2.0)
    error = info.value
    assert isinstance(error, TypeError)
    assert error.filename.endswith("test_errors.py")
    assert error.lineno == line_of(truncates, 1)
    assert error.col == len("    return float(") + 1
    assert "expression is not differentiable" in str(error)
    assert "do you want to use 'without_derivative'?" in str(error)
    assert str(error).startswith(f"{FILE}:{error.lineno}:{error.col}: error: ")


def test_decorator_reports_the_error_at_definition():
    with pytest.raises(adtrans.DifferentiationError) as info:
        @adtrans.differentiable
        def f(x, y):
            return float(int(x + y))
    assert "not differentiable" in str(info.value)
    assert info.value.lineno == test_decorator_reports_the_error_at_definition.__code__.co_firstlineno + 4


def test_int_of_a_constant_or_unused_value_is_fine():
    def f(x, n):
        k = int(n * 1.5)
        print(int(x))
        return x * k

    assert adtrans.gradient(f, 2.0, 3.0, wrt="x") == 4.0


def test_without_derivative_resolves_the_integer_error():
    def f(x, y):
        return float(int(adtrans.without_derivative(x + y))) + x

    with _no_warning():
        assert adtrans.gradient(f, 1.0, 2.0, wrt="x") == 1.0


class _no_warning:
    def __enter__(self):
        import warnings
        self.ctx = warnings.catch_warnings()
        self.ctx.__enter__()
        warnings.simplefilter("error", adtrans.ZeroDerivativeWarning)

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


# A NumPy ufunc made at run time: no source adtrans can read, no registered derivative.
add = np.frompyfunc(lambda a, b: a + b, 2, 1)


def uses_unknown(x, y):
    z = x * 2.0
    return add(z, y)


def test_callee_without_source_or_derivative():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(uses_unknown, 1.0, 2.0)
    error = info.value
    assert "function 'add' is not differentiable" in str(error)
    assert "@adtrans.derivative(of=add)" in str(error)
    assert error.lineno == line_of(uses_unknown, 2)
    assert error.col == len("    return ") + 1


def test_gradient_of_non_scalar_result():
    def vector(x):
        return x * 2.0

    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(vector, np.ones(3))
    assert "gradient needs a scalar result" in str(info.value)
    assert "shape (3,)" in str(info.value)
    assert info.value.lineno == vector.__code__.co_firstlineno
    assert "value_with_pullback" in str(info.value)


def test_wrt_name_that_is_not_a_parameter():
    def f(x, y):
        return x * y

    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(f, 1.0, 2.0, wrt="z")
    assert "'z' is not a parameter of" in str(info.value)
    assert "x, y" in str(info.value)
    assert info.value.lineno == f.__code__.co_firstlineno


def test_wrt_position_out_of_range():
    def f(x):
        return x

    with pytest.raises(adtrans.DifferentiationError, match="position 3 is out of range"):
        adtrans.gradient(f, 1.0, wrt=3)


def test_integer_array_named_in_wrt():
    def f(x):
        return np.sum(x * 2.0)

    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(f, np.arange(3), wrt="x")
    assert "array of dtype int" in str(info.value)
    assert "astype" in str(info.value)


def test_no_differentiable_argument():
    def f(n):
        return n * 2

    with pytest.raises(adtrans.DifferentiationError, match="no differentiable arguments"):
        adtrans.gradient(f, 3)


def test_source_not_available():
    namespace = {}
    exec("def made(x):\n    return x * 2.0\n", namespace)
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(namespace["made"], 1.0)
    assert "cannot read the source of 'made'" in str(info.value)
    assert "@adtrans.derivative" in str(info.value)


def guarded(x):
    total = 0.0
    try:
        total = total + x
    except ValueError:
        pass
    return total


def test_unsupported_statement_is_named_with_its_line():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(guarded, 1.0)
    assert "'try' statement is not supported" in str(info.value)
    assert info.value.lineno == line_of(guarded, 2)
    assert info.value.col == 5


def set_comprehension(x):
    return sum({x * i for i in range(3)})


def test_unsupported_expression_on_active_value():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(set_comprehension, 1.0)
    assert "set comprehension is not differentiable" in str(info.value)
    assert info.value.lineno == line_of(set_comprehension, 1)


def test_undefined_name():
    def f(x):
        return never_defined_anywhere(x)  # noqa: F821

    with pytest.raises(adtrans.DifferentiationError, match="name 'never_defined_anywhere' is not defined"):
        adtrans.gradient(f, 1.0)


def test_active_value_in_a_non_differentiable_parameter_of_a_rule():
    def f(x, lo):
        return np.sum(np.clip(x, lo, 10.0) * 0.0 + x, axis=int(lo) * 0)

    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(f, np.ones(3), 0.5)
    assert "not differentiable with respect to its argument" in str(info.value)
    assert info.value.lineno == f.__code__.co_firstlineno + 1


def test_errors_never_leak_internal_exceptions():
    def f(x):
        y = {"a": x}
        return y["a"] * 2.0 + (lambda t: t)(x)

    # A lambda called inline is dispatched at run time and works
    assert adtrans.gradient(f, 1.0) == 3.0


def test_error_pickles_and_prints_like_a_compiler():
    import pickle

    error = adtrans.DifferentiationError(
        "function 'add' is not differentiable",
        adtrans.errors.Location("model.py", 12, 5),
        [adtrans.errors.Note("cannot differentiate through a non-differentiable result",
                             adtrans.errors.Location("model.py", 13, 11))])
    assert str(error) == ("model.py:12:5: error: function 'add' is not differentiable\n"
                          "model.py:13:11: note: cannot differentiate through a non-differentiable result")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.lineno == 12


def test_user_vjp_pullback_returning_wrong_arity():
    def two(a, b):
        return a * b

    @adtrans.derivative(of=two)
    def two_vjp(a, b):
        return two(a, b), lambda v: v * b     # should return two tangents

    with pytest.raises(adtrans.DifferentiationError, match="must return 2 tangents"):
        adtrans.gradient(two, 1.0, 2.0)


def math_only(x):
    return math.floor(x) * x


def test_math_floor_of_active_value():
    with pytest.raises(adtrans.DifferentiationError, match="not differentiable"):
        adtrans.gradient(math_only, 1.5)


def decorated_nested(x):
    @staticmethod
    def inner(t):
        return t
    return x


def recomputed_without_result(x):
    with adtrans.recomputed():
        y = x * 2.0
    return x


def segmented_badly(x, ws):
    for w in adtrans.segmented(ws):
        x = x * w
    return x


def assigns_a_global_attribute(x):
    np.some_field = x
    return x


@pytest.mark.parametrize("fn, offset, message", [
    (decorated_nested, 1, "a decorated nested function is not supported"),
    (recomputed_without_result, 1, "a recomputed block must assign a variable used after it"),
    (segmented_badly, 1, "write 'segmented(iterable, length)'"),
    (assigns_a_global_attribute, 1, "assignment to an attribute of a value that is not a local"),
])
def test_errors_of_the_newer_constructs(fn, offset, message):
    args = (1.0, [2.0, 3.0]) if fn is segmented_badly else (1.0,)
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(fn, *args, wrt="x")
    assert message in str(info.value)
    assert info.value.lineno == line_of(fn, offset)
