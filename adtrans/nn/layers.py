"""Layers: dataclasses whose fields are their parameters and whose ``__call__`` adtrans differentiates.

A layer is Swift's ``Layer`` protocol as a Python ``@dataclass``: its
parameters are fields, so its gradient is a ``TangentVector`` with one field
per parameter, and ``adtrans.move`` (or an optimizer) steps it along one.
``__call__`` is ordinary NumPy; nothing here is written for the
differentiator except the convolution and pooling primitives it calls::

    model = Sequential([Dense(2, 10, relu), Dense(10, 1)])
    def loss(model, x, y):
        return mean_squared_error(model(x), y)
    gradient = adtrans.gradient(loss, model, x, y, wrt="model")

Constructors take sizes (Swift's ``Dense(inputSize:outputSize:activation:)``)
and initialise parameters from a seedable ``np.random.Generator``; they also
accept the parameters themselves by keyword (``Dense(weight=w, bias=b)``),
which is how ``dataclasses.replace`` and ``adtrans.move`` rebuild a layer.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Tuple

import numpy as np

import adtrans
from adtrans.nn.activations import identity, relu
from adtrans.nn.primitives import avg_pool2d, conv2d, max_pool2d

__all__ = ["Layer", "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "Flatten", "Sequential",
           "DiscardingActivations", "sequenced"]


def _constant(default):
    """A dataclass field that is configuration, not a parameter: no derivative."""
    return field(default=default, metadata={"no_derivative": True})


def _applied(layer, x):
    return layer(x)


@dataclass
class Layer:
    """The base of every layer: a dataclass with a differentiable ``__call__(self, x)``."""

    def __call__(self, x):
        raise NotImplementedError(f"{type(self).__name__} must define __call__(self, x)")

    def applied_for_backpropagation(self, x):
        """``(output, backprop)``; ``backprop(d_output)`` gives ``(layer_tangent, input_tangent)``.

        ::

            y, backprop = dense.applied_for_backpropagation(x)
            d_dense, d_x = backprop(np.ones_like(y))
        """
        if not _has_parameters(self):
            # No parameters (pooling, Flatten): the layer's tangent is its empty TangentVector.
            y, backprop = adtrans.value_with_pullback(_applied, self, x, wrt="x")
            zero = adtrans.tangents.tangent_type(type(self))()
            return y, lambda d_y: (zero, backprop(d_y))
        return adtrans.value_with_pullback(_applied, self, x, wrt=("layer", "x"))

    def discarding_activations(self):
        """This layer, keeping none of its intermediate values for the pullback: they are recomputed there.

        Trades compute for memory (Swift's ``discardingActivations``): the
        forward pass runs the plain layer; the pullback runs it again,
        differentiated, and pulls the cotangent through that
        (``adtrans.checkpointed``).
        """
        return DiscardingActivations(self)


def _recomputed_vjp(layer, x):
    """Forward: the plain layer. Pullback: differentiate the layer again, from its inputs only."""
    def pullback(d_y):
        return adtrans.pullback(_applied, layer, x, wrt=("layer", "x"))(d_y)
    return layer(x), pullback


# `adtrans.checkpointed` (SPEC section 6) where this version of adtrans has it; otherwise the same
# recomputation written by hand, as the tutorial's `make_recomputed_in_gradient` does.
_recomputed = (adtrans.checkpointed(_applied) if hasattr(adtrans, "checkpointed")
               else adtrans.differentiable_function(_recomputed_vjp))


@dataclass
class DiscardingActivations(Layer):
    """`layer`, whose intermediate values are recomputed in the pullback instead of kept."""

    layer: Layer

    def __call__(self, x):
        return _recomputed(self.layer, x)


def _generator(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _initial_weight(shape, fan_in, fan_out, activation, rng, dtype):
    """He initialisation before a `relu`, Glorot (uniform) otherwise."""
    if activation is relu:
        weight = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    else:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        weight = rng.uniform(-limit, limit, size=shape)
    return weight.astype(dtype)


@dataclass(init=False)
class Dense(Layer):
    """``activation(x @ weight + bias)``: a fully connected layer.

    ::

        Dense(784, 256, relu, rng=0)                  # He-initialised weight, zero bias
        Dense(weight=w, bias=b, activation=relu)      # from given parameters
    """

    weight: np.ndarray
    bias: np.ndarray
    activation: Callable = identity

    def __init__(self, input_size=None, output_size=None, activation=identity, *,
                 weight=None, bias=None, rng=None, dtype=np.float32):
        if weight is None:
            if input_size is None or output_size is None:
                raise TypeError("Dense needs input_size and output_size, or weight= and bias=")
            weight = _initial_weight((input_size, output_size), input_size, output_size,
                                     activation, _generator(rng), dtype)
        if bias is None:
            bias = np.zeros(weight.shape[1], dtype=weight.dtype)
        self.weight, self.bias, self.activation = weight, bias, activation

    def __call__(self, x):
        return self.activation(x @ self.weight + self.bias)


@dataclass(init=False)
class Conv2D(Layer):
    """``activation(conv2d(x, filter) + bias)`` over NHWC `x` with an HWIO filter.

    ::

        Conv2D((5, 5, 3, 6), strides=(1, 1), padding="valid", activation=relu, rng=0)
    """

    filter: np.ndarray
    bias: np.ndarray
    strides: Tuple[int, int] = _constant((1, 1))
    padding: str = _constant("valid")
    activation: Callable = identity

    def __init__(self, filter_shape=None, strides=(1, 1), padding="valid", activation=identity, *,
                 filter=None, bias=None, rng=None, dtype=np.float32):
        if filter is None:
            if filter_shape is None:
                raise TypeError("Conv2D needs filter_shape=(height, width, in, out), or filter=")
            height, width, channels_in, channels_out = filter_shape
            receptive = height * width
            filter = _initial_weight(tuple(filter_shape), receptive * channels_in,
                                     receptive * channels_out, activation, _generator(rng), dtype)
        if bias is None:
            bias = np.zeros(filter.shape[3], dtype=filter.dtype)
        self.filter, self.bias = filter, bias
        self.strides, self.padding, self.activation = tuple(strides), padding, activation

    def __call__(self, x):
        # without_derivative: a workaround for a compiler problem with configuration fields passed to
        # a registered VJP (docs/nn.md, "Known compiler problems").
        strides, padding = adtrans.without_derivative((self.strides, self.padding))
        return self.activation(conv2d(x, self.filter, strides, padding) + self.bias)


@dataclass
class MaxPool2D(Layer):
    """The maximum of each `pool_size` window, every `strides` (default: `pool_size`)."""

    pool_size: Tuple[int, int] = _constant((2, 2))
    strides: Any = _constant(None)

    def __call__(self, x):
        pool_size, strides = adtrans.without_derivative((self.pool_size, self.strides))
        return max_pool2d(x, pool_size, strides)


@dataclass
class AvgPool2D(Layer):
    """The mean of each `pool_size` window, every `strides` (default: `pool_size`)."""

    pool_size: Tuple[int, int] = _constant((2, 2))
    strides: Any = _constant(None)

    def __call__(self, x):
        pool_size, strides = adtrans.without_derivative((self.pool_size, self.strides))
        return avg_pool2d(x, pool_size, strides)


@dataclass
class Flatten(Layer):
    """(batch, ...) to (batch, features)."""

    def __call__(self, x):
        return np.reshape(x, (x.shape[0], -1))


@dataclass
class Sequential(Layer):
    """Its layers applied in order; its tangent holds a list of the layers' tangents.

    ::

        model = Sequential([Conv2D((3, 3, 1, 4), activation=relu), Flatten(), Dense(64, 10)])
    """

    layers: Sequence[Layer]

    def __call__(self, x):
        for layer in self.layers:
            if _has_parameters(layer):
                x = layer(x)
            else:
                # Workaround: run-time dispatch of `layer(x)` asks for a derivative w.r.t. a layer
                # without parameters and fails; calling it as a constant avoids that (docs/nn.md).
                x = adtrans.without_derivative(layer)(x)
        return x


def _has_parameters(layer):
    return adtrans.tangents.is_differentiable(layer)


def sequenced(x, *layers):
    """`x` through `layers` in order (Swift's ``input.sequenced(through: l1, l2, ...)``)."""
    return Sequential(list(layers))(x)
