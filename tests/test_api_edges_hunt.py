"""Hunting in the API surface as users meet it.

``value_with_pullback`` of functions with structured results, ``@differentiable``
on closures, ``**kwargs``, ``map``, ``reversed``, dict views, ``super()`` and
properties, ``gradient_of`` dispatch over argument types, ``check_gradient`` and
``wrt`` forms, the command line on a realistic file, and the constructs
docs/index.md lists as "Not supported". Where a test failed, a minimal
reproducer sits beside it (``test_minimal_*``); the larger test is kept as written.
"""

import dataclasses
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import adtrans
from structured_check import _flat, _flat_tangent, _replaced, assert_gradient

ROOT = Path(__file__).resolve().parent.parent
HERE = os.path.abspath(__file__)


def line_of(fn, marker):
    """The line number of the first line of `fn`'s source that contains `marker`."""
    import inspect
    lines, start = inspect.getsourcelines(fn)
    for k, text in enumerate(lines):
        if marker in text:
            return start + k
    raise AssertionError(f"{marker!r} not in {fn.__name__}")


def assert_located_here(error, fn, marker):
    """`error` is located at the line of `fn` holding `marker`, in this file."""
    assert os.path.abspath(error.filename or "") == HERE, f"error located in {error.filename!r}: {error}"
    assert error.lineno == line_of(fn, marker), f"error at line {error.lineno}: {error}"


# -- 1. value_with_pullback of structured results: <cotangent, f(x)> against finite differences ----

class Pair(NamedTuple):
    scale: float
    vector: np.ndarray


@dataclass
class State:
    energy: float
    field: np.ndarray


def returns_tuple(x, y):
    return x * np.sum(y), np.sin(y) * x


def returns_dict(x, y):
    return {"p": x * y, "q": np.cos(y) * x ** 2}


def returns_namedtuple(x, y):
    return Pair(x * 2.0, y * x)


def returns_dataclass(x, y):
    return State(x * x, np.exp(y) * x)


def returns_matrix(x, y):
    return np.outer(y, y) * x


def _inner(ct, value):
    """<ct, value>: the sum of the products of their float numbers, in `_flat` order."""
    return float(np.dot(_flat(ct), _flat(value)))


STRUCTURED = [
    (returns_tuple, (0.7, np.array([1.0, 2.0, -3.0]))),
    (returns_dict, {"p": np.array([1.0, -1.0, 2.0]), "q": np.array([0.5, 0.25, -0.5])}),
    (returns_namedtuple, Pair(0.3, np.array([1.0, 2.0, 3.0]))),
    (returns_dataclass, State(0.4, np.array([1.0, 0.0, -1.0]))),
    (returns_matrix, np.arange(9.0).reshape(3, 3)),
]


@pytest.mark.parametrize("f, cotangent", STRUCTURED, ids=[f.__name__ for f, _ in STRUCTURED])
def test_pullback_of_a_structured_result(f, cotangent):
    x, y = 1.3, np.array([0.2, -0.5, 0.7])
    value, pull = adtrans.value_with_pullback(f, x, y)
    expected = f(x, y)
    assert type(value) is type(expected)
    np.testing.assert_array_equal(_flat(value), _flat(expected))
    for _ in range(2):  # callable many times
        d_x, d_y = pull(cotangent)
        assert isinstance(d_x, float)
        assert d_y.shape == y.shape and d_y.dtype == y.dtype

        def scalarised(x, y):
            return _inner(cotangent, f(x, y))

        for i, got in ((0, d_x), (1, d_y)):
            numeric = []
            base = _flat((x, y)[i])
            for k in range(base.size):
                vals = []
                for s in (1.0, -1.0):
                    trial = base.copy()
                    trial[k] += s * 1e-6
                    args = [x, y]
                    args[i] = _replaced(args[i], iter(trial))
                    vals.append(scalarised(*args))
                numeric.append((vals[0] - vals[1]) / 2e-6)
            np.testing.assert_allclose(_flat_tangent(got, (x, y)[i]), numeric, rtol=1e-5, atol=1e-7)


# -- 2. @differentiable on closures, **kwargs, map, reversed, dict views, super(), property ------

@adtrans.differentiable
def decay_mapped(x, k):
    def rhs(y):
        return -k * y
    return sum(map(rhs, [x, 2.0 * x]))


@adtrans.differentiable
def kwargs_items(x, **opts):
    s = x
    for _name, v in opts.items():
        s = s * v + np.sin(x)
    return s


@adtrans.differentiable(wrt=("xs", "w"))
def horner_reversed(xs, w):
    acc = 0.0
    for v in reversed(xs):
        acc = acc * w + v
    return acc


def test_decorated_closures_kwargs_map_reversed():
    assert_gradient(decay_mapped, 1.0, 0.5)
    assert adtrans.gradient(decay_mapped, 1.0, 0.5) == pytest.approx((-1.5, -3.0))
    assert_gradient(horner_reversed, [1.0, 2.0, 3.0], 0.7)
    assert_gradient(horner_reversed, np.array([1.0, 2.0, 3.0]), 0.7)
    # kwargs: every keyword passed gets its own tangent
    g = adtrans.gradient(kwargs_items, 0.4, a=2.0, b=-1.5)
    h = 1e-6

    def fd(i):
        args = [0.4, 2.0, -1.5]
        up, down = list(args), list(args)
        up[i] += h
        down[i] -= h
        return (kwargs_items(up[0], a=up[1], b=up[2]) - kwargs_items(down[0], a=down[1], b=down[2])) / (2 * h)

    assert g == pytest.approx(tuple(fd(i) for i in range(3)), rel=1e-6)


@dataclass
class Base:
    w: float

    def energy(self, x):
        return self.w * x * x


@dataclass
class Child(Base):
    b: float = 0.0

    @adtrans.differentiable
    def energy(self, x):
        return super().energy(x) + self.b * x

    @property
    @adtrans.differentiable
    def norm(self):
        return self.w ** 2 + self.b ** 2


def child_objective(c, x):
    return c.energy(x) + c.norm


def test_decorated_super_method_and_property():
    d_c, d_x = assert_gradient(child_objective, Child(1.5, 0.3), 2.0)
    # closed form: w x^2 + b x + w^2 + b^2
    assert d_c.w == pytest.approx(4.0 + 3.0) and d_c.b == pytest.approx(2.0 + 0.6)
    assert d_x == pytest.approx(2 * 1.5 * 2.0 + 0.3)


def test_decoration_time_error_is_at_the_users_line():
    with pytest.raises(adtrans.DifferentiationError) as info:
        @adtrans.differentiable
        def bad(x, **kw):
            return float(int(kw["a"] * x))  # <- bad
    assert os.path.abspath(info.value.filename) == HERE
    assert info.value.lineno == line_of(test_decoration_time_error_is_at_the_users_line, "# <- bad")
    with pytest.raises(adtrans.DifferentiationError) as info:
        @adtrans.differentiable(wrt=("z",))
        def bad_wrt(x, k):
            return x * k
    assert "'z' is not a parameter" in str(info.value)
    assert os.path.abspath(info.value.filename) == HERE


def int_in_local_lambda(x, k):
    scale = lambda t: int(t * k)  # <- int
    return sum(map(lambda t: t * k, [x])) * scale(x)


def test_error_in_a_local_lambda_is_at_the_users_line():
    """Found at decoration or at the first gradient, the error must point at the lambda's line."""
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.differentiable(int_in_local_lambda)
        adtrans.gradient(int_in_local_lambda, 1.5, 2.0)
    assert_located_here(info.value, int_in_local_lambda, "# <- int")


def minimal_lambda(x):
    g = lambda t: int(t)  # <- int
    return x * g(x)


def test_minimal_int_in_a_local_lambda_error_location():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(minimal_lambda, 1.5)
    assert_located_here(info.value, minimal_lambda, "# <- int")


# -- 3. gradient_of / value_with_gradient_of dispatch over argument types ------------------------

def _check_against_fd(f, args, grads, kwargs=None):
    """`grads` (one per argument holding floats, in order) keep each argument's layout and match FD."""
    kwargs = kwargs or {}
    positions = [i for i, a in enumerate(args) if _flat(a).size and not isinstance(a, (int, bool))]
    if len(positions) == 1:
        grads = (grads,)
    assert len(grads) == len(positions), f"{len(grads)} tangents for arguments {positions} of {args!r}"
    from structured_check import finite_differences
    wide = [a.astype(np.float64) if isinstance(a, np.ndarray) else float(a) if isinstance(a, np.floating) else a
            for a in args]  # differences in float64, whatever the argument's dtype
    for i, t in zip(positions, grads):
        a = args[i]
        if isinstance(a, (list, tuple, dict)):
            assert type(t) is type(a), f"tangent {t!r} of type {type(t).__name__} for a {type(a).__name__}"
        if isinstance(a, float) or isinstance(a, (np.floating, np.ndarray)):
            assert type(t) is type(a), f"tangent {t!r} of type {type(t).__name__} for a {type(a).__name__}"
        np.testing.assert_allclose(_flat_tangent(t, a), finite_differences(f, wide, kwargs, i),
                                   rtol=2e-3 if _flat(a).dtype != np.float64 else 1e-5, atol=1e-6)


def sine_product(x, y):
    return np.sum(np.sin(x) * y)


SINE_CALLS = [
    (1.0, 2.0),
    (1, 2.0),
    (1.0, 2),
    (np.float32(1.0), 2.0),
    (np.ones(3, np.float32), 2.0),
    (np.ones(3, np.float32), np.full(3, 0.5, np.float32)),
    (np.ones(2), np.float32(2.0)),
    (1.0, 2.0),
    (np.float64(1.0), 2.0),
    (0.5, np.array([1.0, 2.0])),
    (1.0, 2.0),
]


def test_gradient_of_dispatches_on_every_type_in_turn():
    g = adtrans.gradient_of(sine_product)
    vg = adtrans.value_with_gradient_of(sine_product)
    for args in SINE_CALLS:
        for call in (lambda: g(*args), lambda: g(args[0], y=args[1]), lambda: g(y=args[1], x=args[0])):
            # float32 results are compared in float64 by the FD, hence the tolerance above
            _check_against_fd(sine_product, args, call())
        value, grads = vg(*args)
        assert value == sine_product(*args)
        _check_against_fd(sine_product, args, grads)


@dataclass
class Affine:
    w: float
    b: float


def affine(m, x):
    return m.w * x + m.b * m.b


def test_value_with_gradient_of_dataclass_then_other_types():
    vg = adtrans.value_with_gradient_of(affine)
    for m, x in [(Affine(2.0, 1.0), 3.0), (Affine(2.0, 1.0), 3), (Affine(np.float32(2.0), np.float32(1.0)), np.float32(3.0)),
                 (Affine(2.0, 1.0), 3.0), (Pair(2.0, np.ones(2)), 3.0)]:
        if isinstance(m, Pair):  # another type with the same attribute names is an AttributeError, as f gives
            with pytest.raises(AttributeError):
                vg(m, x)
            continue
        value, grads = vg(m, x=x) if isinstance(x, int) else vg(m, x)
        assert value == affine(m, x)
        d_m = grads[0] if not isinstance(x, int) else grads
        assert d_m.w == pytest.approx(float(x)) and d_m.b == pytest.approx(2 * float(m.b))
        assert type(d_m.w) is type(m.w)
        if not isinstance(x, int):
            assert grads[1] == pytest.approx(float(m.w)) and type(grads[1]) is type(x)


def test_gradient_of_a_list_argument_keeps_the_list():
    g = adtrans.gradient_of(sine_product)
    _check_against_fd(sine_product, ([1.0, 2.0], 1.0), g([1.0, 2.0], 1.0))


def test_minimal_ufunc_of_a_list_argument_gives_an_array_tangent():
    def f(xs):
        return np.sum(np.sin(xs))

    d_xs = adtrans.gradient(f, [1.0, 2.0])
    assert type(d_xs) is list, f"tangent {d_xs!r} of a list"


# -- 4. check_gradient and wrt forms -------------------------------------------------------------

def mixed(params, x, scale):
    return params["a"] * np.sum(x.vector * x.scale) + np.sum(params["b"] ** 2) * scale


def test_check_gradient_on_structured_arguments_and_it_can_fail():
    params = {"a": 1.5, "b": np.array([0.5, -1.0])}
    x = Pair(0.7, np.array([1.0, 2.0]))
    adtrans.check_gradient(mixed, params, x, 2.0)
    adtrans.check_gradient(mixed, params, x, 2.0, wrt=(0, "x"))
    adtrans.check_gradient(mixed, params, x, 2.0, wrt=-1)
    adtrans.check_gradient(child_objective, Child(1.5, 0.3), 2.0)

    def wrong(x):
        return x * 3.0

    def wrong_vjp(x):
        return x * 3.0, lambda v: v * 2.0  # wrong on purpose

    adtrans.derivative(of=wrong)(wrong_vjp)

    def uses_wrong(y, s):
        return wrong(y) * s

    with pytest.raises(AssertionError):
        adtrans.check_gradient(uses_wrong, 1.0, Affine(1.0, 2.0).w)


def test_minimal_check_gradient_rebuilds_a_namedtuple_as_a_tuple():
    def f(p):
        return p.scale * np.sum(p.vector)

    adtrans.check_gradient(f, Pair(1.0, np.ones(2)))  # AttributeError: 'tuple' object has no attribute


def test_check_gradient_catches_a_wrong_registered_derivative():
    def wrong(x):
        return x * 3.0

    def wrong_vjp(x):
        return x * 3.0, lambda v: v * 2.0  # wrong on purpose

    adtrans.derivative(of=wrong)(wrong_vjp)

    def uses_wrong(p, s):
        return wrong(p["y"]) * s.w

    adtrans.check_gradient(uses_wrong, {"y": 1.0}, Affine(1.0, 2.0), wrt=1)
    with pytest.raises(AssertionError):
        adtrans.check_gradient(uses_wrong, {"y": 1.0}, Affine(1.0, 2.0))


def two(x, y):
    return x * y + np.sin(x)


def test_wrt_by_position_name_and_negative_position_agree():
    a, b = 1.2, 2.0
    by = {
        "name": adtrans.gradient(two, a, b, wrt="x"),
        "position": adtrans.gradient(two, a, b, wrt=0),
        "negative": adtrans.gradient(two, a, b, wrt=-2),
        "gradient_of": adtrans.gradient_of(two, wrt=-2)(a, b),
    }
    for how, g in by.items():
        assert g == pytest.approx(b + np.cos(a)), how
    assert adtrans.gradient(two, a, b, wrt=(-1, "x")) == pytest.approx((a, b + np.cos(a)))
    _, pull = adtrans.value_with_pullback(two, a, b, wrt=("y",))
    assert pull(2.0) == pytest.approx((2 * a,))


@pytest.mark.parametrize("api", ["gradient", "value_with_pullback", "gradient_of", "check_gradient"])
@pytest.mark.parametrize("wrt", ["z", ("x", "z"), -3, 2])
def test_bad_wrt_is_a_located_error(api, wrt):
    with pytest.raises(adtrans.DifferentiationError) as info:
        if api == "gradient_of":
            adtrans.gradient_of(two, wrt=wrt)(1.0, 2.0)
        else:
            getattr(adtrans, api)(two, 1.0, 2.0, wrt=wrt)
    assert os.path.abspath(info.value.filename) == HERE
    assert info.value.lineno == two.__code__.co_firstlineno


def test_minimal_check_gradient_wrt_name_not_a_parameter():
    def f(x):
        return x * 2.0

    with pytest.raises(adtrans.DifferentiationError, match="'z' is not a parameter"):
        adtrans.check_gradient(f, 1.0, wrt="z")  # ValueError: 'z' is not in list


def test_minimal_check_gradient_wrt_position_out_of_range():
    def f(x):
        return x * 2.0

    with pytest.raises(adtrans.DifferentiationError, match="out of range"):
        adtrans.check_gradient(f, 1.0, wrt=1)  # IndexError: list index out of range


@pytest.mark.parametrize("wrt", [0, "x", (0, 1), -2])
@pytest.mark.parametrize("api", ["gradient", "check_gradient", "gradient_of"])
def test_integer_array_in_wrt_is_an_error(api, wrt):
    def f(x, y):
        return np.sum(x * y)

    args = (np.arange(3), np.ones(3))
    with pytest.raises(adtrans.DifferentiationError, match="dtype int"):
        if api == "gradient_of":
            adtrans.gradient_of(f, wrt=wrt)(*args)
        else:
            getattr(adtrans, api)(f, *args, wrt=wrt)


def weighted(x, **weights):
    total = 0.0
    for _name, w in weights.items():
        total = total + w * np.sin(x)
    return total


def test_kwargs_parameter_name_in_wrt_through_every_entry_point():
    assert adtrans.gradient(weighted, 1.0, a=2.0, b=3.0, wrt="weights") == pytest.approx(
        {"a": np.sin(1.0), "b": np.sin(1.0)})
    source = adtrans.generated_source(weighted, wrt=("x", "weights"))
    compile(source, "<generated>", "exec")
    assert "d_weights" in source


def test_minimal_generated_source_wrt_kwargs_name():
    def f(x, **options):
        return x * options["a"]

    adtrans.generated_source(f, wrt="options")


# -- 5. The command line on a realistic file -----------------------------------------------------

CLI_MODULE = textwrap.dedent(
    """\
    import math
    from dataclasses import dataclass

    import numpy as np


    def decay(x, k):
        def rhs(y):
            return -k * y
        return sum(map(rhs, [x, 2.0 * x]))


    def weighted(x, **weights):
        total = 0.0
        for name, w in weights.items():
            total = total + w * math.sin(x)
        return total


    def backwards(xs, w):
        acc = 0.0
        for v in reversed(xs):
            acc = acc * w + v
        return acc


    @dataclass
    class Spring:
        k: float
        rest: float

        def energy(self, x):
            stretch = lambda t: t - self.rest
            return 0.5 * self.k * stretch(x) ** 2


    def main():
        print(decay(1.0, 0.5))
    """
)

BAD_DIRECT = textwrap.dedent(
    """\
    def truncated(x, y):
        return float(int(x + y))
    """
)

BAD_LAMBDA = textwrap.dedent(
    """\
    def rounded(x, y):
        scale = lambda t: int(t)
        return x * scale(y)
    """
)


def run_cli(*args, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "adtrans", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture
def cli_module(tmp_path):
    path = tmp_path / "physics.py"
    path.write_text(CLI_MODULE)
    return path


@pytest.mark.parametrize("func, options", [
    ("decay", []), ("decay", ["--gradient"]), ("decay", ["--wrt", "k", "--gradient"]),
    ("weighted", []), ("weighted", ["--gradient"]), ("weighted", ["--wrt", "0"]),
    ("backwards", ["--wrt", "xs,w"]), ("backwards", ["--gradient"]),
    ("Spring.energy", []), ("Spring.energy", ["--wrt", "self", "--gradient"]),
])
def test_cli_dump_prints_code_that_compiles(cli_module, func, options):
    result = run_cli("dump", f"{cli_module}:{func}", *options)
    assert result.returncode == 0, result.stderr
    assert "def " in result.stdout
    compile(result.stdout, f"<dump {func}>", "exec")


def test_cli_check_good_file_and_located_errors(cli_module, tmp_path):
    result = run_cli("check", cli_module)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no errors" in result.stdout
    result = run_cli("check", cli_module, "decay", "weighted", "backwards", "Spring.energy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 functions checked, no errors" in result.stdout
    bad = tmp_path / "bad_direct.py"
    bad.write_text(BAD_DIRECT)
    result = run_cli("check", bad)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{bad}:2:" in result.stdout + result.stderr


def test_cli_check_reports_an_error_inside_a_lambda(tmp_path):
    bad = tmp_path / "bad_lambda.py"
    bad.write_text(BAD_LAMBDA)
    result = run_cli("check", bad)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{bad}:2:" in result.stdout + result.stderr


def test_cli_dump_wrt_names_the_kwargs_parameter(cli_module):
    result = run_cli("dump", f"{cli_module}:weighted", "--wrt", "x,weights")
    assert result.returncode == 0, result.stderr
    compile(result.stdout, "<dump>", "exec")


# -- 6. Everything docs/index.md lists as "Not supported" ----------------------------------------

def ns_try(x):
    try:  # <-
        y = x * 2.0
    except ValueError:
        y = x
    return y


def ns_with(x):
    with open(os.devnull) as _fh:  # <-
        y = x * 2.0
    return y


def ns_yield(x):
    yield x * 2.0  # <-


async def ns_await(x):
    y = await x  # <-
    return y


GLOBAL_VALUE = 1.0


def ns_global(x):
    global GLOBAL_VALUE  # <-
    GLOBAL_VALUE = x
    return x * 2.0


def ns_nonlocal(x):
    y = x

    def inner():
        nonlocal y  # <-
        y = y * 2.0
    inner()
    return y


def _identity_decorator(f):
    return f


def ns_decorated_nested(x):
    @_identity_decorator  # <-
    def inner(t):
        return t * x
    return inner(x)


def ns_set(x):
    s = {x, 2.0 * x}  # <-
    return sum(s)


def ns_set_comprehension(x):
    s = {x * y for y in (1.0, 2.0)}  # <-
    return sum(s)


def ns_walrus(x):
    if (y := x * 2.0) > 0:  # <-
        return y
    return x


NOT_SUPPORTED = [ns_try, ns_with, ns_yield, ns_await, ns_global, ns_nonlocal, ns_decorated_nested,
                 ns_set, ns_set_comprehension, ns_walrus]


@pytest.mark.parametrize("fn", NOT_SUPPORTED, ids=[f.__name__ for f in NOT_SUPPORTED])
@pytest.mark.parametrize("api", ["gradient", "value_with_pullback", "differentiable", "caller"])
def test_not_supported_is_a_located_error(fn, api):
    def caller(x):
        return fn(x) * 1.0

    with pytest.raises(adtrans.DifferentiationError) as info:
        if api == "differentiable":
            adtrans.differentiable(fn)
        elif api == "caller":
            adtrans.gradient(caller, 1.5)
        else:
            getattr(adtrans, api)(fn, 1.5, wrt=0)
    assert_located_here(info.value, fn, "# <-")


def star_tuple(x):
    rest = (2.0, 3.0)
    t = (x, *rest)
    return t[0] * t[1]


def star_list(x):
    rest = [2.0, 3.0]
    t = [*rest, x]
    return t[0] * t[-1]


def test_star_unpacking_in_displays_once_not_supported_differentiates():
    # Listed as not supported until tests/test_sequences.py's displays with '*' unpacking.
    assert adtrans.gradient(star_tuple, 1.5) == 2.0
    assert adtrans.gradient(star_list, 1.5) == 2.0
    adtrans.check_gradient(star_tuple, 1.5)
    adtrans.check_gradient(star_list, 1.5)


def nested_helpers(x, k):
    def step(t):
        try:  # <-
            return t * k
        except ValueError:
            return t
    return sum(map(step, [x, x * x]))


def test_not_supported_inside_a_nested_function_is_located():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.differentiable(nested_helpers)
        adtrans.gradient(nested_helpers, 1.5, 2.0)
    assert_located_here(info.value, nested_helpers, "# <-")


def minimal_nested_try(x):
    def g(t):
        try:  # <-
            return t * 2.0
        except ValueError:
            return t
    return g(x)


def test_minimal_try_in_a_nested_def_is_located_in_generated_code():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(minimal_nested_try, 1.0)
    assert_located_here(info.value, minimal_nested_try, "# <-")


def star_of_a_constant_shape(x):
    return np.sum(x.reshape((*x.shape, 1)) * 2.0)  # <-


def test_star_unpacking_of_a_shape_is_supported_or_named():
    """`(*x.shape, 1)` holds no derivative: it works, or the error names the unpacking."""
    try:
        g = adtrans.gradient(star_of_a_constant_shape, np.ones(3))
    except adtrans.DifferentiationError as error:
        assert_located_here(error, star_of_a_constant_shape, "# <-")
        assert "unpacking with '*'" in str(error), str(error)
    else:
        np.testing.assert_allclose(g, np.full(3, 2.0))
