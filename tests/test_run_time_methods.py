"""Array and dict methods met at run time (``x.argsort()``, ``x.cumprod()``, ``self.heads.items()``):
constants, rules of the unbound method, or an error at the user's line."""

import numpy as np
import pytest
from structured_check import assert_gradient

import adtrans

X = np.array([[0.3, -1.2, 0.8], [1.1, 0.4, -0.5]])


def weighted_by_rank_and_rounding(x):
    return np.sum(x * x.argsort(axis=1)) + np.sum(x.round(1) * x) + np.sum(x * x[0].searchsorted(0.5))


def test_constant_methods_give_no_derivative():
    assert_gradient(weighted_by_rank_and_rounding, X)


def cumulative_product(x):
    return np.sum(x.cumprod(axis=1) * np.arange(3.0)) + np.sum(x.cumprod())


def test_cumprod_method_follows_its_rule():
    assert_gradient(cumulative_product, X)
    assert_gradient(cumulative_product, np.array([[0.3, 0.0, 0.8], [0.0, 0.0, -0.5]]))


def compressed(x):
    return np.sum(x.compress([True, False, True], axis=1))


def test_a_method_without_a_rule_is_an_error_at_the_users_line():
    with pytest.raises(adtrans.DifferentiationError) as caught:
        adtrans.gradient(compressed, X)
    error = caught.value
    assert error.filename.endswith("test_run_time_methods.py")
    assert (error.lineno, error.col) == (compressed.__code__.co_firstlineno + 1, 19)
    assert "np.ndarray.compress" in str(error) and "@adtrans.derivative(of=np.ndarray.compress)" in str(error)
