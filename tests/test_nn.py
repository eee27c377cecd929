"""adtrans.nn: primitives against naive loops, every layer's gradient against finite differences,
losses, optimizers' update maths, float32 preservation, with_derivative and recomputation."""

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import adtrans
from adtrans import nn


# -- a finite-difference check for functions of dataclasses (models), in float64

def _tangent_names(value):
    return [f.name for f in dataclasses.fields(adtrans.tangents.tangent_type(type(value)))]


def _flatten(value):
    """The float arrays of a value (a model, list, tuple or array), in a fixed order."""
    if isinstance(value, np.ndarray):
        return [value] if value.dtype.kind == "f" else []
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _flatten(v)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [leaf for name in _tangent_names(value) for leaf in _flatten(getattr(value, name))]
    return []


def _tangent_leaves(tangent, value):
    """`tangent`'s arrays in `_flatten(value)`'s order (zeros where the tangent has None)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            return []
        return [np.zeros_like(value) if tangent is None else tangent]
    if isinstance(value, (list, tuple)):
        return [leaf for i, v in enumerate(value)
                for leaf in _tangent_leaves(None if tangent is None else tangent[i], v)]
    if dataclasses.is_dataclass(value):
        return [leaf for name in _tangent_names(value)
                for leaf in _tangent_leaves(None if tangent is None else getattr(tangent, name),
                                            getattr(value, name))]
    return []


def _rebuild(value, leaves):
    if isinstance(value, np.ndarray):
        return leaves.pop(0) if value.dtype.kind == "f" else value
    if isinstance(value, (list, tuple)):
        return type(value)(_rebuild(v, leaves) for v in value)
    if dataclasses.is_dataclass(value):
        changes = {name: _rebuild(getattr(value, name), leaves) for name in _tangent_names(value)}
        return dataclasses.replace(value, **changes)
    return value


def check_layer_gradient(layer, x, rtol=1e-6, atol=1e-8, eps=1e-6, seed=0):
    """Compare `layer.applied_for_backpropagation`'s tangents with central differences (dot-product test)."""
    rng = np.random.default_rng(seed)
    y, backprop = layer.applied_for_backpropagation(x)
    v = rng.standard_normal(y.shape)
    d_layer, d_x = backprop(v)
    for tangent, primal in zip(_tangent_leaves(d_layer, layer), _flatten(layer)):
        assert tangent.shape == primal.shape and tangent.dtype == primal.dtype
    assert d_x.shape == x.shape and d_x.dtype == x.dtype
    params = _flatten(layer)
    directions = [rng.standard_normal(p.shape) for p in params]
    u_x = rng.standard_normal(x.shape)

    def phi(t):
        moved = _rebuild(layer, [p + t * u for p, u in zip(params, directions)])
        return float(np.sum(v * moved(x + t * u_x)))

    numeric = (phi(eps) - phi(-eps)) / (2 * eps)
    analytic = sum(float(np.sum(g * u)) for g, u in zip(_tangent_leaves(d_layer, layer), directions))
    analytic += float(np.sum(d_x * u_x))
    assert numeric == pytest.approx(analytic, rel=max(rtol, 1e-5), abs=max(atol, 1e-6))
    return d_layer, d_x


# -- naive references

def naive_conv2d(x, f, strides, padding):
    n, h, w, c = x.shape
    kh, kw, _, o = f.shape
    sh, sw = strides
    if padding == "same":
        oh, ow = -(-h // sh), -(-w // sw)
        ph = max((oh - 1) * sh + kh - h, 0)
        pw = max((ow - 1) * sw + kw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = np.zeros((n, oh, ow, o))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for k in range(o):
                    out[b, i, j, k] = np.sum(x[b, i * sh:i * sh + kh, j * sw:j * sw + kw, :] * f[:, :, :, k])
    return out


def naive_pool(x, size, strides, reduce):
    n, h, w, c = x.shape
    (ph, pw), (sh, sw) = size, strides
    oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j, :] = reduce(x[:, i * sh:i * sh + ph, j * sw:j * sw + pw, :], axis=(1, 2))
    return out


RNG = np.random.default_rng(1234)


def randn(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


# -- primitives

CONV_CASES = [((1, 1), "valid", (3, 3)), ((1, 1), "same", (3, 3)), ((2, 2), "valid", (3, 3)),
              ((2, 2), "same", (3, 3)), ((2, 1), "same", (2, 2)), ((1, 2), "valid", (2, 3))]


@pytest.mark.parametrize("strides,padding,kernel", CONV_CASES)
def test_conv2d_matches_a_naive_loop(strides, padding, kernel):
    x, f = randn(2, 5, 6, 3), randn(*kernel, 3, 4)
    np.testing.assert_allclose(nn.conv2d(x, f, strides, padding), naive_conv2d(x, f, strides, padding),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strides,padding,kernel", CONV_CASES)
def test_conv2d_gradient(strides, padding, kernel):
    x, f = randn(2, 5, 6, 3), randn(*kernel, 3, 2)
    adtrans.check_gradient(lambda x, f: nn.conv2d(x, f, strides, padding), x, f)


def test_conv2d_keeps_float32():
    x, f = randn(1, 4, 4, 2, dtype=np.float32), randn(3, 3, 2, 2, dtype=np.float32)
    y, back = adtrans.value_with_pullback(nn.conv2d, x, f, wrt=(0, 1))
    d_x, d_f = back(np.ones_like(y))
    assert y.dtype == d_x.dtype == d_f.dtype == np.float32


@pytest.mark.parametrize("size,strides", [((2, 2), (2, 2)), ((2, 2), (1, 1)), ((3, 2), (2, 1))])
def test_pooling_matches_naive_loops(size, strides):
    x = randn(2, 6, 5, 3)
    np.testing.assert_allclose(nn.max_pool2d(x, size, strides), naive_pool(x, size, strides, np.max))
    np.testing.assert_allclose(nn.avg_pool2d(x, size, strides), naive_pool(x, size, strides, np.mean))


@pytest.mark.parametrize("size,strides", [((2, 2), None), ((2, 2), (1, 1)), ((3, 2), (2, 1))])
@pytest.mark.parametrize("pool", [nn.max_pool2d, nn.avg_pool2d])
def test_pooling_gradients(pool, size, strides):
    x = randn(2, 6, 5, 3)      # random values: no ties in a max-pool window
    adtrans.check_gradient(lambda x: pool(x, size, strides), x)
    x32 = x.astype(np.float32)
    y, back = adtrans.value_with_pullback(lambda x: pool(x, size, strides), x32)
    assert y.dtype == back(np.ones_like(y)).dtype == np.float32


def test_max_pool_sends_the_cotangent_to_the_first_maximum_on_ties():
    x = np.ones((1, 2, 2, 1))
    _, back = adtrans.value_with_pullback(nn.max_pool2d, x)
    assert back(np.ones((1, 1, 1, 1)))[0, :, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


# -- activations and losses

@pytest.mark.parametrize("activation", [nn.relu, nn.sigmoid, nn.tanh, nn.softmax, nn.log_softmax, nn.identity])
def test_activation_gradients_and_dtype(activation):
    x = randn(3, 4) + 0.01        # away from relu's kink at 0
    adtrans.check_gradient(activation, x)
    y, back = adtrans.value_with_pullback(activation, x.astype(np.float32))
    assert y.dtype == back(np.ones_like(y)).dtype == np.float32


def test_activation_values():
    x = np.array([[-800.0, -1.0, 0.0, 2.0, 800.0]])
    with np.errstate(over="ignore"):
        expected_sigmoid = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(nn.sigmoid(x), expected_sigmoid, atol=1e-15)
    assert nn.relu(x).tolist() == [[0.0, 0.0, 0.0, 2.0, 800.0]]
    assert np.all(np.isfinite(nn.log_softmax(x)))
    assert nn.softmax(x).sum() == pytest.approx(1.0)
    small = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(nn.softmax(small), np.exp(small) / np.exp(small).sum())
    np.testing.assert_allclose(nn.log_softmax(small), np.log(np.exp(small) / np.exp(small).sum()))


def test_losses_values():
    assert nn.mean_squared_error(np.array([1.0, 2.0]), np.array([0.0, 0.0])) == pytest.approx(2.5)
    logits, labels = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), np.array([2, 0])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = -(np.log(p[0, 2]) + np.log(p[1, 0])) / 2
    assert nn.softmax_cross_entropy(logits, labels) == pytest.approx(expected)
    assert nn.softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1])) == pytest.approx(1000.0)


def test_losses_gradients():
    adtrans.check_gradient(nn.mean_squared_error, randn(4, 3), randn(4, 3))
    logits, labels = randn(5, 4), np.array([0, 3, 1, 1, 2])
    adtrans.check_gradient(nn.softmax_cross_entropy, logits, labels, wrt=0)
    g = adtrans.gradient(nn.softmax_cross_entropy, logits, labels, wrt=0)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(g, (p - np.eye(4)[labels]) / 5, atol=1e-12)
    g32 = adtrans.gradient(nn.softmax_cross_entropy, logits.astype(np.float32), labels, wrt=0)
    assert g32.dtype == np.float32


# -- layers

def test_dense_initialisation_is_seeded_glorot_or_he_and_float32():
    a, b = nn.Dense(300, 200, rng=7), nn.Dense(300, 200, rng=7)
    assert a.weight.dtype == a.bias.dtype == np.float32 and a.weight.shape == (300, 200)
    np.testing.assert_array_equal(a.weight, b.weight)
    assert np.all(a.bias == 0)
    limit = math.sqrt(6 / 500)
    assert np.abs(a.weight).max() <= limit and a.weight.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    he = nn.Dense(300, 200, nn.relu, rng=np.random.default_rng(7))
    assert he.weight.std() == pytest.approx(math.sqrt(2 / 300), rel=0.02)
    assert nn.Dense(3, 2, dtype=np.float64).weight.dtype == np.float64
    given = nn.Dense(weight=np.ones((2, 3)), bias=np.zeros(3), activation=nn.relu)
    assert given(np.ones((1, 2))).tolist() == [[2.0, 2.0, 2.0]]


def test_dense_gradient():
    check_layer_gradient(nn.Dense(3, 4, nn.tanh, rng=0, dtype=np.float64), randn(5, 3))


@pytest.mark.parametrize("strides,padding", [((1, 1), "valid"), ((2, 1), "same")])
def test_conv2d_layer_gradient(strides, padding):
    layer = nn.Conv2D((3, 2, 2, 3), strides, padding, nn.tanh, rng=0, dtype=np.float64)
    layer = dataclasses.replace(layer, bias=randn(3))
    check_layer_gradient(layer, randn(2, 5, 4, 2))


@pytest.mark.parametrize("layer", [nn.MaxPool2D(), nn.AvgPool2D((2, 2), (1, 1)), nn.Flatten()],
                         ids=["max", "avg", "flatten"])
def test_layers_without_parameters(layer):
    d_layer, d_x = check_layer_gradient(layer, randn(2, 4, 4, 3))
    assert dataclasses.fields(d_layer) == ()


def small_cnn(dtype=np.float64):
    return nn.Sequential([
        nn.Conv2D((3, 3, 2, 3), padding="same", activation=nn.relu, rng=0, dtype=dtype),
        nn.MaxPool2D(),
        nn.Flatten(),
        nn.Dense(12, 3, nn.tanh, rng=1, dtype=dtype),
    ])


def test_sequential_gradient_and_tangent_structure():
    model = small_cnn()
    d_model, _ = check_layer_gradient(model, randn(2, 4, 4, 2))
    assert isinstance(d_model, nn.Sequential) and len(d_model.layers) == 4
    assert d_model.layers[0].filter.shape == (3, 3, 2, 3)


def test_sequenced_applies_layers_in_order():
    a, b = nn.Dense(2, 3, nn.relu, rng=0), nn.Dense(3, 1, rng=1)
    x = np.ones((4, 2), np.float32)
    np.testing.assert_array_equal(nn.sequenced(x, a, b), b(a(x)))


def test_sequenced_inside_differentiated_code():
    a, b = nn.Dense(2, 3, nn.relu, rng=0, dtype=np.float64), nn.Dense(3, 1, rng=1, dtype=np.float64)
    x = randn(4, 2)
    d_a, d_b = adtrans.gradient(lambda a, b: np.sum(nn.sequenced(x, a, b)), a, b)
    d_model = adtrans.gradient(lambda m: np.sum(m(x)), nn.Sequential([a, b]))
    for got, want in ((d_a, d_model.layers[0]), (d_b, d_model.layers[1])):
        np.testing.assert_allclose(got.weight, want.weight)
        np.testing.assert_allclose(got.bias, want.bias)
    # Called directly: one tangent per argument, the layers' from the '*layers' tuple.
    d_x, d_a2, d_b2 = adtrans.gradient(lambda x, a, b: np.sum(nn.sequenced(x, a, b)), x, a, b)
    np.testing.assert_allclose(d_a2.weight, d_a.weight)
    np.testing.assert_allclose(d_b2.bias, d_b.bias)
    adtrans.check_gradient(lambda x: np.sum(nn.sequenced(x, a, b)), x)


def test_discarding_activations_recomputes_in_the_pullback_and_gives_the_same_gradient():
    calls = []

    @dataclass
    class Counted(nn.Layer):
        layer: nn.Layer

        def __call__(self, x):
            calls.append(1)
            return self.layer(x)

    inner = Counted(nn.Dense(3, 4, nn.tanh, rng=0, dtype=np.float64))
    x = randn(2, 3)
    y, backprop = inner.discarding_activations().applied_for_backpropagation(x)
    assert len(calls) == 1
    v = randn(2, 4)
    d_layer, d_x = backprop(v)
    assert len(calls) == 2        # the pullback ran the layer again
    d_plain, d_x_plain = inner.applied_for_backpropagation(x)[1](v)
    np.testing.assert_allclose(d_layer.layer.layer.weight, d_plain.layer.weight)
    np.testing.assert_allclose(d_x, d_x_plain)
    check_layer_gradient(nn.Sequential([inner.discarding_activations(), nn.Dense(4, 2, rng=2, dtype=np.float64)]), x)


def test_with_derivative_on_a_layer_output_sees_that_activation_cotangent():
    seen = []

    @dataclass
    class Model(nn.Layer):
        layer1: nn.Dense
        layer2: nn.Dense

        def __call__(self, x):
            h = adtrans.with_derivative(self.layer1(x), seen.append)
            return self.layer2(h)

    model = Model(nn.Dense(2, 3, nn.tanh, rng=0, dtype=np.float64), nn.Dense(3, 1, rng=1, dtype=np.float64))
    x = randn(4, 2)
    adtrans.gradient(lambda m: np.sum(m(x) ** 2), model)
    h = model.layer1(x)
    expected = adtrans.gradient(lambda h: np.sum(model.layer2(h) ** 2), h)
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], expected)


def test_with_derivative_hook_can_replace_the_cotangent():
    @dataclass
    class Model(nn.Layer):
        layer1: nn.Dense

        def __call__(self, x):
            return adtrans.with_derivative(self.layer1(x), lambda d: 0 * d)

    model = Model(nn.Dense(2, 3, rng=0))
    gradient = adtrans.gradient(lambda m: np.sum(m(np.ones((1, 2), np.float32))), model)
    assert not np.any(gradient.layer1.weight)


def test_float32_model_gradient_stays_float32():
    model = small_cnn(np.float32)
    x = randn(2, 4, 4, 2, dtype=np.float32)
    gradient = adtrans.gradient(lambda m: nn.softmax_cross_entropy(m(x), np.array([0, 2])), model)
    assert gradient.layers[0].filter.dtype == gradient.layers[3].weight.dtype == np.float32


# -- optimizers

def tiny_model():
    return nn.Dense(weight=np.array([[1.0, -2.0]], np.float32), bias=np.array([0.5, 0.0], np.float32))


def tiny_gradient(model):
    return adtrans.tangents.tangent_type(nn.Dense)(weight=np.array([[0.1, -0.4]], np.float32),
                                                   bias=np.array([1.0, 2.0], np.float32))


def test_sgd_without_momentum_is_move():
    model = tiny_model()
    g = tiny_gradient(model)
    new = nn.SGD(model, learning_rate=0.5).update(model, along=g)
    np.testing.assert_allclose(new.weight, [[0.95, -1.8]])
    np.testing.assert_allclose(new.bias, [0.0, -1.0])
    assert new.weight.dtype == np.float32 and model.weight.tolist() == [[1.0, -2.0]]   # not in place


def test_sgd_momentum():
    model = tiny_model()
    g = tiny_gradient(model)
    sgd = nn.SGD(model, learning_rate=0.1, momentum=0.9)
    first = sgd.update(model, along=g)
    second = sgd.update(first, along=g)
    w, gw = np.array([[1.0, -2.0]]), np.array([[0.1, -0.4]])
    v1 = -0.1 * gw
    v2 = 0.9 * v1 - 0.1 * gw
    np.testing.assert_allclose(second.weight, w + v1 + v2, rtol=1e-6)
    assert second.weight.dtype == np.float32


def test_adam_matches_the_textbook_update():
    model = tiny_model()
    g = tiny_gradient(model)
    adam = nn.Adam(model, learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
    out = model
    for _ in range(3):
        out = adam.update(out, along=g)
    w, gw = np.array([[1.0, -2.0]]), np.array([[0.1, -0.4]])
    m = v = 0
    for t in range(1, 4):
        m = 0.9 * m + 0.1 * gw
        v = 0.999 * v + 0.001 * gw ** 2
        w = w - 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(out.weight, w, rtol=1e-6)
    assert out.weight.dtype == out.bias.dtype == adam.first_moment.weight.dtype == np.float32


def test_optimizers_train_a_sequential_model():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    for make in [lambda m: nn.SGD(m, 0.1, momentum=0.5), lambda m: nn.Adam(m, 0.05)]:
        model = nn.Sequential([nn.Dense(3, 8, nn.tanh, rng=1), nn.Dense(8, 1, rng=2)])
        optimizer = make(model)
        loss = lambda m: nn.mean_squared_error(m(x), y)  # noqa: E731
        first = loss(model)
        for _ in range(60):
            model = optimizer.update(model, along=adtrans.gradient(loss, model))
        assert loss(model) < 0.2 * first


def test_the_handwritten_recomputation_matches_checkpointed():
    from adtrans.nn import layers
    layer = nn.Dense(3, 2, nn.tanh, rng=0, dtype=np.float64)
    x, v = randn(4, 3), randn(4, 2)
    by_hand = adtrans.differentiable_function(layers._recomputed_vjp)
    d_layer, d_x = adtrans.pullback(by_hand, layer, x)(v)
    d_plain, d_x_plain = layer.applied_for_backpropagation(x)[1](v)
    np.testing.assert_allclose(d_layer.weight, d_plain.weight)
    np.testing.assert_allclose(d_x, d_x_plain)


# The compiler problems docs/nn.md used to list, fixed: no workaround needed in user layers.

def _scaled(x, mode):
    return x * (2.0 if mode == "double" else 1.0)


@adtrans.derivative(of=_scaled, wrt=("x",))
def _scaled_vjp(x, mode):
    k = 2.0 if mode == "double" else 1.0
    return x * k, lambda d: d * k


@dataclass
class _Configured(nn.Layer):
    weight: np.ndarray
    mode: str = "double"
    hook: Callable = None

    def __call__(self, x):
        y = _scaled(x @ self.weight, self.mode)
        return adtrans.with_derivative(y, self.hook) if self.hook is not None else y


@dataclass
class _Plain(nn.Layer):
    layers: list

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _squared_sum(model, x):
    return np.sum(model(x) ** 2)


def test_configuration_fields_reach_rules_and_hooks_without_a_workaround():
    x = randn(3, 2)
    for hook in (None, lambda d: d * 1.0):
        layer = _Configured(randn(2, 2), "double", hook)
        d_layer, d_x = adtrans.gradient(_squared_sum, layer, x)
        y = 2.0 * (x @ layer.weight)
        np.testing.assert_allclose(d_layer.weight, x.T @ (2.0 * 2.0 * y))
        np.testing.assert_allclose(d_x, (2.0 * 2.0 * y) @ layer.weight.T)


def test_a_layer_without_parameters_through_run_time_dispatch():
    model = _Plain([nn.Dense(4, 3, nn.relu, rng=0, dtype=np.float64), nn.Flatten(),
                    nn.Dense(3, 2, rng=1, dtype=np.float64)])
    x = randn(5, 4)
    d_model, d_x = adtrans.gradient(_squared_sum, model, x)
    d_seq, d_x_seq = adtrans.gradient(_squared_sum, nn.Sequential(model.layers), x)
    np.testing.assert_allclose(d_x, d_x_seq)
    np.testing.assert_allclose(d_model.layers[0].weight, d_seq.layers[0].weight)


# A layer held by a global, called in differentiated code or differentiated itself.
GLOBAL_LAYER = nn.Dense(3, 2, nn.tanh)


def through_a_global_layer(x):
    return np.sum(GLOBAL_LAYER(x) ** 2)


def test_a_layer_held_by_a_global_is_called_and_differentiated_like_a_function():
    x = randn(4, 3)
    adtrans.check_gradient(through_a_global_layer, x)
    value, pullback = adtrans.value_with_pullback(GLOBAL_LAYER, x)
    np.testing.assert_array_equal(value, GLOBAL_LAYER(x))
    d = randn(4, 2)
    d_x = pullback(d)                       # as jax.grad(layer): the input only; the layer is fixed
    d_layer, d_x_too = adtrans.value_with_pullback(GLOBAL_LAYER, x, wrt=("self", "x"))[1](d)
    np.testing.assert_allclose(d_x, d_x_too)
    want = adtrans.value_with_pullback(lambda layer, x: layer(x), GLOBAL_LAYER, x)[1](d)
    np.testing.assert_allclose(d_layer.weight, want[0].weight)
    np.testing.assert_allclose(d_x, want[1])
