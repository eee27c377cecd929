"""Hunting in today's features: closures, map/reversed/dict views, spread calls, **kwargs,
super(), bound methods, _replace/dataclasses.replace, no-derivative fields, repeated indices.

Each program combines several of them with loops, branches, early returns,
checkpointing, ``adtrans.nn`` layers and float32 arrays, and is checked
against central finite differences in float64 (``assert_gradient``: through
``gradient``, ``value_with_gradient`` and ``value_with_pullback``) or a
closed form. Where a program failed, a minimal reproducer sits beside it
(``test_minimal_*``); the realistic test is kept as written.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pytest

import adtrans
from adtrans import nn
from structured_check import assert_gradient, finite_differences


RNG = np.random.default_rng(31337)


def randn(*shape):
    return RNG.standard_normal(shape)


# -- 1. An ODE model: bound method as the right-hand side, int field steps, checkpointed step ------

def rk4_step(f, y, dt):
    k1 = f(y)
    k2 = f(y + 0.5 * dt * k1)
    k3 = f(y + 0.5 * dt * k2)
    k4 = f(y + dt * k3)
    return y + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


checkpointed_rk4_step = adtrans.checkpointed(rk4_step)


@dataclass
class Oscillator:
    stiffness: float
    damping: float
    steps: int = 8
    dt: float = field(default=0.05, metadata={"no_derivative": True})

    def rhs(self, y):
        return np.array([y[1], -self.stiffness * y[0] - self.damping * y[1]])


def oscillator_energy(model, y0):
    rhs = model.rhs
    y = y0
    for _ in range(model.steps):
        y = checkpointed_rk4_step(rhs, y, model.dt)
    return 0.5 * y[1] ** 2 + 0.5 * model.stiffness * y[0] ** 2


def test_bound_method_rhs_through_a_checkpointed_step():
    assert_gradient(oscillator_energy, Oscillator(1.3, 0.2), np.array([1.0, -0.5]))


# -- 2. Closures made in a loop with a default binding the loop value, stored and mapped ----------

def ensemble(weights, x):
    members = []
    for w in weights:
        members.append(lambda v, w=w: np.tanh(w * v))
    outputs = list(map(lambda m: m(x), members))
    return sum(outputs) / len(outputs)


def test_closures_with_defaults_in_a_list_then_mapped():
    assert_gradient(ensemble, [0.5, -1.2, 2.0], 0.7)


# -- 3. A dict of closures iterated by items(), with a branch on the key and an early return -----

def dispatch(w, b, x):
    ops = {"scale": lambda v: v * w, "shift": lambda v: v + b, "squash": lambda v: math.tanh(v * b)}
    y = x
    for name, op in ops.items():
        if name == "shift" and y > 10.0:
            return y * w
        y = op(y)
    return y * y


def test_dict_of_closures_through_items_with_early_return():
    assert_gradient(dispatch, 1.5, 0.3, 0.8)
    assert_gradient(dispatch, 20.0, 0.3, 0.8)     # takes the early return


# -- 4. A backward sweep with reversed() over layers, each a closure returned by a helper --------

def make_layer(W, b):
    return lambda h: np.tanh(h @ W + b)


def reversed_stack(Ws, bs, x):
    layers = [make_layer(W, b) for W, b in zip(Ws, bs)]
    h = x
    for layer in reversed(layers):
        h = layer(h)
    return np.sum(h ** 2)


def test_closures_returned_by_a_helper_applied_in_reverse():
    Ws = [randn(3, 3) * 0.5 for _ in range(3)]
    bs = [randn(3) * 0.1 for _ in range(3)]
    assert_gradient(reversed_stack, Ws, bs, randn(2, 3))


# -- 5. A config merged with {**d, "k": v} and forwarded as **options to a **kwargs function ------

def penalised(x, **options):
    total = np.sum(x ** 2) * options["scale"]
    for key, value in options.items():
        if key.startswith("l_"):
            total = total + value * np.sum(np.abs(x))
    return total


def merged_config(x, scale, l1):
    base = {"scale": scale}
    options = {**base, "l_one": l1}
    return penalised(x, **options)


def test_merged_dict_forwarded_to_kwargs():
    assert_gradient(merged_config, np.array([0.3, -1.2, 2.0]), 0.7, 0.25)


def test_kwargs_items_loop_directly():
    assert_gradient(lambda x, s, l: penalised(x, scale=s, l_one=l), np.array([0.3, -1.2, 2.0]), 0.7, 0.25)
    d_l = adtrans.gradient(penalised, np.array([0.3, -1.2, 2.0]), scale=0.7, l_one=0.25, wrt="l_one")
    assert d_l == pytest.approx(3.5)


# -- 6. dict(m, k=v) building options, values() summed, in a branchy loop -----------------------

def weighted_terms(a, b, c):
    terms = {"a": a * a, "b": math.sin(b)}
    extended = dict(terms, c=c * a)
    total = 0.0
    for v in extended.values():
        if v > 0:
            total = total + v
        else:
            total = total - 0.5 * v
    return total + sum(extended.values()) * b


def test_dict_call_with_keywords_and_values():
    assert_gradient(weighted_terms, 0.8, 1.1, -0.6)


# -- 7. A closure read after a variable it reads was reassigned (rebound), in a loop -------------

def rebound_loop(k, x):
    def f(v):
        return k * v + math.sin(k)
    y = f(x)
    for _ in range(3):
        k = k * 0.9 + y * 0.01
        y = f(y)
    return y


def test_rebound_closure_in_a_loop():
    assert_gradient(rebound_loop, 1.3, 0.4)


# -- 8. super().method in a dataclass subclass, with a closure inside the method ----------------

@dataclass
class Base:
    w: np.ndarray

    def energy(self, x):
        return np.sum((x @ self.w) ** 2)


@dataclass
class Regularised(Base):
    lam: float = 0.1
    order: int = 2

    def energy(self, x):
        reg = lambda m: self.lam * np.sum(m ** self.order)
        return super().energy(x) + reg(self.w)


def regularised_loss(model, x):
    return model.energy(x)


def test_super_method_with_closure_over_self():
    assert_gradient(regularised_loss, Regularised(randn(3, 2), 0.3), randn(4, 3))


# -- 9. NamedTuple state updated with _replace in a loop with a break -----------------------------

class State(NamedTuple):
    position: float
    velocity: float


def simulate(state, force, dt):
    for i in range(20):
        accel = force - 0.3 * state.velocity
        state = state._replace(velocity=state.velocity + dt * accel)
        state = state._replace(position=state.position + dt * state.velocity)
        if state.position > 5.0:
            break
    return state.position * state.velocity


def test_namedtuple_replace_in_a_loop():
    assert_gradient(simulate, State(0.1, 0.2), 1.5, 0.1)
    assert_gradient(simulate, State(4.5, 2.0), 1.5, 0.1)     # breaks


# -- 10. dataclasses.replace in an inner optimisation loop; an int field drives range() ---------

@dataclass
class Params:
    a: float
    b: float
    iters: int = 5
    lr: float = field(default=0.1, metadata={"no_derivative": True})


def inner_objective(p, target):
    return (p.a * p.b - target) ** 2


def unrolled(p, target):
    for _ in range(p.iters):
        grad_a = 2.0 * (p.a * p.b - target) * p.b
        p = dataclasses.replace(p, a=p.a - p.lr * grad_a)
    return inner_objective(p, target)


def test_dataclasses_replace_in_an_unrolled_loop():
    assert_gradient(unrolled, Params(0.5, 1.5), 2.0)


# -- 11. Repeated indices: last write wins, in float64 and float32 -------------------------------

def scatter_last(x, v):
    y = np.zeros(5)
    idx = np.array([1, 3, 1, 0])
    y[idx] = v
    return np.sum(y * x) + np.sum(y ** 2)


def test_repeated_index_assignment():
    x, v = randn(5), randn(4)
    assert_gradient(scatter_last, x, v)
    d_v = adtrans.gradient(scatter_last, x, v, wrt=1)
    # v[0] is overwritten by v[2] at index 1
    y = np.zeros(5)
    y[[1, 3, 1, 0]] = v
    expected = np.array([0.0, x[3] + 2 * y[3], x[1] + 2 * y[1], x[0] + 2 * y[0]])
    np.testing.assert_allclose(d_v, expected)


def scatter_last_float32(x, v):
    y = np.zeros(5, dtype=x.dtype)
    idx = [2, 2, 4]
    y[idx] = v * x[:3]
    return np.sum(np.tanh(y) * x)


def test_repeated_index_assignment_float32():
    x, v = randn(5).astype(np.float32), randn(3).astype(np.float32)
    d_x, d_v = adtrans.gradient(scatter_last_float32, x, v)
    assert d_x.dtype == np.float32 and d_v.dtype == np.float32
    f64 = lambda x, v: scatter_last_float32(x.astype(np.float64), v.astype(np.float64))
    num_x = finite_differences(f64, (x.astype(np.float64), v.astype(np.float64)), {}, 0)
    num_v = finite_differences(f64, (x.astype(np.float64), v.astype(np.float64)), {}, 1)
    np.testing.assert_allclose(d_x, num_x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d_v, num_v, rtol=1e-4, atol=1e-5)


# -- 12. nn layers with a closure activation reading a differentiated temperature ----------------

def tempered_mlp(model, temperature, x, labels):
    act = lambda h: nn.tanh(h / temperature)
    h = x
    for layer in model.layers[:-1]:
        h = act(layer(h))
    return nn.softmax_cross_entropy(model.layers[-1](h), labels)


def test_nn_layers_with_closure_activation_float64():
    model = nn.Sequential([nn.Dense(4, 5, rng=1, dtype=np.float64), nn.Dense(5, 5, rng=2, dtype=np.float64),
                           nn.Dense(5, 3, rng=3, dtype=np.float64)])
    x = randn(6, 4)
    labels = np.array([0, 1, 2, 0, 1, 2])
    assert_gradient(tempered_mlp, model, 1.7, x, labels, wrt=(0, 1))


def test_nn_layers_with_closure_activation_float32():
    model = nn.Sequential([nn.Dense(4, 5, rng=1), nn.Dense(5, 3, rng=3)])
    x = randn(6, 4).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    value, (d_model, d_t) = adtrans.value_with_gradient(tempered_mlp, model, np.float32(1.7), x, labels, wrt=(0, 1))
    assert d_model.layers[0].weight.dtype == np.float32
    f64 = lambda t: tempered_mlp(model, t, x, labels)
    eps = 1e-2
    numeric = (f64(np.float32(1.7 + eps)) - f64(np.float32(1.7 - eps))) / (2 * eps)
    assert float(d_t) == pytest.approx(float(numeric), rel=2e-2, abs=1e-4)


# -- 13. A recomputed block calling a closure inside a loop ---------------------------------------

def recomputed_closure(w, x):
    g = lambda v: np.sin(v * w) + v
    h = x
    for _ in range(3):
        with adtrans.recomputed():
            a = g(h)
            h = np.tanh(a) * w
    return np.sum(h ** 2)


def test_recomputed_block_calling_a_closure():
    assert_gradient(recomputed_closure, 0.8, randn(4))


# -- 14. gradient_of / value_with_gradient_of over map with two iterables and reversed ----------

def pairwise(xs, ys, w):
    prods = list(map(lambda a, b: a * b * w, xs, reversed(ys)))
    return sum(p * p for p in prods) + max(prods)


def test_gradient_of_with_map_and_reversed():
    xs, ys, w = [0.5, 1.5, -0.3], [2.0, -1.0, 0.7], 1.3
    g = adtrans.gradient_of(pairwise)
    got = g(xs, ys, w)
    vg = adtrans.value_with_gradient_of(pairwise)
    value, got2 = vg(xs, ys, w)
    assert value == pairwise(xs, ys, w)
    for i in range(3):
        num = finite_differences(pairwise, (xs, ys, w), {}, i)
        np.testing.assert_allclose(np.ravel(got[i]), num, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.ravel(got2[i]), num, rtol=1e-6, atol=1e-8)


# -- 15. A nested def with branches and an early return of its own ------------------------------

def piecewise_model(a, b, xs):
    def response(x):
        if x < 0:
            return a * x
        z = x * b
        if z > 2.0:
            return 2.0 + math.log(z - 1.0)
        return z
    return sum(map(response, xs))


def test_nested_def_with_early_returns():
    assert_gradient(piecewise_model, 0.7, 1.8, [-1.0, 0.5, 3.0, 1.0])


# -- 16. f(*xs) with xs grown in a loop, and a closure called with spread arguments -------------

def spread_closure(w, x):
    def poly(*coeffs):
        total = 0.0
        for c in reversed(coeffs):
            total = total * x + c
        return total * w
    coefficients = []
    for i in range(4):
        coefficients.append(w ** i)
    return poly(*coefficients)


def test_spread_call_of_a_closure_with_varargs():
    assert_gradient(spread_closure, 0.9, 1.2)


# -- 17. **kwargs function with a closure reading a collected keyword; wrt by name --------------

def smoothed(x, **hyper):
    smooth = lambda v: np.log1p(np.exp(v * hyper["beta"])) / hyper["beta"]
    return np.sum(smooth(x) * hyper.get("gain", 1.0))


def test_kwargs_read_by_a_closure_named_in_wrt():
    x = randn(5)
    d_beta, d_gain = adtrans.gradient(smoothed, x, beta=1.5, gain=0.7, wrt=("beta", "gain"))
    f_beta = lambda b: smoothed(x, beta=b, gain=0.7)
    f_gain = lambda g: smoothed(x, beta=1.5, gain=g)
    assert d_beta == pytest.approx((f_beta(1.5 + 1e-6) - f_beta(1.5 - 1e-6)) / 2e-6, rel=1e-5)
    assert d_gain == pytest.approx((f_gain(0.7 + 1e-6) - f_gain(0.7 - 1e-6)) / 2e-6, rel=1e-5)
    assert_gradient(lambda x, b: smoothed(x, beta=b), x, 1.5)


# -- 18. A helper called by name reading an int field; bound method passed to a helper ----------

@dataclass
class Poly:
    coeffs: np.ndarray
    degree: int = 3

    def evaluate(self, x):
        return sum(self.coeffs[i] * x ** i for i in range(self.degree + 1))


def integrate(f, lo, hi, n):
    h = (hi - lo) / n
    total = 0.5 * (f(lo) + f(hi))
    for i in range(1, n):
        total = total + f(lo + i * h)
    return total * h


def area(poly, hi):
    return integrate(poly.evaluate, 0.0, hi, poly.degree * 4)


def test_bound_method_passed_to_a_helper_with_int_field():
    assert_gradient(area, Poly(np.array([0.5, -1.0, 0.3, 0.2])), 1.7)


# -- 19. Closures stored in a dict built in a loop, looked up by key, through value_with_gradient

def controller(gains, error):
    laws = {}
    for name, k in gains.items():
        laws[name] = lambda e, k=k: k * e
    u = laws["p"](error) + laws["d"](error * 0.1)
    if u > 1.0:
        u = 1.0 + 0.1 * (u - 1.0)
    return u * u


def test_closures_in_a_dict_from_a_loop_over_items():
    gains = {"p": 2.0, "d": 0.5}
    assert_gradient(controller, gains, 0.3)
    assert_gradient(controller, gains, 0.2)
    value, (d_gains, d_err) = adtrans.value_with_gradient(controller, gains, 0.3)
    assert isinstance(d_gains, dict) and set(d_gains) == {"p", "d"}


# -- 20. A checkpointed function taking a closure and a **kwargs ---------------------------------

def apply_n(f, x, **options):
    for _ in range(options.get("n", 2)):
        x = f(x) * options["gain"]
    return x


checkpointed_apply_n = adtrans.checkpointed(apply_n)


def checkpoint_with_closure(w, x, gain):
    f = lambda v: np.tanh(v * w)
    return np.sum(checkpointed_apply_n(f, x, n=3, gain=gain) ** 2)


def test_checkpointed_call_with_closure_and_kwargs():
    assert_gradient(checkpoint_with_closure, 1.2, randn(3), 0.9)


# -- 21. Early return from inside a loop over a closure-mapped list, float32 -------------------

def first_above(w, xs):
    scores = list(map(lambda v: np.tanh(v * w), xs))
    for s in scores:
        if np.sum(s) > 0.5:
            return np.sum(s * s)
    return np.sum(scores[-1])


def test_early_return_over_mapped_float32_arrays():
    xs = [np.array([0.1, -0.2], dtype=np.float32), np.array([0.8, 0.9], dtype=np.float32)]
    w = np.float32(1.3)
    d_w, d_xs = adtrans.gradient(first_above, w, xs)
    assert d_xs[0].dtype == np.float32
    # closed form: the second list item is chosen
    s = np.tanh(xs[1].astype(np.float64) * 1.3)
    ds = 2 * s * (1 - s ** 2)
    assert float(d_w) == pytest.approx(float(np.sum(ds * xs[1])), rel=1e-4)
    np.testing.assert_allclose(d_xs[1], ds * 1.3, rtol=1e-4)
    np.testing.assert_allclose(d_xs[0], 0.0)


# -- 22. keys() loop over a parameter dict, with _replace on a NamedTuple of arrays -----------

class Layer(NamedTuple):
    W: np.ndarray
    b: np.ndarray


def sgd_then_loss(layer, x, lr):
    def loss(l):
        return np.sum(np.tanh(x @ l.W + l.b) ** 2)
    g = {"W": 2.0 * layer.W, "b": 2.0 * layer.b}
    for key in sorted(g.keys()):
        if key == "W":
            layer = layer._replace(W=layer.W - lr * g[key])
        else:
            layer = layer._replace(b=layer.b - lr * g[key])
    return loss(layer)


def test_keys_loop_with_namedtuple_replace_and_closure():
    assert_gradient(sgd_then_loss, Layer(randn(3, 2), randn(2)), randn(4, 3), 0.1)


def scaled_by_option(x, **options):
    return x * options["gain"]


checkpointed_scaled_by_option = adtrans.checkpointed(scaled_by_option)


def test_minimal_checkpointed_function_with_kwargs_parameter():
    # Fails: internal AttributeError "'dict' object has no attribute '_fields'" while transforming.
    def f(x, g):
        return checkpointed_scaled_by_option(x, gain=g)

    assert adtrans.gradient(f, 1.5, 2.0) == (2.0, 1.5)


def test_minimal_closure_with_varargs_parameter_loses_captured_derivative():
    # Fails silently: d_w is 0.0 (any *args or **kwargs parameter in the closure, even unused).
    def f(w):
        def g(v, *rest):
            return v * w
        return g(1.0)

    assert adtrans.gradient(f, 0.9) == 1.0


def test_minimal_closure_with_kwargs_parameter_loses_captured_derivative():
    def f(w):
        def g(**options):
            return options["a"] * w
        return g(a=2.0)

    assert adtrans.gradient(f, 0.9) == 2.0


def test_minimal_closure_stored_by_item_assignment():
    # Fails: TypeError "adtrans cannot give a cotangent to a value of type function" from
    # assigned_cotangent in the generated pullback (no user line). A dict display works.
    def f(k, e):
        laws = {}
        laws["p"] = lambda v: k * v
        return laws["p"](e)

    assert adtrans.gradient(f, 2.0, 0.3) == (0.3, 2.0)


def test_minimal_closure_stored_by_list_item_assignment():
    def f(k, e):
        laws = [None]
        laws[0] = lambda v: k * v
        return laws[0](e)

    assert adtrans.gradient(f, 2.0, 0.3) == (0.3, 2.0)


# -- 23. A closure given as a default of another closure (g=inner) --------------------------------

def composed_default(w, x):
    def inner(v):
        return v * w

    def outer(v, g=inner):
        return g(v) + w
    return outer(x)


def test_closure_bound_as_a_default_of_another_closure():
    assert_gradient(composed_default, 0.7, 1.1)


def test_minimal_closure_bound_as_a_default():
    # Fails silently: d_w is 0.0, the derivative through the default closure is dropped.
    def f(w, x):
        inner = lambda v: v * w
        outer = lambda v, g=inner: g(v)
        return outer(x)

    assert adtrans.gradient(f, 0.7, 1.1) == (1.1, 0.7)


# -- 24. A closure passed to a helper before and after a variable it reads is rebound ------------

def apply_to(f, x):
    return f(x)


def passed_before_and_after_rebinding(k, x):
    g = lambda v: k * math.sin(v)
    a = apply_to(g, x)
    k = k * k
    return a + apply_to(g, x) * k


def test_closure_passed_before_and_after_rebinding():
    assert_gradient(passed_before_and_after_rebinding, 1.3, 0.7)


# -- 25. super() forwarding **kwargs; a helper called by name reading int/no_derivative fields ----

@dataclass
class Gain:
    w: float
    steps: int = 2
    clip: float = field(default=5.0, metadata={"no_derivative": True})

    def apply(self, x, **options):
        return self.w * x * options.get("scale", 1.0)


@dataclass
class ClippedGain(Gain):
    def apply(self, x, **options):
        return min(super().apply(x, **options), self.clip) + self.w ** 2


def repeat_apply(model, x, scale):
    n = int(model.steps * 1.5)
    for _ in range(n):
        x = model.apply(x, scale=scale)
    return x


def test_super_forwarding_kwargs_in_a_helper_loop():
    assert_gradient(repeat_apply, ClippedGain(0.7), 1.1, 0.9)
    assert_gradient(repeat_apply, ClippedGain(1.9), 1.1, 1.3)    # clipped


# -- 26. A checkpointed function receiving closures made with defaults in a comprehension --------

checkpointed_squash = adtrans.checkpointed(lambda h, f: np.tanh(f(h)))


def checkpointed_default_closures(ws, x):
    fs = [lambda v, s=s: v * s for s in ws]
    for f in fs:
        x = checkpointed_squash(x, f)
    return np.sum(x)


def test_checkpointed_calls_of_default_closures():
    assert_gradient(checkpointed_default_closures, [0.5, 1.5, -0.8], np.array([0.3, -0.2]))
