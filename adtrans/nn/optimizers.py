"""Optimizers: SGD (with momentum) and Adam, stepping a model along its gradient.

``optimizer.update(model, along=gradient)`` *returns the new model* and
leaves the old one untouched, like ``adtrans.move`` (which it is built on):
models are values, so a training loop reads ``model = optimizer.update(model,
along=gradient)``.  The optimizer keeps its own state (velocity, moments)
between calls; create one optimizer per model.

    optimizer = SGD(model, learning_rate=0.02)
    for step in range(100):
        gradient = adtrans.gradient(loss, model, x, y, wrt="model")
        model = optimizer.update(model, along=gradient)

Arithmetic is done in each parameter's dtype: a float32 model stays float32.
"""

import dataclasses
import math

import numpy as np

import adtrans
from adtrans import registry

__all__ = ["SGD", "Adam"]


def _map(fn, first, *rest):
    """`fn` applied leaf by leaf to tangents of `first`'s structure.

    A None in `first` (a zero, or no derivative) stays None; a None in `rest`
    reaches `fn` as None at every leaf below it.
    """
    if first is None:
        return None
    if isinstance(first, (np.ndarray, np.generic, float)):
        return fn(first, *rest)
    if dataclasses.is_dataclass(first):
        changes = {f.name: _map(fn, getattr(first, f.name), *(_part(r, f.name) for r in rest))
                   for f in dataclasses.fields(first)}
        return dataclasses.replace(first, **changes)
    if isinstance(first, (tuple, list, dict)):
        keys = first.keys() if isinstance(first, dict) else range(len(first))
        items = [_map(fn, first[k], *(None if r is None else r[k] for r in rest)) for k in keys]
        if isinstance(first, dict):
            return dict(zip(keys, items))
        return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)
    return None


def _part(tree, name):
    return None if tree is None else getattr(tree, name)


def _zeros(model):
    return adtrans.tangents.zeros_like(model)


class SGD:
    """Stochastic gradient descent with optional (heavy-ball) momentum.

    ``velocity = momentum * velocity - learning_rate * gradient``;
    ``model = model + velocity``.  With ``momentum=0`` this is
    ``adtrans.move(model, gradient, -learning_rate)``.
    """

    def __init__(self, model, learning_rate=0.01, momentum=0.0):
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.velocity = _zeros(model) if momentum else None

    def update(self, model, along):
        """The model one step along `along` (a gradient of a loss w.r.t. `model`)."""
        if not self.momentum:
            return adtrans.move(model, along, -self.learning_rate)
        lr, mu = self.learning_rate, self.momentum
        self.velocity = _map(lambda v, g: v if g is None else mu * v - lr * g,
                             self.velocity, along)
        return adtrans.move(model, self.velocity)


class Adam:
    """Adam (Kingma & Ba, 2015), with bias-corrected first and second moments.

    ``m = beta1 m + (1 - beta1) g``; ``v = beta2 v + (1 - beta2) g²``;
    ``model = model - learning_rate * m̂ / (sqrt(v̂) + epsilon)`` where
    ``m̂ = m / (1 - beta1^t)`` and ``v̂ = v / (1 - beta2^t)``.
    """

    def __init__(self, model, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.learning_rate = learning_rate
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.first_moment = _zeros(model)
        self.second_moment = _zeros(model)
        self.step = 0

    def update(self, model, along):
        """The model one Adam step along `along` (a gradient of a loss w.r.t. `model`)."""
        b1, b2, eps = self.beta1, self.beta2, self.epsilon
        self.step += 1
        gradient = along
        self.first_moment = _map(lambda m, g: m if g is None else b1 * m + (1 - b1) * g,
                                 self.first_moment, gradient)
        self.second_moment = _map(lambda v, g: v if g is None else b2 * v + (1 - b2) * (g * g),
                                  self.second_moment, gradient)
        # Python floats, so that float32 moments stay float32 (a NumPy float64 scalar would widen them).
        step_size = self.learning_rate * math.sqrt(1 - b2 ** self.step) / (1 - b1 ** self.step)
        # The bias corrections folded into the step size, with epsilon scaled to match
        # the textbook form m̂ / (sqrt(v̂) + epsilon).
        eps_hat = eps * math.sqrt(1 - b2 ** self.step)
        direction = _map(lambda m, v: m / (np.sqrt(v) + eps_hat), self.first_moment, self.second_moment)
        return adtrans.move(model, direction, -step_size)


# Making an optimizer carries no derivative (what `adtrans check` meets in a training function).
registry.constant_function(SGD, Adam, reason="an optimizer holds state, not a differentiable value")
