"""Activation functions: plain NumPy that adtrans differentiates (no registered rules).

Each is written so that it cannot overflow for any finite input, and keeps
its input's dtype (a float32 activation stays float32, and so does its
gradient).
"""

import numpy as np

import adtrans

__all__ = ["identity", "relu", "sigmoid", "tanh", "softmax", "log_softmax"]


def identity(x):
    """`x` unchanged: the default activation of a layer."""
    return x


def relu(x):
    """``max(x, 0)``, elementwise; its derivative at 0 is 0 (adtrans's rule for a literal 0)."""
    return np.maximum(x, 0)


def sigmoid(x):
    """``1 / (1 + exp(-x))``, written as ``(1 + tanh(x / 2)) / 2``: no overflow for large ``|x|``."""
    return 0.5 * (np.tanh(0.5 * x) + 1)


def tanh(x):
    """The hyperbolic tangent, elementwise."""
    return np.tanh(x)


def log_softmax(x, axis=-1):
    """``log(softmax(x))`` along `axis`, computed as ``x - logsumexp(x)`` with the maximum shifted out."""
    shifted = x - adtrans.without_derivative(np.max(x, axis=axis, keepdims=True))
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x))`` along `axis`, with the maximum shifted out so nothing overflows."""
    e = np.exp(x - adtrans.without_derivative(np.max(x, axis=axis, keepdims=True)))
    return e / np.sum(e, axis=axis, keepdims=True)
