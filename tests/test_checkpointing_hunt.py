"""A bug hunt on checkpointing, the way users write it.

Every form of docs/checkpointing.md -- ``checkpointed(f)``,
``@differentiable(checkpoint=True)``, ``with adtrans.recomputed():``,
``for x in adtrans.segmented(xs, k):`` and the Swift tutorial's user-written
``make_recomputed_in_gradient`` -- in realistic and adversarial programs.

`same_as_plain(f, *args)` compares `f` with its twin without checkpointing
(`unchecked(f)`: the same source with ``adtrans.segmented(xs, k)`` read as
``xs``, ``with adtrans.recomputed():`` blocks inlined and calls of
``name_checkpointed`` made to ``name``): ``gradient``,
``value_with_gradient`` and ``value_with_pullback`` (its pullback called
twice) must give the twin's gradient to rounding and ``f(*args)``'s value
bit for bit; then central finite differences (``assert_gradient``).

Tests that expose a bug are marked ``@bug("...")`` or, one parameter set, ``bug_case("...")``:
``xfail(strict=True, reason="BUG: ...")``, failing in one line (see `short_traceback`).
"""

import ast
import functools
import inspect
import linecache
import math
import re
import textwrap
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest

import adtrans
from adtrans import nn
from adtrans import recomputed as recomputed_alias, segmented as segmented_alias
from structured_check import _flat, _flat_tangent, assert_gradient

RNG = np.random.default_rng(2024)
CALLS = []


def randn(*shape):
    return RNG.standard_normal(shape)


# -- the twin without checkpointing ---------------------------------------------------

def _is_api(func, name):
    if isinstance(func, ast.Name):
        return func.id == name + "_alias"
    return (isinstance(func, ast.Attribute) and func.attr == name and isinstance(func.value, ast.Name)
            and func.value.id == "adtrans")


class _Unchecked(ast.NodeTransformer):
    def visit_Call(self, node):
        self.generic_visit(node)
        if _is_api(node.func, "segmented"):
            return node.args[0]
        if isinstance(node.func, ast.Name) and node.func.id.endswith("_checkpointed"):
            node.func.id = node.func.id[:-len("_checkpointed")]
        return node

    def visit_With(self, node):
        self.generic_visit(node)
        expr = node.items[0].context_expr
        return node.body if isinstance(expr, ast.Call) and _is_api(expr.func, "recomputed") else node


def unchecked(f):
    """`f` with its checkpointing removed (a real function with source adtrans can read)."""
    tree = _Unchecked().visit(ast.parse(textwrap.dedent(inspect.getsource(f))))
    unparse = getattr(ast, "unparse", None) or __import__("astunparse").unparse
    text = unparse(ast.fix_missing_locations(tree)) + "\n"
    filename = f"<unchecked {f.__qualname__}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace = {}
    exec(compile(text, filename, "exec"), f.__globals__, namespace)
    return namespace[f.__name__]


def _flat_gradient(g, args, wrt):
    return np.concatenate([np.zeros(0)] + [_flat_tangent(t, args[i]) for t, i in zip(g, wrt)])


def same_as_plain(f, *args, plain=None, wrt=None, fd=True, rtol=1e-11):
    """`f` and its twin without checkpointing give the same values and gradients; finite differences agree."""
    plain = plain or unchecked(f)
    wrt = tuple(i for i, a in enumerate(args) if _flat(a).size) if wrt is None else wrt
    value = f(*args)
    assert np.array_equal(value, plain(*args)), (value, plain(*args))
    want = _flat_gradient(adtrans.gradient(plain, *args, wrt=wrt), args, wrt)
    got = {"gradient": adtrans.gradient(f, *args, wrt=wrt)}
    v1, got["value_with_gradient"] = adtrans.value_with_gradient(f, *args, wrt=wrt)
    v2, pullback = adtrans.value_with_pullback(f, *args, wrt=wrt)
    got["pullback"] = pullback(1.0)
    got["pullback, again"] = pullback(1.0)
    assert np.array_equal(v1, value) and np.array_equal(v2, value), (v1, v2, value)
    for name, g in got.items():
        np.testing.assert_allclose(_flat_gradient(g, args, wrt), want, rtol=rtol, atol=1e-13, err_msg=name)
    if fd:
        assert_gradient(f, *args, wrt=wrt)


def assert_located(err, fn, text):
    """`err` is a DifferentiationError at the line of `fn` containing `text`."""
    assert isinstance(err, adtrans.DifferentiationError), repr(err)
    lines, first = inspect.getsourcelines(fn)
    line = first + next(i for i, source in enumerate(lines) if text in source)
    assert (err.filename or "").endswith("test_checkpointing_hunt.py") and err.lineno == line, str(err)


def short_traceback(test):
    """`test`, whose failure is reported in one line: formatting the tracebacks of the expected
    failures (through adtrans's long modules) took pytest longer than running the tests."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        try:
            test(*args, **kwargs)
        except Exception as err:
            raise AssertionError(f"{type(err).__name__}: {err}") from None
    return run


def bug(reason):
    """Mark a test that exposes a bug: an expected failure (strict) until the lead fixes it."""
    return lambda test: bug_case(reason)(short_traceback(test))


def bug_case(reason):
    """The mark of one parameter set that exposes a bug (its test is wrapped in `short_traceback`)."""
    return pytest.mark.xfail(strict=True, reason="BUG: " + reason)


# =====================================================================================
# 1. Silent wrong gradients
# =====================================================================================

# -- 1a. Checkpointed code that changes an input in place ---------------------------------
# The forward runs the user's code as Python (in place); the pullback recomputes it from
# the kept input, which that forward has changed.

def bias_tanh(z, b):
    z += b                      # z is the caller's temporary x @ W: harmless in Python
    return np.tanh(z)


bias_tanh_checkpointed = adtrans.checkpointed(bias_tanh)


def inplace_call(x, W, b):
    return np.sum(bias_tanh_checkpointed(x @ W, b) ** 2)


def inplace_block(x, W, b):
    z = x @ W
    with adtrans.recomputed():
        z += b
        y = np.tanh(z)
    return np.sum(y ** 2)


def setitem_block(x, W, b):
    y = x @ W
    with adtrans.recomputed():
        y[0] = y[0] * b
        z = np.sin(y)
    return np.sum(z * z)


def heat(u0, kappa, n):
    u = u0.copy()
    for _ in adtrans.segmented(range(n), 2):
        u[1:-1] = u[1:-1] + kappa * (u[2:] - 2 * u[1:-1] + u[:-2])
    return np.sum(u ** 3)


def heat_augmented(u0, kappa, n):
    u = u0.copy()
    for _ in adtrans.segmented(range(n), 2):
        u += kappa * (np.roll(u, 1) - 2 * u + np.roll(u, -1))
    return np.sum(u ** 3)


def diffuse(u, kappa):
    u[1:-1] = u[1:-1] + kappa * (u[2:] - 2 * u[1:-1] + u[:-2])
    return u


diffuse_checkpointed = adtrans.checkpointed(diffuse)


def heat_steps(u0, kappa, n):
    u = u0.copy()
    for _ in range(n):
        u = diffuse_checkpointed(u, kappa)
    return np.sum(u ** 3)


@pytest.mark.parametrize("f, args", [
    (inplace_call, (randn(2, 3), randn(3, 3), randn(3))),
    (inplace_block, (randn(2, 3), randn(3, 3), randn(3))),
    (setitem_block, (randn(2, 3), randn(3, 3), randn(3))),
    (heat, (randn(6), 0.2, 5)),
    (heat_augmented, (randn(6), 0.2, 5)),
    (heat_steps, (randn(6), 0.2, 3)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_checkpointed_code_changing_an_input_in_place(f, args):
    same_as_plain(f, *args)


@pytest.mark.parametrize("f, args", [(inplace_call, (randn(2, 3), randn(3, 3), randn(3))),
                                     (heat_steps, (randn(6), 0.2, 3))])
def test_the_in_place_programs_without_checkpointing_are_right(f, args):
    assert_gradient(unchecked(f), *args)


@dataclass
class Particle:
    pos: np.ndarray
    vel: np.ndarray


def particle_step(s, dt):
    with adtrans.recomputed():
        s.pos = s.pos + dt * s.vel
        s.vel = s.vel * 0.9
    return np.sum(s.pos ** 2) + np.sum(s.vel)


def test_recomputed_block_setting_fields_of_a_dataclass():
    def fresh():
        return Particle(np.array([1.0, 2.0]), np.array([0.5, -0.5]))

    g = adtrans.gradient(particle_step, fresh(), 0.1)
    want = adtrans.gradient(unchecked(particle_step), fresh(), 0.1)
    np.testing.assert_allclose(g[0].pos, want[0].pos)
    np.testing.assert_allclose(g[0].vel, want[0].vel)
    assert g[1] == pytest.approx(want[1], rel=1e-12)


# -- 1b. A derivative registered for a checkpointed function ------------------------------

def scaled_tanh(x):
    return np.tanh(x)


@adtrans.derivative(of=scaled_tanh)
def scaled_tanh_vjp(x):
    y = np.tanh(x)
    return y, lambda v: 2.0 * v * (1.0 - y * y)       # deliberately not tanh's derivative


scaled_tanh_checkpointed = adtrans.checkpointed(scaled_tanh)


def test_checkpointed_function_with_a_registered_derivative():
    x = np.array([0.1, 0.2, -0.4])
    plain = adtrans.gradient(lambda x: np.sum(scaled_tanh(x) * 3.0), x)
    np.testing.assert_allclose(plain, 6.0 * (1 - np.tanh(x) ** 2))       # the registered VJP
    np.testing.assert_allclose(adtrans.gradient(lambda x: np.sum(scaled_tanh_checkpointed(x) * 3.0), x), plain)


@adtrans.differentiable(checkpoint=True)
def scaled_sin(x):
    return np.sin(x)


@adtrans.derivative(of=scaled_sin)
def scaled_sin_vjp(x):
    return np.sin(x), lambda v: 2.0 * v * np.cos(x)


def test_registered_derivative_of_a_decorated_checkpointed_function_is_used():
    x = np.array([0.1, 0.2])
    np.testing.assert_allclose(adtrans.gradient(lambda x: np.sum(scaled_sin(x)), x), 2.0 * np.cos(x))


# -- 1c. Random numbers in recomputed code (dropout) -------------------------------------

def dropout(h, W, rng):
    keep = rng.random(h.shape) > 0.5
    return np.tanh(h @ W) * keep


dropout_checkpointed = adtrans.checkpointed(dropout)


def dropout_net(x, W, seed):
    rng = np.random.default_rng(seed)
    return np.sum(dropout_checkpointed(x, W, rng) ** 2)


def test_dropout_in_a_checkpointed_layer():
    same_as_plain(dropout_net, randn(6, 3), randn(3, 3), 0, wrt=(0, 1))


# -- 1d. The Swift form made inside differentiated code around a closure --------------------

def make_recomputed_in_gradient(original):
    return adtrans.differentiable_function(
        lambda x: (original(x), lambda v: adtrans.pullback(original, x)(v)))


def swift_around_closure(x, w):
    wave = make_recomputed_in_gradient(lambda t: np.sin(t * w))
    return np.sum(wave(x))


def test_swift_form_around_a_closure_inside_differentiated_code():
    # Its VJP gives no derivative for the captured w (it dropped d/dw with only a
    # ZeroDerivativeWarning): a located error, as JAX refuses a custom_vjp closing over tracers.
    with pytest.raises(adtrans.DifferentiationError, match="reads differentiated values") as err:
        adtrans.gradient(swift_around_closure, np.array([0.2, 0.3]), 0.5)
    assert_located(err.value, make_recomputed_in_gradient, "adtrans.differentiable_function(")


# =====================================================================================
# 2. Crashes: an internal error instead of a value or a located error
# =====================================================================================

# -- 2a. A variable the region assigns on some paths only, or augments -------------------

def assigned_in_one_branch(x, w):
    z = x
    with adtrans.recomputed():
        y = x * w
        if np.sum(y) > 0:
            z = np.exp(y)
    return np.sum(z * w)


def augmented_in_block(x, w):
    h = x * 1.0
    with adtrans.recomputed():
        h += w * x
        h *= 2.0
    return np.sum(h * h)


def best_so_far(xs, w):
    h, best = w, 0.0
    for x in adtrans.segmented(xs, 2):
        h = math.sin(h * x) + x
        if h > 0.5:
            best = h * 2
    return best + h


def last_positive(xs, w):
    h = w * 1.0
    with adtrans.recomputed():
        for x in xs:
            if x > 0:
                h = np.sin(x * w)
    return h


@pytest.mark.parametrize("f, args", [
    (assigned_in_one_branch, (np.array([0.3, 0.5]), 0.7)),
    (best_so_far, ([0.1, 0.9, 0.1, 0.1], 0.4)),             # the recomputed run assigns it
    (assigned_in_one_branch, (np.array([-0.3, -0.5]), 0.7)),
    (augmented_in_block, (np.array([0.3, 0.5]), 0.7)),
    (best_so_far, ([0.1, 0.1, 0.1, 0.1, 0.9], 0.4)),     # the last run does not assign it
    (last_positive, ([-0.1, -0.2], 0.4)),
], ids=lambda v: getattr(v, "__name__", ""))
@short_traceback
def test_variables_assigned_on_some_paths(f, args):
    same_as_plain(f, *args)


# -- 2b. A variable first assigned in a segmented body and read after the loop --------------

def rnn_last_output(h0, Ws, V):
    h = h0
    for W in adtrans.segmented(Ws, 4):
        h = np.tanh(h @ W)
        y = h @ V
    return np.sum(y * y)


def closure_from_last_pass(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        f = lambda t: math.sin(t * x) * w      # noqa: E731
        h = f(h) + x
    return f(h) * h


@pytest.mark.parametrize("steps", [1, 4, 5, 9])
@short_traceback
def test_rnn_output_read_after_a_segmented_loop(steps):
    same_as_plain(rnn_last_output, randn(2, 3), [randn(3, 3) * 0.5 for _ in range(steps)], randn(3, 2))


@pytest.mark.parametrize("n", [1, 2, 5])
@short_traceback
def test_closure_made_in_a_segmented_body_called_after(n):
    same_as_plain(closure_from_last_pass, list(randn(n)), 0.4)


# -- 2c. return / break where the region cannot take them ----------------------------------

def return_in_block(x, w):
    with adtrans.recomputed():
        y = np.sin(x * w)
        if w > 10.0:
            return np.sum(y)
        z = y * y
    return np.sum(z)


@pytest.mark.parametrize("w", [0.7, 11.0])
def test_return_inside_a_recomputed_block(w):
    try:                                        # works, or is refused at the 'return'
        same_as_plain(return_in_block, np.array([0.3, 0.5]), w)
    except adtrans.DifferentiationError as err:
        assert_located(err, return_in_block, "return np.sum(y)")


def return_in_segmented(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        h = math.sin(h * x)
        if h > 5:
            return h * 2
    return h


def test_return_inside_a_segmented_body_is_a_located_error():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(return_in_segmented, [0.1, 0.2, 0.3], 0.3, wrt=1)
    assert_located(info.value, return_in_segmented, "return h * 2")


def break_in_block(xs, w):
    s = 0.0
    for x in xs:
        with adtrans.recomputed():
            s = s + math.sin(x * w)
            if s > 0.5:
                break
        s = s * 1.1
    return s


def test_break_inside_a_recomputed_block():
    same_as_plain(break_in_block, [0.3, 0.2, 0.5, 0.1, 0.4], 0.7)


# -- 2d. What checkpointed() accepts ---------------------------------------------------------

tanh_checkpointed = adtrans.checkpointed(np.tanh)
exp_checkpointed = adtrans.checkpointed(math.exp)


@pytest.mark.parametrize("f, plain, x", [
    (lambda x: np.sum(tanh_checkpointed(x) * x), lambda x: np.sum(np.tanh(x) * x), np.array([0.1, 0.2])),
    (lambda x: exp_checkpointed(x) * x, lambda x: math.exp(x) * x, 0.3)])
def test_checkpointed_builtin(f, plain, x):
    same_as_plain(f, x, plain=plain)          # its rule is recomputation enough (or a located error)


@dataclass
class Dense:
    W: np.ndarray
    b: np.ndarray

    def __call__(self, h):
        CALLS.append("dense")
        return np.tanh(h @ self.W + self.b)

    def block(self, h):
        CALLS.append("block")
        return np.tanh(h @ self.W) + self.b


DENSE = Dense(randn(3, 3), randn(3))
dense_checkpointed = adtrans.checkpointed(DENSE)
block_checkpointed = adtrans.checkpointed(DENSE.block)


@pytest.mark.parametrize("f, plain, name", [
    (dense_checkpointed, DENSE, "dense"),
    (block_checkpointed, DENSE.block, "block")])
@short_traceback
def test_checkpointed_layer_instance_and_bound_method(f, plain, name):
    x = randn(2, 3)
    CALLS.clear()
    g = adtrans.gradient(lambda x: np.sum(f(x) ** 2), x)
    assert CALLS.count(name) == 2
    np.testing.assert_allclose(g, adtrans.gradient(lambda x: np.sum(plain(x) ** 2), x), rtol=1e-12)


def test_pullback_of_a_checkpointed_bound_method_itself():
    x = randn(2, 3)
    # A bound method's object gets a tangent when wrt names it (docs/index.md, Decisions).
    value, pullback = adtrans.value_with_pullback(block_checkpointed, x, wrt=("self", "h"))
    d_self, d_x = pullback(np.ones_like(value))
    want_self, want_x = adtrans.value_with_pullback(DENSE.block, x, wrt=("self", "h"))[1](np.ones_like(value))
    np.testing.assert_allclose(d_x, want_x)
    np.testing.assert_allclose(d_self.W, want_self.W)
    value, pullback = adtrans.value_with_pullback(block_checkpointed, x)
    np.testing.assert_allclose(pullback(np.ones_like(value)), want_x)


# -- 2e. segmented(xs, k) with a length plain Python accepts or refuses ----------------------

def halves(xs, w):
    h = w
    for x in adtrans.segmented(xs, len(xs) / 2):
        h = math.sin(h * x)
    return h


def test_segmented_with_a_float_length():
    same_as_plain(halves, [0.1, 0.2, 0.3, 0.4], 0.3)


def zero_length(xs, w):
    h = w
    for x in adtrans.segmented(xs, 0):
        h = math.sin(h * x)
    return h


def test_segmented_with_length_zero():
    with pytest.raises(ValueError):
        zero_length([0.1, 0.2], 0.3)
    with pytest.raises((ValueError, adtrans.DifferentiationError), match="length"):
        adtrans.gradient(zero_length, [0.1, 0.2], 0.3, wrt=1)


# =====================================================================================
# 3. Refused, with a wrong or misleading error
# =====================================================================================

def checkpointed_inside(x, w):
    wave = adtrans.checkpointed(lambda t: np.sin(t * w))
    return np.sum(wave(x) * wave(x * 2))


@dataclass
class CheckpointingNet:
    layers: list

    def __call__(self, h):
        for layer in self.layers:
            h = adtrans.checkpointed(layer)(h)
        return h


def test_checkpointed_called_inside_differentiated_code():
    try:
        same_as_plain(checkpointed_inside, np.array([0.3, 0.5]), 0.7,
                      plain=lambda x, w: np.sum(np.sin(x * w) * np.sin(x * 2 * w)))
    except adtrans.DifferentiationError as err:
        assert_located(err, checkpointed_inside, "adtrans.checkpointed(")
        assert "DifferentiableFunction" not in str(err)


def test_checkpointed_layer_wrapped_in_a_method():
    layers = [Dense(randn(3, 3), randn(3)) for _ in range(2)]
    try:
        g = adtrans.gradient(lambda m, x: np.sum(m(x) ** 2), CheckpointingNet(layers), randn(2, 3), wrt=0)
        assert len(g.layers) == 2
    except adtrans.DifferentiationError as err:
        assert_located(err, CheckpointingNet.__call__, "adtrans.checkpointed(layer)")


def append_in_block(x, w):
    ys = []
    for i in range(3):
        with adtrans.recomputed():
            ys.append(np.sin(x * w * i))
    return np.sum(ys[0] + ys[1] * ys[2])


def test_append_in_a_recomputed_block():
    same_as_plain(append_in_block, np.array([0.3, 0.5, 0.9]), 0.7)


def rnn_outputs(W, h0, xs):
    h = h0
    outs = []
    for x in adtrans.segmented(xs, 2):
        h = np.tanh(h @ W + x)
        outs.append(h)
    return np.sum(np.stack(outs) ** 2)


def test_rnn_collecting_outputs_in_a_segmented_loop():
    same_as_plain(rnn_outputs, randn(3, 3), randn(1, 3), [randn(1, 3) for _ in range(5)])


def concatenated_outputs(xs, w):
    h = w
    out = []
    for x in adtrans.segmented(xs, 2):
        h = math.sin(h * x)
        out = out + [h * 2]
    return sum(out)


def test_the_advice_of_the_append_error():
    # It was an error without file:line whose note advised append; lists concatenate now.
    same_as_plain(concatenated_outputs, [0.3, 0.4, 0.5], 0.4, wrt=(1,))


def segmented_comprehension(xs, w):
    return sum([math.sin(x * w) for x in adtrans.segmented(xs, 2)])


def test_comprehension_over_segmented():
    try:
        same_as_plain(segmented_comprehension, [0.1, 0.2, 0.3], 0.3)
    except adtrans.DifferentiationError as err:
        assert "must assign a variable used after it" not in str(err)


def def_in_block(x, w):
    with adtrans.recomputed():
        def wave(t):
            return np.sin(t * w)
        a = wave(x)
    return np.sum(a * wave(w))


def lambda_in_block(x, w):
    with adtrans.recomputed():
        a = np.sin(x * w)
        f = lambda t: a * t      # noqa: E731
    return np.sum(f(w) + f(x))


@pytest.mark.parametrize("f", [
    lambda_in_block,
    def_in_block])
@short_traceback
def test_function_made_in_a_block_called_after(f):
    same_as_plain(f, np.array([0.2, 0.3]), 0.5)


def zipped(xs, ys, w):
    h = w
    for x, y in adtrans.segmented(zip(xs, ys), 2):
        h = math.sin(h * x) + y
    return h * h


def enumerated(xs, w):
    h = w
    for i, x in adtrans.segmented(enumerate(xs), 2):
        h = math.sin(h * x) + i * 0.1
    return h * h


@pytest.mark.parametrize("f, args", [(zipped, ([0.1, 0.5, 0.3], [0.2, 0.3, 0.4], 0.4)),
                                     (enumerated, ([0.1, 0.5, 0.3], 0.4))], ids=["zip", "enumerate"])
@short_traceback
def test_segmented_over_zip_and_enumerate(f, args):
    # Once refused ('register one with @adtrans.derivative(of=zip)'): zip and enumerate used as
    # values now run as lists (tests/test_sequences.py).
    same_as_plain(f, *args)


def reassigned_before_read(x, W):
    h = x
    with adtrans.recomputed():
        h = np.tanh(x @ W)
        h = h * 2.0
    return np.sum(h)


def block_in_segmented_after_loop(x, W):
    g = x
    for V in [W, W]:
        g = np.sin(g @ V)
    for V in adtrans.segmented([W, W * 0.5, W], 2):
        with adtrans.recomputed():
            g = np.tanh(g @ V)
    return np.sum(g)


@pytest.mark.parametrize("f", [reassigned_before_read, block_in_segmented_after_loop])
def test_no_spurious_warning_from_a_recomputed_block(f):
    with warnings.catch_warnings():
        warnings.simplefilter("error", adtrans.ZeroDerivativeWarning)
        adtrans.gradient(f, randn(2, 3), randn(3, 3))


def recomputed_as(x, w):
    with adtrans.recomputed() as region:      # noqa: F841
        y = np.sin(x * w)
    return np.sum(y)


def test_recomputed_with_as():
    try:
        adtrans.gradient(recomputed_as, np.array([0.1]), 0.3)
    except adtrans.DifferentiationError as err:
        assert_located(err, recomputed_as, "with adtrans.recomputed() as")
        assert "recomputed" in str(err) and "derivative(of=" not in str(err), str(err)


def length_by_keyword(xs, w):
    h = w
    for x in adtrans.segmented(xs, length=2):
        h = math.sin(h * x)
    return h


def test_segmented_length_by_keyword():
    same_as_plain(length_by_keyword, [0.1, 0.2, 0.3], 0.3)


# -- refusals that are right --------------------------------------------------------------------

def segmented_else(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        h = math.sin(h * x)
    else:
        h = h * 2
    return h


def try_in_block(x, w):
    with adtrans.recomputed():
        try:
            y = np.sin(x * w)
        finally:
            pass
    return np.sum(y)


def block_not_used(x, w):
    with adtrans.recomputed():
        y = np.sin(x * w)       # noqa: F841
    return np.sum(x * w)


@pytest.mark.parametrize("f, args, line", [
    (segmented_else, ([0.1, 0.2], 0.3), "h = h * 2"),
    (try_in_block, (np.array([0.1]), 0.3), "try:"),
    (block_not_used, (np.array([0.1]), 0.3), "with adtrans.recomputed():"),
])
def test_located_refusals(f, args, line):
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(f, *args, wrt=len(args) - 1)
    assert_located(info.value, f, line)


# =====================================================================================
# 4. Memory: what a segmented loop's tape keeps per run
# =====================================================================================

def deep_chain(x, Ws, bs):
    h = x
    for W, b in adtrans.segmented([(W, b) for W, b in zip(Ws, bs)], 4):
        z = h @ W + b
        h = np.tanh(z)
    return np.sum(h)


def _kept_per_run(f):
    forward = adtrans.generated_source(f).split("def pullback")[0]
    (kept,) = [k for k in re.findall(r"tape_\d+\.append\(\((.*)\)\)", forward) if "run" in k]
    return [n.strip() for n in kept.split(",") if n.strip() not in ("start", "start_plus_segment_length", "run")]


def test_segmented_tape_keeps_one_activation_per_run():
    assert _kept_per_run(deep_chain) == ["h_1"]        # the run's input; none of its z


def test_segmented_tape_keeps_no_output_only_for_its_shape():
    assert _kept_per_run(rnn_last_output) == ["h_1"]


# =====================================================================================
# 5. What works: recomputed blocks
# =====================================================================================

def block_in_loop(x, Ws):
    h = x
    for W in Ws:
        with adtrans.recomputed():
            CALLS.append("pass")
            h = np.tanh(h @ W)
            h = h + 0.1 * h * h
    return np.sum(h)


def test_block_in_a_loop_reading_what_it_assigns():
    x, Ws = randn(2, 3), [randn(3, 3) * 0.5 for _ in range(4)]
    CALLS.clear()
    adtrans.gradient(block_in_loop, x, Ws)
    assert CALLS.count("pass") == 8        # 4 passes, each once more in the pullback
    same_as_plain(block_in_loop, x, Ws)


def blocks_in_branches(x, w, flag):
    if flag > 0:
        with adtrans.recomputed():
            y = np.sin(x * w)
            z = y * y
    else:
        with adtrans.recomputed():
            z = np.cos(x * w) * w
    return np.sum(z)


def block_in_if_without_else(x, w, flag):
    h = x
    if flag > 0:
        with adtrans.recomputed():
            h = np.sin(h * w)
            h = h * h
    return np.sum(h)


def early_returns_around(x, w, flag):
    if w > 10.0:
        return np.sum(x)
    with adtrans.recomputed():
        y = np.sin(x * w) * flag
    if np.sum(y) > 0.5:
        return np.sum(y)
    return np.sum(y * y)


def nested_blocks(x, w, flag):
    with adtrans.recomputed():
        a = np.sin(x * w)
        with adtrans.recomputed():
            b = np.exp(a) * w * flag
        c = a * b
    return np.sum(c)


def closures_around_block(x, w, flag):
    a = x
    before = lambda t: a * t * flag       # noqa: E731  (sees the block's a, as Python's closure does)
    with adtrans.recomputed():
        a = np.sin(x * w)
        c = a + 1.0

    def after(t):
        return a * t + c
    return np.sum(before(w) + after(2.0))


def block_in_nested_def(x, w, flag):
    def inner(t):
        with adtrans.recomputed():
            y = np.sin(t * w)
            y = y * w * flag
        return y * y
    return np.sum(inner(x) + inner(2 * x))


def setitem_of_a_fresh_array(x, w, flag):
    y = np.zeros(3)
    with adtrans.recomputed():
        y[0] = x[0] * w
        y[1:] = np.sin(x[1:]) * flag
    return np.sum(y * y)


@pytest.mark.parametrize("flag", [1, -1])
@pytest.mark.parametrize("f", [blocks_in_branches, block_in_if_without_else, early_returns_around, nested_blocks,
                               closures_around_block, block_in_nested_def, setitem_of_a_fresh_array],
                         ids=lambda f: f.__name__)
def test_recomputed_block_programs(f, flag):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adtrans.ZeroDerivativeWarning)   # closures_around_block: see 3.
        same_as_plain(f, np.array([0.3, 0.5, 0.9]), 0.7, flag, wrt=(0, 1))


def continue_in_block(xs, w):
    s = 0.0
    for x in xs:
        with adtrans.recomputed():
            if x < 0:
                continue
            s = s + math.sin(x * w)
        s = s * 1.1
    return s


def return_before_block_in_loop(xs, w):
    h = w
    for x in xs:
        if x < 0:
            return h * 10
        with adtrans.recomputed():
            h = math.sin(h * x) + x
    return h


def block_then_break(xs, w):
    h = w
    for x in xs:
        with adtrans.recomputed():
            h = math.sin(h * x) + x
        if h > 1.0:
            break
    return h


def carried_read_before_block(xs, w):
    h, c, s = w, 0.0, 0.0
    for x in xs:
        h = h + c
        with adtrans.recomputed():
            c = np.sin(h * x)
            d = c * 2
        s = s + d
    return s


def block_in_while(xs, w):
    h, i = w, 0
    while i < len(xs):
        with adtrans.recomputed():
            h = np.sin(h * xs[i])
            i = i + 1
    return h


def int_and_float_outputs(xs, w):
    count, total = 0, 0.0
    for x in xs:
        with adtrans.recomputed():
            y = math.sin(x * w)
            if y > 0:
                count = count + 1
            total = total + y
    return total / max(count, 1)


@pytest.mark.parametrize("xs", [[0.1, 0.2, -0.1, 0.9], [0.1, 0.5, 0.9, 0.9, 0.3]])
@pytest.mark.parametrize("f", [continue_in_block, return_before_block_in_loop, block_then_break,
                               carried_read_before_block, block_in_while, int_and_float_outputs],
                         ids=lambda f: f.__name__)
def test_recomputed_blocks_in_loops(f, xs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adtrans.ZeroDerivativeWarning)   # carried_read_before_block: see 3.
        same_as_plain(f, xs, 0.7)


def helper_with_block(h, W):
    with adtrans.recomputed():
        CALLS.append("helper")
        a = np.tanh(h @ W)
        a = a * a
    return a


def twice_through_helper(x, W):
    return np.sum(helper_with_block(helper_with_block(x, W), W))


def test_block_in_a_helper_called_twice():
    x, W = randn(2, 3), randn(3, 3)
    CALLS.clear()
    adtrans.gradient(twice_through_helper, x, W)
    assert CALLS.count("helper") == 4
    same_as_plain(twice_through_helper, x, W, plain=lambda x, W: np.sum(np.tanh((np.tanh(x @ W) ** 2) @ W) ** 2))


@dataclass
class TwoLayer:
    W: np.ndarray
    b: np.ndarray

    def __call__(self, x):
        with adtrans.recomputed():
            h = np.tanh(x @ self.W + self.b)
            h = np.tanh(h @ self.W)
        return h


def test_block_in_a_dataclass_method():
    model, x = TwoLayer(randn(3, 3), randn(3)), randn(2, 3)
    loss = lambda m, x: np.sum(m(x) ** 2)      # noqa: E731
    g = adtrans.gradient(loss, model, x)
    want = adtrans.gradient(lambda m, x: np.sum(np.tanh(np.tanh(x @ m.W + m.b) @ m.W) ** 2), model, x)
    np.testing.assert_allclose(g[0].W, want[0].W, rtol=1e-12)
    np.testing.assert_allclose(g[0].b, want[0].b, rtol=1e-12)
    assert_gradient(loss, model, x)


def hooked(x, w):
    with adtrans.recomputed():
        y = adtrans.with_derivative(np.sin(x * w), lambda d: CALLS.append("hook"))
        z = y * y
    return np.sum(z)


def test_hook_in_a_block_runs_once_per_pullback():
    CALLS.clear()
    _, pullback = adtrans.value_with_pullback(hooked, np.array([0.3, 0.5]), 0.7)
    pullback(1.0)
    pullback(1.0)
    assert CALLS.count("hook") == 2


# =====================================================================================
# 6. What works: segmented loops
# =====================================================================================

def recurrence(xs, k, w):
    h = w
    for x in adtrans.segmented(xs, k):
        CALLS.append("pass")
        h = math.sin(h * x) + x
    return h * h


@pytest.mark.parametrize("k", [1, 3, 20])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 6, 7])
def test_segmented_lengths(n, k):
    xs = list(randn(n))
    CALLS.clear()
    adtrans.gradient(recurrence, xs, k, 0.4, wrt=2)
    last = n - max(n - 1, 0) // k * k
    assert CALLS.count("pass") == 2 * n - last        # every run but the last is recomputed
    same_as_plain(recurrence, xs, k, 0.4, wrt=(2,) if n == 0 else (0, 2))


def neighbours(xs, w):
    h = w
    for t in adtrans.segmented(range(len(xs)), 2):
        after = xs[t + 1] if t + 1 < len(xs) else 0.0
        h = math.sin(h * xs[t] + after) + xs[t - 1] * xs[t]
    return h * xs[-1]


def whole_list_in_body(xs, w):
    h = w
    for t in adtrans.segmented(range(len(xs)), 2):
        if t % 3 == 0:
            h = math.sin(h * xs[t]) + sum(xs[t:t + 2]) * 0.1
        h = h + sum(xs) * 0.01
    return h


def target_after(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        h = math.sin(h * x)
    return h * x


def indexed(xs, w):
    h = w
    for t in adtrans.segmented(range(len(xs)), 2):
        h = math.sin(h * xs[t]) + t * 0.1
    return h * h


def pairs(xs, w):
    h = w
    for a, b in adtrans.segmented([(x, x * x) for x in xs], 2):
        h = math.sin(h * a) + b
    return h * h


def rows(xs, w):
    h = w
    for x in adtrans.segmented(np.outer(xs, xs), 2):
        h = np.tanh(h * x)
    return np.sum(h)


def into_dict(xs, w):
    h, d = w, {}
    for i in adtrans.segmented(range(len(xs)), 2):
        h = math.sin(h * xs[i]) + 1.0
        d[i] = h
    return sum(d.values()) + d[0]


def skip_first(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        if x < 0:
            continue
        h = math.sin(h * x) + x
    return h * h


def skip_middle(xs, w):
    h = w
    for x in adtrans.segmented(xs, 3):
        h = math.sin(h * x) + x
        if h < 0:
            h = h * 0.5
            continue
        h = h * 1.5
    return h * h


def break_first(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        if x > 1.0:
            break
        h = math.sin(h * x) + x
    return h * x


def break_nested(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        if x < 0:
            continue
        h = math.sin(h * x) + x
        if x > 0:
            if h > 1.2:
                break
        h = h * 0.9
    return h * h


def carried_previous(xs, w):
    h, prev = w, 0.0
    for x in adtrans.segmented(xs, 2):
        h = math.sin(h * x + prev)
        prev = x * w
    return h


def overwritten_then_read_after(xs, w):
    h, t = w, 0.0
    for x in adtrans.segmented(xs, 2):
        t = x * w
        h = math.sin(h + t)
    return h + t


def count_positive(xs, w):
    count, total = 0, 0.0
    for x in adtrans.segmented(xs, 2):
        y = math.sin(x * w)
        if y > 0:
            count = count + 1
        total = total + y
    return total / max(count, 1)


def closure_in_body(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        f = lambda t: math.sin(t * x) * w      # noqa: E731
        h = f(h) + x
    return h * h


def hygiene(xs, w):
    run, items, start, last_run = 0.0, 0.0, 0.5, w
    h = w
    for x in adtrans.segmented(xs, 2):
        run = run + x
        items = items + h * start * last_run
        h = math.sin(h * x)
    return h + run * items


def aliases(xs, w):
    h = w
    for x in segmented_alias(xs, 2):
        h = math.sin(h * x)
    with recomputed_alias():
        h = h * 2.0
        g = math.sin(h)
    return g


@pytest.mark.parametrize("xs", [[0.3], [0.3, -0.2], [0.3, -0.2, 0.5, 1.9, 0.1], [0.1, -0.2, 0.3, 0.4, 1.5, 0.3, 0.2]])
@pytest.mark.parametrize("f", [target_after, indexed, pairs, rows, into_dict, skip_first, skip_middle, break_first,
                               break_nested, carried_previous, overwritten_then_read_after, count_positive,
                               closure_in_body, hygiene, aliases, neighbours, whole_list_in_body],
                         ids=lambda f: f.__name__)
def test_segmented_programs(f, xs):
    same_as_plain(f, xs, 0.4)


def nested_loops_in_body(x, Ws):
    h = x
    for W in adtrans.segmented(Ws, 2):
        for j in range(2):
            h = np.tanh(h @ W) + 0.1 * j
        for v in W:
            h = h + 0.01 * v
        for j in range(5):
            h = np.tanh(h @ W)
            if np.sum(h) > 0:
                break
    return np.sum(h * h)


def epochs(x, Ws):
    h, total = x, 0.0
    for limit in [-100.0, 100.0, -100.0, 100.0]:
        for W in adtrans.segmented(Ws, 2):
            h = np.tanh(h @ W) + 0.5
            if np.sum(h) > limit:
                break
        total = total + np.sum(h * h)
        h = h * 0.5
    return total


def segmented_in_segmented(x, Ws):
    h, total = x, 0.0
    for _ in adtrans.segmented(range(3), 2):
        for W in adtrans.segmented(Ws, 2):
            h = np.tanh(h @ W)
        total = total + np.sum(h)
    return total


def segmented_stack(h, Ws):
    for W in adtrans.segmented(Ws, 2):
        h = np.tanh(h @ W)
    return h


segmented_stack_checkpointed = adtrans.checkpointed(segmented_stack)


def segmented_in_checkpointed(x, Ws):
    return np.sum(segmented_stack_checkpointed(x, Ws) ** 2)


def layer(h, W):
    CALLS.append("layer")
    return np.tanh(h @ W)


layer_checkpointed = adtrans.checkpointed(layer)


def block_and_call_in_segmented(x, Ws):
    h = x
    for W in adtrans.segmented(Ws, 2):
        with adtrans.recomputed():
            h = np.tanh(h @ W)
        h = layer_checkpointed(h, W) * 1.1
    return np.sum(h * h)


@pytest.mark.parametrize("f", [nested_loops_in_body, epochs, segmented_in_segmented, segmented_in_checkpointed,
                               block_and_call_in_segmented], ids=lambda f: f.__name__)
def test_segmented_loops_nested_and_combined(f):
    same_as_plain(f, randn(2, 3), [randn(3, 3) * 0.5 for _ in range(5)])


def test_segmented_float32_keeps_dtype():
    x, Ws = randn(2, 3).astype(np.float32), [randn(3, 3).astype(np.float32) for _ in range(5)]
    g = adtrans.gradient(segmented_in_checkpointed, x, Ws)
    want = adtrans.gradient(unchecked(segmented_in_checkpointed), x, Ws)
    assert g[0].dtype == np.float32 and all(d.dtype == np.float32 for d in g[1])
    np.testing.assert_allclose(g[0], want[0], rtol=1e-5)


# =====================================================================================
# 7. What works: checkpointed functions
# =====================================================================================

def kw_layer(h, W, b=None, gain=1.0, act=np.tanh):
    z = h @ W
    if b is not None:
        z = z + b
    return act(z * gain)


kw_layer_checkpointed = adtrans.checkpointed(kw_layer)


def keywords(x, W):
    h = kw_layer_checkpointed(x, W, b=x[0], gain=0.8)
    h = kw_layer_checkpointed(h, W)
    h = kw_layer_checkpointed(h, W=W, gain=0.8, act=np.sin)
    return np.sum(h * h)


def star_layer(h, *Ws, scale=1.0, **options):
    for W in Ws:
        h = np.tanh(h @ W) * scale
    if options.get("square"):
        h = h * h
    return h


star_layer_checkpointed = adtrans.checkpointed(star_layer)


def starred(x, W):
    Ws = [W, W.T]
    return np.sum(star_layer_checkpointed(x, *Ws, scale=0.8, square=True) + star_layer_checkpointed(x, W))


def pair_of(h, W):
    a = np.tanh(h @ W)
    return a, np.sum(a * h @ W)


pair_of_checkpointed = adtrans.checkpointed(pair_of)


def tuple_result(x, W):
    a, s = pair_of_checkpointed(x, W)
    return np.sum(a) * s + np.sum(pair_of_checkpointed(x, W)[0])


def dict_of(h, W):
    return {"a": np.tanh(h @ W), "b": h * 2}


dict_of_checkpointed = adtrans.checkpointed(dict_of)


def dict_result(x, W):
    d = dict_of_checkpointed(x, W)
    return np.sum(d["a"] * d["b"]) + np.sum(dict_of_checkpointed(x * 2, W)["a"])


@dataclass
class State:
    h: np.ndarray
    energy: float
    step: int = field(default=0, metadata={"no_derivative": True})


def advance(s, W):
    h = np.tanh(s.h @ W)
    return State(h, s.energy + np.sum(h * h), s.step + 1)


advance_checkpointed = adtrans.checkpointed(advance)


def dataclass_result(x, W):
    s = State(x, 0.0)
    for _ in range(3):
        s = advance_checkpointed(s, W)
    return s.energy + np.sum(s.h) * s.step


def same_inputs_twice(x, W):
    return np.sum(layer_checkpointed(x, W) * layer_checkpointed(x, W))


def make_scaled(scale):
    def scaled(h, W):
        return np.tanh(h @ W) * scale
    return adtrans.checkpointed(scaled)


scaled_checkpointed = make_scaled(0.5)


def factory_closure(x, W):
    return np.sum(scaled_checkpointed(scaled_checkpointed(x, W), W))


def params_of(p, h):
    return np.tanh(h @ p["W"] + p["b"])


params_of_checkpointed = adtrans.checkpointed(params_of)


def dict_params(x, W):
    h = x
    for p in [{"W": W, "b": x[0]}, {"W": W * 0.5, "b": x[1]}]:
        h = params_of_checkpointed(p, h)
    return np.sum(h * h)


def in_comprehension(x, W):
    hs = [layer_checkpointed(x, W * s) for s in (0.5, 1.0, 2.0)]
    return sum([np.sum(h) for h in hs])


def recursive(x, n):
    if n == 0:
        return x
    return recursive_checkpointed(np.sin(x) * 1.1, n - 1)


recursive_checkpointed = adtrans.checkpointed(recursive)


def recursion(x, W):
    return np.sum(recursive_checkpointed(x @ W, 3))


@pytest.mark.parametrize("f, plain", [
    (keywords, None), (starred, None), (tuple_result, None), (dict_result, None), (dataclass_result, None),
    (same_inputs_twice, None), (factory_closure, lambda x, W: np.sum(np.tanh((np.tanh(x @ W) * 0.5) @ W) * 0.5)),
    (dict_params, None), (in_comprehension, None), (recursion, lambda x, W: np.sum(np.sin(np.sin(np.sin(x @ W) * 1.1) * 1.1) * 1.1)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_checkpointed_function_programs(f, plain):
    same_as_plain(f, randn(2, 3), randn(3, 3), plain=plain)


def test_checkpointed_call_recomputes_once_per_pullback():
    x, W = randn(2, 3), randn(3, 3)
    CALLS.clear()
    _, pullback = adtrans.value_with_pullback(same_inputs_twice, x, W)
    assert CALLS.count("layer") == 2
    pullback(1.0)
    assert CALLS.count("layer") == 4
    pullback(2.0)
    assert CALLS.count("layer") == 6


def test_array_cotangent_is_not_changed_and_the_pullback_is_linear():
    x, W = randn(2, 3), randn(3, 3)
    value, pullback = adtrans.value_with_pullback(lambda x, W: layer_checkpointed(x, W), x, W)
    cotangent = randn(*value.shape)
    kept = cotangent.copy()
    first, again, double = pullback(cotangent), pullback(cotangent), pullback(2 * cotangent)
    assert np.array_equal(cotangent, kept)
    _, plain = adtrans.value_with_pullback(layer, x, W)
    for a, b, c, d in zip(first, again, double, plain(cotangent)):
        np.testing.assert_allclose(a, b, rtol=1e-14)
        np.testing.assert_allclose(2 * a, c, rtol=1e-13)
        np.testing.assert_allclose(a, d, rtol=1e-12)


def test_checkpointed_int_promoted_and_gradient_of():
    f = adtrans.checkpointed(lambda a, b: a * b + math.sin(a))
    assert adtrans.gradient(lambda a, b: f(a, b), 2, 3.0, wrt=(0, 1)) == pytest.approx((3 + math.cos(2), 2.0))
    g = adtrans.checkpointed(lambda x: np.sin(x) * x)
    assert adtrans.gradient_of(lambda x: g(x) * 2.0)(0.3) == pytest.approx(2 * (math.cos(0.3) * 0.3 + math.sin(0.3)))


# =====================================================================================
# 8. What works: the Swift form, models, RNNs, integrators
# =====================================================================================

def make_recomputed(original):
    return adtrans.differentiable_function(
        lambda *args: (original(*args), lambda v: adtrans.pullback(original, *args)(v)))


layer_swift = make_recomputed(layer)


def swift_chain(x, Ws):
    h = x
    for W in Ws:
        h = layer_swift(h, W)
    return np.sum(h * h)


def swift_segmented(x, Ws):
    h = x
    for W in adtrans.segmented(Ws, 2):
        h = layer_swift(h, W)
    return np.sum(h * h)


def swift_in_block(x, Ws):
    with adtrans.recomputed():
        h = layer_swift(x, Ws[0])
        h = h * 2.0
    return np.sum(h)


def chain(x, Ws):
    h = x
    for W in Ws:
        h = layer(h, W)
    return np.sum(h * h)


@pytest.mark.parametrize("f, plain", [(swift_chain, chain), (swift_segmented, chain),
                                      (swift_in_block, lambda x, Ws: np.sum(layer(x, Ws[0]) * 2.0))])
def test_swift_make_recomputed_in_gradient(f, plain):
    same_as_plain(f, randn(2, 3), [randn(3, 3) * 0.5 for _ in range(3)], plain=plain)


def test_swift_form_recomputes():
    x, Ws = randn(2, 3), [randn(3, 3) * 0.5 for _ in range(3)]
    CALLS.clear()
    _, pullback = adtrans.value_with_pullback(swift_chain, x, Ws)
    assert CALLS.count("layer") == 3
    pullback(1.0)
    pullback(1.0)
    assert CALLS.count("layer") == 9


@dataclass
class SegmentedStack(nn.Layer):
    layers: list

    def __call__(self, x):
        for layer in adtrans.segmented(self.layers, 2):
            x = layer(x)
        return x


def test_model_segmenting_its_own_layers():
    layers = [nn.Dense(4, 4, nn.tanh, rng=i, dtype=np.float64) for i in range(5)]
    x = randn(3, 4)
    loss = lambda m, x: np.sum(m(x) ** 2)      # noqa: E731
    g = adtrans.gradient(loss, SegmentedStack(layers), x)
    want = adtrans.gradient(loss, nn.Sequential(layers), x)
    for a, b in zip(g[0].layers, want[0].layers):
        np.testing.assert_allclose(a.weight, b.weight, rtol=1e-12)
    np.testing.assert_allclose(g[1], want[1], rtol=1e-12)
    assert_gradient(loss, SegmentedStack([layer.discarding_activations() for layer in layers[:3]]), x)


@dataclass
class Cell:
    W: np.ndarray
    U: np.ndarray
    b: np.ndarray
    steps: int = 2
    name: str = field(default="cell", metadata={"no_derivative": True})

    @adtrans.differentiable(checkpoint=True)
    def step(self, h, x):
        CALLS.append("step")
        for _ in range(self.steps):
            h = np.tanh(h @ self.W + x @ self.U + self.b)
        return h


def rnn_cell(cell, h0, xs):
    h, loss = h0, 0.0
    for x in xs:
        h = cell.step(h, x)
        loss = loss + np.sum(h * h)
    return loss


def test_rnn_with_a_checkpointed_dataclass_method():
    cell = Cell(randn(3, 3) * 0.5, randn(2, 3), randn(3))
    h0, xs = randn(1, 3), [randn(1, 2) for _ in range(4)]
    CALLS.clear()
    adtrans.gradient(rnn_cell, cell, h0, xs, wrt=(0, 1))
    assert CALLS.count("step") == 8
    assert_gradient(rnn_cell, cell, h0, xs, wrt=(0, 1))


def rnn_segmented(W, U, b, h0, xs):
    h, loss = h0, 0.0
    for x in adtrans.segmented(xs, 3):
        h = np.tanh(h @ W + x @ U + b)
        loss = loss + np.sum(h * h)
    return loss


@pytest.mark.parametrize("steps", [1, 3, 4, 7])
def test_rnn_over_time_in_segments(steps):
    xs = [randn(1, 2) for _ in range(steps)]
    same_as_plain(rnn_segmented, randn(3, 3) * 0.5, randn(2, 3), randn(3), randn(1, 3), xs, wrt=(0, 1, 2, 3))


def rk4_step(f, y, dt):
    k1 = f(y)
    k2 = f(y + dt / 2 * k1)
    k3 = f(y + dt / 2 * k2)
    k4 = f(y + dt * k3)
    return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


rk4_step_checkpointed = adtrans.checkpointed(rk4_step)


def orbit(y0, k, dt):
    def rhs(y):
        return -k * y + np.sin(y)
    y = y0
    for _ in range(5):
        y = rk4_step_checkpointed(rhs, y, dt)
    return np.sum(y * y)


def orbit_segmented(y0, k, dt):
    def rhs(y):
        return -k * y + np.sin(y)
    y = y0
    for _ in adtrans.segmented(range(5), 2):
        y = rk4_step(rhs, y, dt)
    return np.sum(y * y)


def euler_step(y, k, dt):
    return y + dt * (-k * y + np.sin(y))


euler_step_checkpointed = adtrans.checkpointed(euler_step)


def euler(y0, k, dt):
    y = y0
    for _ in range(10):
        y = euler_step_checkpointed(y, k, dt)
    return np.sum(y * y)


def midpoint_blocks(y0, k, dt):
    y = y0
    for _ in range(4):
        with adtrans.recomputed():
            k1 = -k * y
            k2 = -k * (y + dt / 2 * k1)
            y = y + dt * k2
    return np.sum(y * y)


@pytest.mark.parametrize("f", [orbit, orbit_segmented, euler, midpoint_blocks], ids=lambda f: f.__name__)
def test_time_integrators(f):
    same_as_plain(f, np.array([1.0, 0.5]), 0.3, 0.1)
