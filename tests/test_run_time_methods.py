"""Array and dict methods met at run time (``x.argsort()``, ``x.cumprod()``, ``self.heads.items()``):
constants, rules of the unbound method, or an error at the user's line."""

from dataclasses import dataclass
from typing import Dict

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


@dataclass
class Heads:
    weights: Dict[str, np.ndarray]
    scale: float = 2.0


@dataclass
class Model:
    heads: Heads

    def score(self, x):
        total = 0.0
        for name in self.heads.weights.keys():
            total = total + np.sum(self.heads.weights[name] * x) * self.heads.scale
        for w in self.heads.weights.values():
            total = total + np.sum(np.sin(w))
        for name, w in self.heads.weights.items():
            total = total + len(name) * np.sum(w ** 2)
        return total


def test_views_of_a_dict_field_of_a_field():
    model = Model(Heads({"a": np.array([0.5, -1.0]), "bb": np.array([2.0, 0.3])}))
    x = np.array([1.5, -0.5])
    assert_gradient(Model.score, model, x)
    g = adtrans.gradient(Model.score, model, x)[0]
    assert isinstance(g.heads.weights, dict) and list(g.heads.weights) == ["a", "bb"]


def flat_reads(A):
    total = 0.0
    for v in A.flat:
        total = total + v ** 3
    return total + np.sum(A.flat[1:3] * 2.0) + A.flat[-1] * A.flat[0]


def test_flat_reads_as_the_raveled_array():
    assert_gradient(flat_reads, np.array([[1.0, 2.0], [3.0, -1.0]]))
    assert_gradient(flat_reads, np.arange(6.0).reshape(3, 2).T * 0.3)     # not C-contiguous


@dataclass
class Panel:
    flat: float


def panel_area(p, x):
    return p.flat * x


def test_a_field_named_flat_is_a_field():
    g = adtrans.gradient(panel_area, Panel(2.0), 3.0)
    assert g[0].flat == 3.0 and g[1] == 2.0
