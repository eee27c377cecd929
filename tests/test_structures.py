"""Structured values (SPEC section 2): dataclasses, NamedTuples, dicts and lists in the reverse transform.

Gradients are checked against central finite differences taken field by
field (`numeric_gradient` below walks dataclasses, which
``adtrans.check_gradient`` does not).  Straight-line code only: loops and
branches are covered with the control-flow tests.
"""

import dataclasses
import math
import pickle
import sys
import warnings
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np
import pytest

import adtrans
from adtrans import tangents
from adtrans.structures import method_call_with_pullback, tangent_fields, tangent_type

# --- finite differences through structures --------------------------------------------


def _leaf_paths(value, path=()):
    """(path, leaf) for every float or float array inside `value`; a path step is ('.', name) or ('[]', key)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, float):
        return [(path, value)]
    if isinstance(value, (np.ndarray, np.generic)):
        return [(path, value)] if value.dtype.kind == "f" else []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [p for f in dataclasses.fields(value) for p in _leaf_paths(getattr(value, f.name), path + ((".", f.name),))]
    if isinstance(value, (tuple, list)):
        return [p for i, v in enumerate(value) for p in _leaf_paths(v, path + (("[]", i),))]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, path + (("[]", k),))]
    return []


def _get(value, path):
    for kind, key in path:
        value = getattr(value, key) if kind == "." else value[key]
    return value


def _set(value, path, leaf):
    if not path:
        return leaf
    (kind, key), rest = path[0], path[1:]
    if kind == ".":
        new = _set(getattr(value, key), rest, leaf)
        out = dataclasses.replace(value, **{key: new}) if value.__dataclass_fields__[key].init else None
        return out
    if isinstance(value, dict):
        out = dict(value)
        out[key] = _set(value[key], rest, leaf)
        return out
    parts = list(value)
    parts[key] = _set(value[key], rest, leaf)
    if hasattr(value, "_fields"):
        return type(value)(*parts)
    return type(value)(parts)


def numeric_gradient(f, args, index, eps=1e-6):
    """Central differences of scalar `f` w.r.t. every float inside ``args[index]``: {path: gradient}."""
    out = {}
    for path, leaf in _leaf_paths(args[index]):
        if isinstance(leaf, float):
            def at(t):
                trial = list(args)
                trial[index] = _set(args[index], path, leaf + t)
                return f(*trial)
            out[path] = (at(eps) - at(-eps)) / (2 * eps)
            continue
        grad = np.zeros(np.shape(leaf))
        for j in range(grad.size):
            def at(t):
                moved = np.array(leaf, dtype=np.float64)
                moved.flat[j] += t
                trial = list(args)
                trial[index] = _set(args[index], path, moved)
                return f(*trial)
            grad.flat[j] = (at(eps) - at(-eps)) / (2 * eps)
        out[path] = grad
    return out


def assert_gradient_matches(f, *args, wrt=None, rtol=1e-6, atol=1e-8):
    """adtrans's gradient of `f` (w.r.t. positions `wrt`, default all) agrees with central differences."""
    positions = list(range(len(args))) if wrt is None else list(wrt)
    grads = adtrans.gradient(f, *args, wrt=tuple(positions))
    for index, grad in zip(positions, grads):
        for path, expected in numeric_gradient(f, args, index).items():
            actual = _get(grad, path)
            assert np.shape(actual) == np.shape(expected), (index, path)
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=f"argument {index} {path}")
    return grads


# --- the classes the tests differentiate ------------------------------------------


@dataclass
class Vector:
    x: float
    y: float

    @property
    @adtrans.differentiable
    def magnitude(self):
        return math.sqrt(self.x * self.x + self.y * self.y)

    @property
    def sum(self):
        return self.x + self.y

    def inner(self, other):
        return self.x * other.x + self.y * other.y

    def scaled(self, s):
        return Vector(self.x * s, self.y * s)


@dataclass
class DenseLayer:
    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, input):
        return input @ self.weight + self.bias

    def applied(self, input):
        return input @ self.weight + self.bias

    def applied_for_backpropagation(self, input):
        return adtrans.value_with_pullback(lambda layer, x: layer(x), self, input)


@dataclass
class Config:
    steps: int
    name: str


@dataclass
class Scaled:
    w: np.ndarray
    gain: float = field(default=3.0, metadata={"no_derivative": True})
    count: int = 2
    label: str = "scaled"
    activation: Callable = np.tanh
    extra: Optional[np.ndarray] = None


@dataclass
class Inner:
    a: float
    b: np.ndarray


@dataclass
class Outer:
    inner: Inner
    c: float


class Point(NamedTuple):
    x: float
    y: float


@dataclass
class Stack:
    first: DenseLayer
    second: DenseLayer

    def forward(self, x):
        return np.tanh(self.second(np.tanh(self.first(x))))


# --- the spec's examples ----------------------------------------------------------


def test_vector_magnitude_through_a_property():
    g = adtrans.gradient(lambda v: v.magnitude, Vector(1.0, 1.0))
    assert isinstance(g, Vector)
    assert g.x == pytest.approx(0.7071067811865476) and g.y == pytest.approx(0.7071067811865476)


def test_vector_magnitude_getter_directly():
    g = adtrans.gradient(Vector.magnitude.fget, Vector(1.0, 1.0))
    assert isinstance(g, Vector)
    assert (g.x, g.y) == pytest.approx((math.sqrt(0.5), math.sqrt(0.5)))


def test_vector_magnitude_against_finite_differences():
    assert_gradient_matches(lambda v: v.magnitude * v.x, Vector(0.3, -1.7))


def test_plain_property_is_differentiated_too():
    g = adtrans.gradient(lambda v: v.sum * v.x, Vector(2.0, 5.0))
    assert (g.x, g.y) == pytest.approx((2 * 2.0 + 5.0, 2.0))


def test_dense_layer_through_a_method():
    layer = DenseLayer(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([1.0, 1.0]))
    value, pullback = adtrans.value_with_pullback(lambda layer, x: layer.applied(x), layer, np.array([[3.0, 3.0]]))
    d_layer, d_input = pullback(np.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(value, [[7.0, 7.0]])
    np.testing.assert_array_equal(d_layer.weight, [[3.0, 3.0], [3.0, 3.0]])
    np.testing.assert_array_equal(d_layer.bias, [1.0, 1.0])
    np.testing.assert_array_equal(d_input, [[2.0, 2.0]])


@pytest.mark.filterwarnings("ignore::adtrans.ZeroDerivativeWarning")
def test_dense_layer_applied_for_backpropagation():
    layer = DenseLayer(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([1.0, 1.0]))
    output, backprop = layer.applied_for_backpropagation(np.array([[3.0, 3.0]]))
    d_layer, d_input = backprop(np.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(output, [[7.0, 7.0]])
    assert isinstance(d_layer, DenseLayer)
    np.testing.assert_array_equal(d_layer.weight, [[3.0, 3.0], [3.0, 3.0]])
    np.testing.assert_array_equal(d_layer.bias, [1.0, 1.0])
    np.testing.assert_array_equal(d_input, [[2.0, 2.0]])


def test_dense_layer_example_runs(capsys):
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "dense_layer.py"
    spec = importlib.util.spec_from_file_location("dense_layer_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.main()
    out = capsys.readouterr().out
    assert "d_weight: [[3.0, 3.0], [3.0, 3.0]]" in out
    assert "d_bias: [1.0, 1.0]" in out
    assert "d_input: [[2.0, 2.0]]" in out


# --- dataclass arguments ------------------------------------------------------------


def test_gradient_wrt_a_dataclass_of_arrays_matches_finite_differences():
    rng = np.random.default_rng(0)
    layer = DenseLayer(rng.standard_normal((3, 2)), rng.standard_normal(2))
    x = rng.standard_normal((4, 3))
    grads = assert_gradient_matches(lambda layer, x: np.sum(np.tanh(layer.applied(x)) ** 2), layer, x)
    assert isinstance(grads[0], DenseLayer) and grads[0].weight.shape == (3, 2)


def test_fields_read_directly():
    def f(layer, x):
        return np.sum(x @ layer.weight * layer.bias) + np.sum(layer.bias)
    rng = np.random.default_rng(1)
    assert_gradient_matches(f, DenseLayer(rng.standard_normal((2, 3)), rng.standard_normal(3)),
                            rng.standard_normal((2, 2)))


def test_default_wrt_includes_dataclasses_with_differentiable_fields_only():
    def f(v, config, s):
        return v.x * s * config.steps
    grads = adtrans.gradient(f, Vector(2.0, 3.0), Config(4, "c"), 5.0)
    assert len(grads) == 2
    g_v, g_s = grads
    assert (g_v.x, g_v.y) == pytest.approx((20.0, 0.0))
    assert g_s == pytest.approx(8.0)


def test_unused_dataclass_argument_gets_a_full_zero_tangent():
    layer = DenseLayer(np.ones((2, 2), dtype=np.float32), np.ones(2, dtype=np.float32))
    with pytest.warns(adtrans.ZeroDerivativeWarning):
        g = adtrans.gradient(lambda layer, x: x * 2.0, layer, 3.0, wrt=0)
    assert g.weight.dtype == np.float32 and not g.weight.any()
    assert g.bias.shape == (2,) and not g.bias.any()


def test_only_some_fields_read_gives_zeros_elsewhere():
    g = adtrans.gradient(lambda layer: np.sum(layer.bias * 2.0), DenseLayer(np.ones((2, 2)), np.ones(2)))
    np.testing.assert_array_equal(g.weight, np.zeros((2, 2)))
    np.testing.assert_array_equal(g.bias, [2.0, 2.0])


def test_float32_fields_keep_their_dtype():
    layer = DenseLayer(np.ones((2, 2), dtype=np.float32), np.ones(2, dtype=np.float32))
    g = adtrans.gradient(lambda layer, x: np.sum(layer.applied(x)), layer, np.ones((1, 2), dtype=np.float32), wrt=0)
    assert g.weight.dtype == np.float32 and g.bias.dtype == np.float32


# --- which fields are in the tangent -----------------------------------------------


def test_no_derivative_int_str_and_callable_fields_are_excluded():
    assert tangent_fields(Scaled) == ("w", "extra")
    kind = tangent_type(Scaled)
    assert kind.__qualname__.endswith("Scaled.TangentVector")
    assert [f.name for f in dataclasses.fields(kind)] == ["w", "extra"]


def test_gradient_of_a_dataclass_with_excluded_fields():
    s = Scaled(np.array([0.5, -1.0]))

    def f(s):
        return np.sum(s.activation(s.w) * s.gain) * s.count
    g = adtrans.gradient(f, s)
    assert isinstance(g, tangent_type(Scaled)) and not isinstance(g, Scaled)
    np.testing.assert_allclose(g.w, (1 - np.tanh(s.w) ** 2) * 3.0 * 2)
    assert g.extra is None      # holds None: no derivative
    assert not hasattr(g, "gain") and not hasattr(g, "label")


def test_no_derivative_field_used_in_arithmetic_gets_no_derivative():
    g = adtrans.gradient(lambda s: np.sum(s.w) * s.gain * s.gain, Scaled(np.ones(3)))
    np.testing.assert_array_equal(g.w, [9.0, 9.0, 9.0])


def test_string_annotations_are_read():
    @dataclass
    class Annotated:
        w: "np.ndarray"
        n: "int"
        f: "Callable[[float], float]"

    assert tangent_fields(Annotated) == ("w",)


def test_a_field_holding_an_integer_array_has_no_tangent():
    @dataclass
    class Indexed:
        w: np.ndarray
        index: np.ndarray

    g = adtrans.gradient(lambda m: np.sum(m.w[m.index]), Indexed(np.array([1.0, 2.0, 3.0]), np.array([0, 2, 2])))
    np.testing.assert_array_equal(g.w, [1.0, 0.0, 2.0])
    assert g.index is None


def test_all_differentiable_class_is_its_own_tangent_type():
    kind = tangent_type(Vector)
    assert issubclass(kind, Vector) and kind is tangent_type(Vector)
    assert tangent_type(kind) is kind
    assert tangent_type(Point) is Point


# --- TangentVector arithmetic ---------------------------------------------------------


def test_tangent_vector_arithmetic():
    kind = tangent_type(Scaled)
    a = kind(w=np.array([1.0, 2.0]), extra=None)
    b = kind(w=np.array([0.5, 0.5]), extra=None)
    np.testing.assert_array_equal((a + b).w, [1.5, 2.5])
    np.testing.assert_array_equal((a - b).w, [0.5, 1.5])
    np.testing.assert_array_equal((2.0 * a).w, [2.0, 4.0])
    np.testing.assert_array_equal((a * 2).w, [2.0, 4.0])
    np.testing.assert_array_equal((a / 2).w, [0.5, 1.0])
    np.testing.assert_array_equal((-a).w, [-1.0, -2.0])
    np.testing.assert_array_equal(sum([a, b, b]).w, [2.0, 3.0])
    assert (a + b).extra is None
    assert isinstance(a + b, kind)


def test_own_class_tangent_arithmetic_and_equality():
    g = adtrans.gradient(lambda v: v.x * 2.0 + v.y, Vector(1.0, 1.0))
    assert g == Vector(2.0, 1.0) and Vector(2.0, 1.0) == g
    assert g + g == Vector(4.0, 2.0)
    assert 0.5 * g == Vector(1.0, 0.5)
    assert g - g == Vector(0.0, 0.0)
    assert isinstance(g + g, Vector)
    assert "TangentVector" in repr(g)


def test_zeros():
    layer = DenseLayer(np.ones((2, 3), dtype=np.float32), np.ones(3, dtype=np.float32))
    zero = tangent_type(DenseLayer).zeros(layer)
    assert zero.weight.shape == (2, 3) and zero.weight.dtype == np.float32 and not zero.weight.any()
    again = tangents.zeros_like(layer)
    assert type(again) is type(zero) and np.array_equal(again.bias, zero.bias)
    with pytest.raises(TypeError):
        tangent_type(DenseLayer).zeros(Vector(1.0, 2.0))


def test_tangents_pickle_and_copy():
    import copy

    g = adtrans.gradient(lambda v: v.x * v.y, Vector(2.0, 3.0))
    for again in (pickle.loads(pickle.dumps(g)), copy.deepcopy(g), copy.copy(g)):
        assert type(again) is type(g) and again == g
    t = tangent_type(Scaled)(w=np.ones(2), extra=None)
    assert np.array_equal(pickle.loads(pickle.dumps(t)).w, t.w)


def test_tangent_helpers_add_and_scale_with_none_as_zero():
    a = tangent_type(Outer)(inner=None, c=1.0)
    b = tangent_type(Outer)(inner=tangent_type(Inner)(a=2.0, b=np.ones(2)), c=None)
    total = tangents.add(a, b)
    assert total.c == 1.0 and total.inner.a == 2.0
    assert tangents.scale(total, 3.0).inner.a == 6.0
    assert tangents.add(None, a) is a and tangents.add(a, 0.0) is a


# --- move ---------------------------------------------------------------------


def test_move_a_dataclass():
    layer = DenseLayer(np.ones((2, 2), dtype=np.float32), np.zeros(2, dtype=np.float32))
    g = tangent_type(DenseLayer)(weight=np.full((2, 2), 2.0), bias=np.ones(2, dtype=np.float32))
    moved = adtrans.move(layer, g, scale=-0.5)
    assert type(moved) is DenseLayer and moved is not layer
    np.testing.assert_array_equal(moved.weight, np.zeros((2, 2)))
    np.testing.assert_array_equal(moved.bias, [-0.5, -0.5])
    assert moved.weight.dtype == np.float32     # a float64 tangent does not widen a float32 model
    np.testing.assert_array_equal(layer.weight, np.ones((2, 2)))   # the original is unchanged


def test_move_keeps_fields_without_derivative():
    s = Scaled(np.array([1.0, 2.0]), gain=5.0, count=3, label="x")
    moved = adtrans.move(s, adtrans.gradient(lambda s: np.sum(s.w), s))
    np.testing.assert_array_equal(moved.w, [2.0, 3.0])
    assert (moved.gain, moved.count, moved.label, moved.activation, moved.extra) == (5.0, 3, "x", np.tanh, None)


def test_move_nested_frozen_and_containers():
    @dataclass(frozen=True)
    class Frozen:
        a: float
        parts: tuple
        table: dict

    model = Outer(Inner(1.0, np.array([1.0, 1.0])), 2.0)
    moved = adtrans.move(model, adtrans.gradient(lambda m: m.inner.a * m.c + np.sum(m.inner.b), model), scale=0.5)
    assert moved.inner.a == pytest.approx(2.0) and moved.c == pytest.approx(2.5)
    np.testing.assert_array_equal(moved.inner.b, [1.5, 1.5])

    frozen = Frozen(1.0, (2.0, 3), {"k": np.ones(1)})
    g = tangent_type(Frozen)(a=1.0, parts=(1.0, None), table={"k": np.ones(1)})
    moved = adtrans.move(frozen, g, scale=2.0)
    assert moved.a == 3.0 and moved.parts == (4.0, 3) and moved.table["k"][0] == 3.0

    assert adtrans.move(Point(1.0, 2.0), Point(1.0, 1.0)) == Point(2.0, 3.0)
    assert adtrans.move(1.0, 2.0, scale=0.5) == 2.0


def test_gradient_descent_with_move_reduces_the_loss():
    rng = np.random.default_rng(2)
    layer = DenseLayer(rng.standard_normal((3, 1)), np.zeros(1))
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))

    def loss(layer):
        error = layer.applied(x) - y
        return np.mean(error * error)
    first = loss(layer)
    for _ in range(20):
        layer = adtrans.move(layer, adtrans.gradient(loss, layer), scale=-0.1)
    assert loss(layer) < first / 2


# --- methods and properties w.r.t. self ----------------------------------------------


def test_method_wrt_self_and_argument():
    def f(v, w):
        return v.inner(w) * v.x
    assert_gradient_matches(f, Vector(1.5, -2.0), Vector(0.25, 3.0))


def test_method_returning_a_dataclass():
    def f(v, s):
        w = v.scaled(s)
        return w.x * v.y + w.y
    assert_gradient_matches(f, Vector(1.5, -2.0), 0.7)


def test_generated_source_of_a_dataclass_method_is_wrt_self():
    text = adtrans.generated_source(Vector.magnitude.fget)
    assert "d_self" in text and "attribute_cotangent" in text


# --- dataclasses and NamedTuples built inside differentiated code -----------------------


def test_constructed_dataclass_read_back():
    def f(a, b):
        v = Vector(a * 2.0, b)
        return v.x * v.y
    assert adtrans.gradient(f, 1.5, 4.0) == pytest.approx((8.0, 3.0))


def test_constructed_dataclass_with_one_field_read_gives_zero_to_the_other():
    def f(a, b):
        v = Vector(a * 2.0, b * 3.0)
        return v.y
    assert adtrans.gradient(f, 1.5, 4.0) == (0.0, 3.0)


def test_constructed_dataclass_keyword_arguments_and_method():
    def f(a, b):
        v = Vector(y=b, x=a)
        return v.scaled(b).magnitude
    assert_gradient_matches(f, 0.6, -1.3)


def test_dataclass_returned_from_differentiated_code():
    def f(a, b):
        return Vector(a * b, a + b)
    value, pullback = adtrans.value_with_pullback(f, 2.0, 3.0)
    assert value == Vector(6.0, 5.0)
    assert pullback(Vector(1.0, 0.0)) == (3.0, 2.0)
    assert pullback(tangent_type(Vector)(1.0, 1.0)) == (4.0, 3.0)


def test_namedtuples():
    def f(p, s):
        q = Point(p.x * s, p[1] + s)
        return q.x * q.y
    grads = assert_gradient_matches(f, Point(1.5, 2.0), 0.5)
    assert type(grads[0]) is Point


def test_nested_dataclasses():
    def f(outer):
        return outer.inner.a * np.sum(outer.inner.b ** 2) * outer.c
    model = Outer(Inner(1.5, np.array([0.5, -1.0])), 2.0)
    grads = assert_gradient_matches(f, model, wrt=(0,))
    assert isinstance(grads[0].inner, Inner)


def test_nested_dataclass_built_in_code():
    def f(a, b, c):
        outer = Outer(Inner(a, b * 2.0), c)
        return outer.inner.a * np.sum(outer.inner.b) * outer.c
    assert_gradient_matches(f, 1.5, np.array([0.5, -1.0]), 2.0)


def test_layers_held_in_fields():
    rng = np.random.default_rng(3)
    model = Stack(DenseLayer(rng.standard_normal((3, 4)), rng.standard_normal(4)),
                  DenseLayer(rng.standard_normal((4, 2)), rng.standard_normal(2)))
    grads = assert_gradient_matches(lambda m, x: np.sum(m.forward(x) ** 2), model, rng.standard_normal((2, 3)))
    assert isinstance(grads[0].first, DenseLayer)


def test_method_call_with_pullback_through_a_layer_in_a_field():
    rng = np.random.default_rng(4)
    model = Stack(DenseLayer(rng.standard_normal((2, 2)), rng.standard_normal(2)), None)
    x = rng.standard_normal((1, 2))
    value, pullback = method_call_with_pullback(model, "first", (-1, 0), x)
    np.testing.assert_allclose(value, model.first(x))
    d_model, d_x = pullback(np.ones((1, 2)))
    np.testing.assert_allclose(tangents.like(d_model, model).first.weight, x.T @ np.ones((1, 2)))
    np.testing.assert_allclose(d_x, np.ones((1, 2)) @ model.first.weight.T)


def test_function_held_in_a_field():
    s = Scaled(np.array([0.3, -0.2]))
    g = adtrans.gradient(lambda s, x: np.sum(s.activation(s.w * x)), s, 2.0)
    np.testing.assert_allclose(g[0].w, 2.0 * (1 - np.tanh(s.w * 2.0) ** 2))


# --- dicts, lists and tuples --------------------------------------------------------------


def test_dict_and_list_arguments():
    def f(params, xs):
        return np.sum(params["w"] * xs[0]) + params["b"] * xs[1]
    grads = assert_gradient_matches(f, {"w": np.array([1.0, 2.0]), "b": 0.5}, [np.array([3.0, -1.0]), 2.0])
    assert type(grads[0]) is dict and type(grads[1]) is list


def test_containers_returned():
    def f(a, b):
        return {"sum": a + b, "pair": (a * b, [a])}
    value, pullback = adtrans.value_with_pullback(f, 2.0, 3.0)
    assert value == {"sum": 5.0, "pair": (6.0, [2.0])}
    assert pullback({"sum": 1.0, "pair": (1.0, [1.0])}) == (1.0 + 3.0 + 1.0, 1.0 + 2.0)


def test_dataclass_inside_a_list():
    def f(vs):
        return vs[0].x * vs[1].y
    grads = adtrans.gradient(f, [Vector(2.0, 0.0), Vector(0.0, 5.0)])
    assert grads[0] == Vector(5.0, 0.0) and grads[1] == Vector(0.0, 2.0)


# --- errors -----------------------------------------------------------------------------


class Plain:
    def __init__(self, w):
        self.w = w


def test_attribute_of_a_plain_object_is_an_error_located_at_the_user_code():
    def make(x):
        return Plain(x)

    @adtrans.derivative(of=make)
    def make_vjp(x):
        return Plain(x), lambda d: d

    def f(x):
        p = make(x)
        return p.w * 2.0
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(f, 1.0)
    error = info.value
    assert "attribute '.w'" in str(error) and "Plain" in str(error)
    assert error.filename.endswith("test_structures.py")
    assert error.lineno == f.__code__.co_firstlineno + 2
    assert error.col == 16


def test_attribute_set_outside_the_fields_is_an_error():
    @dataclass
    class Cached:
        w: float

        def __post_init__(self):
            self.square = self.w * self.w

    with pytest.raises(adtrans.DifferentiationError, match="not a field"):
        adtrans.gradient(lambda c: c.square, Cached(2.0))


def test_initvar_parameter_is_an_error():
    @dataclass
    class WithInitVar:
        w: float = 0.0
        scale: InitVar[float] = 1.0

        def __post_init__(self, scale):
            self.w = self.w * scale

    def f(a, b):
        return WithInitVar(a, b).w
    with pytest.raises(adtrans.DifferentiationError, match="InitVar"):
        adtrans.gradient(f, 1.0, 2.0)


def test_derivative_reaching_a_post_init_field_is_an_error():
    @dataclass
    class Derived:
        w: float
        square: float = field(init=False)

        def __post_init__(self):
            self.square = self.w * self.w

    def f(a):
        return Derived(a).square
    with pytest.raises(adtrans.DifferentiationError, match="__post_init__"):
        adtrans.gradient(f, 3.0)
    # Read as a field of an argument, it is an ordinary differentiable field.
    assert adtrans.gradient(lambda d: d.square * 2.0, Derived(3.0)).square == 2.0


def test_class_constant_read_from_an_active_dataclass_is_a_constant():
    @dataclass
    class WithConstant:
        w: float
        FACTOR = 4.0

    assert adtrans.gradient(lambda c: c.w * c.FACTOR, WithConstant(2.0)).w == 4.0


@pytest.mark.skipif(sys.version_info < (3, 10), reason="slots=True needs Python 3.10")
def test_slotted_frozen_dataclass():
    Slotted = dataclass(frozen=True, slots=True)(type("Slotted", (), {"__annotations__": {"a": float, "b": float}}))
    g = adtrans.gradient(lambda s: s.a * s.b, Slotted(2.0, 3.0))
    assert g == Slotted(3.0, 2.0)
    assert adtrans.move(Slotted(2.0, 3.0), g) == Slotted(5.0, 5.0)


def test_namedtuple_property_and_cached_property():
    import functools

    class Polar(NamedTuple):
        r: float
        theta: float

        @property
        def x(self):
            return self.r * math.cos(self.theta)

    g = adtrans.gradient(lambda p: p.x, Polar(2.0, 0.5))
    assert type(g) is Polar and g == pytest.approx((math.cos(0.5), -2.0 * math.sin(0.5)))

    @dataclass
    class Square:
        side: float

        @functools.cached_property
        def area(self):
            return self.side * self.side

    assert adtrans.gradient(lambda s: s.area * 3.0, Square(2.0)).side == pytest.approx(12.0)


@dataclasses.dataclass
class Clipped:
    w: float
    clip: float = dataclasses.field(default=0.5, metadata={"no_derivative": True})
    steps: int = 3


@dataclasses.dataclass
class Unclipped:
    w: float
    clip: float = 0.5
    steps: float = 3.0


def scaled_by_steps(m, x):
    return m.w * x * int(m.steps * 1.5) + m.clip * x


def through_a_helper(m, x):
    return scaled_by_steps(m, x) ** 2


def test_fields_without_derivative_are_constants_for_each_class():
    # int(m.steps * 1.5) is no error where the class says `steps` is an int; a class whose fields
    # all carry a derivative, passed to the same function, still gets them (one transform each).
    d_m, d_x = adtrans.gradient(scaled_by_steps, Clipped(2.0), 3.0)
    assert d_m.w == 3.0 * 4 and d_x == 2.0 * 4 + 0.5
    assert not hasattr(d_m, "clip") or d_m.clip is None
    with pytest.raises(adtrans.DifferentiationError, match="not differentiable"):
        adtrans.gradient(scaled_by_steps, Unclipped(2.0), 3.0)     # int() of a differentiable field
    # Through a helper called by name, the caller's knowledge of the class goes along.
    d_m, d_x = adtrans.gradient(through_a_helper, Clipped(2.0), 3.0)
    value = scaled_by_steps(Clipped(2.0), 3.0)
    assert d_m.w == pytest.approx(2 * value * 3.0 * 4) and d_x == pytest.approx(2 * value * (2.0 * 4 + 0.5))


def test_super_outside_a_method_is_a_located_error():
    def f(x):
        return super().scale(x)

    with pytest.raises(adtrans.DifferentiationError, match=r"'super\(\)' outside a method") as info:
        adtrans.gradient(f, 1.5)
    assert info.value.lineno == f.__code__.co_firstlineno + 1


class Weights:
    """Not a dict, but with an items() method."""

    def __init__(self, w):
        self.w = w

    def items(self):
        return [("w", self.w)]


@dataclasses.dataclass
class WeightsRecord:
    w: float

    def items(self):
        return [("w", self.w)]


def weighted_sum(weights, x):
    total = 0.0
    for _, w in weights.items():
        total = total + w * x
    return total


def test_items_of_something_else_than_a_dict():
    # Called as written when no derivative needs it; a derivative through it is refused, naming it.
    assert adtrans.gradient(weighted_sum, Weights(2.0), 3.0, wrt="x") == 2.0
    with pytest.raises(TypeError, match=r"differentiates '\.items\(\)' of a dict, not of a WeightsRecord"):
        adtrans.gradient(weighted_sum, WeightsRecord(2.0), 3.0)


@dataclasses.dataclass
class Spring:
    k: float
    rest: float

    def energy(self, x, scale=1.0):
        return 0.5 * self.k * (x - self.rest) ** 2 * scale

    def stored(self):
        return self.k * self.rest ** 2


def test_a_bound_method_differentiates_the_arguments_passed_not_its_object():
    # As jax.grad(obj.method) and Swift's gradient(at: x, of: obj.method): the object is fixed.
    s = Spring(3.0, 0.5)
    assert adtrans.gradient(s.energy, 2.0) == pytest.approx(3.0 * 1.5)
    assert adtrans.gradient(s.energy, 2.0, 4.0) == pytest.approx((3.0 * 1.5 * 4.0, 0.5 * 3.0 * 1.5 ** 2))
    assert adtrans.gradient(s.energy, 2.0, scale=4.0) == pytest.approx((3.0 * 1.5 * 4.0, 0.5 * 3.0 * 1.5 ** 2))
    assert adtrans.gradient_of(s.energy)(2.0) == pytest.approx(4.5)
    value, pullback = adtrans.value_with_pullback(s.energy, np.array([1.0, 2.0]))
    assert np.allclose(pullback(np.float64(2.0)), 2.0 * 3.0 * (np.array([1.0, 2.0]) - 0.5))
    adtrans.check_gradient(s.energy, 2.0)
    # Named, or the only differentiable value, the object gets its tangent.
    d_s, d_x = adtrans.gradient(s.energy, 2.0, wrt=("self", "x"))
    assert (d_s.k, d_s.rest, d_x) == pytest.approx((0.5 * 1.5 ** 2, -4.5, 4.5))
    assert adtrans.gradient(s.energy, 2.0, wrt=0) == pytest.approx(4.5)      # positions as the caller sees them
    assert adtrans.gradient(s.energy, 2.0, 4.0, wrt=-1) == pytest.approx(0.5 * 3.0 * 1.5 ** 2)
    assert adtrans.gradient(s.energy, 2.0, 4.0, wrt=(-2,)) == pytest.approx((4.5 * 4.0,))
    d_s = adtrans.gradient(s.stored)
    assert (d_s.k, d_s.rest) == pytest.approx((0.25, 3.0))
    assert adtrans.gradient(Spring.energy, s, 2.0)[1] == pytest.approx(4.5)   # unbound: self is an argument
