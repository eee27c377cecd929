"""Loss functions: plain NumPy that adtrans differentiates."""

import numpy as np

from adtrans.nn.activations import log_softmax

__all__ = ["mean_squared_error", "softmax_cross_entropy"]


def mean_squared_error(predicted, expected):
    """The mean over every element of ``(predicted - expected) ** 2``."""
    error = predicted - expected
    return np.mean(error * error)


def softmax_cross_entropy(logits, labels):
    """The mean over the batch of ``-log softmax(logits)[label]``.

    `logits` is (batch, classes); `labels` holds integer class indices
    (batch,).  Computed from `log_softmax`, so large logits do not overflow.
    """
    log_probabilities = log_softmax(logits)
    picked = log_probabilities[np.arange(logits.shape[0]), labels]
    return -np.mean(picked)
