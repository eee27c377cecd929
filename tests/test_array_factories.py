"""Arrays made from differentiated values: np.full_like, np.zeros_like and friends, np.linspace
with differentiated ends, np.pad with differentiated constant values per side."""

import numpy as np
import pytest
from structured_check import assert_gradient

import adtrans

U = np.array([0.5, 1.5, -1.0])
A = np.arange(12.0).reshape(3, 4) * 0.3 - 1.0


def filled_like(c, u):
    return (np.sum(np.full_like(u, c) * u) + np.sum(np.zeros_like(u) + u ** 2)
            + np.sum(np.ones_like(u) * c) + np.sum(np.empty_like(u).shape[0] * u))


def test_templates_give_only_their_shape():
    assert_gradient(filled_like, 2.0, U)
    g_c, g_u = adtrans.gradient(filled_like, 2.0, U)
    assert g_c == pytest.approx(np.sum(U) + 3.0)
    np.testing.assert_allclose(g_u, 2.0 + 2 * U + 3.0)


def test_full_like_keeps_the_fill_values_dtype():
    g = adtrans.gradient(lambda c, u: np.sum(np.full_like(u, c) * u), np.float32(2.0), U.astype(np.float32))
    assert type(g[0]) is np.float32 and g[1].dtype == np.float32


def ramp(a, b):
    t, step = np.linspace(a, b, 5, retstep=True)
    grid = np.linspace(a, 2.0 * b, 4, endpoint=False)
    return np.sum(t ** 2) + step * 3.0 + np.sum(np.sin(grid))


def ramps_per_row(lo, hi):
    return np.sum(np.linspace(lo, hi, 6, axis=-1) ** 3)


def test_linspace_with_differentiated_ends():
    assert_gradient(ramp, 0.5, 2.0)
    assert_gradient(ramps_per_row, U, U + 1.0)


def test_integer_linspace_is_piecewise_constant():
    g = adtrans.gradient(lambda a: np.sum(np.linspace(a, 10.0, 4, dtype=int) * a), 0.5)
    assert g == float(np.sum(np.linspace(0.5, 10.0, 4, dtype=int)))


def padded_per_side(x, c, d):
    return (np.sum(np.pad(x, ((1, 1), (2, 0)), constant_values=((c, d), (2.0 * d, c))) ** 2)
            + np.sum(np.pad(x, 1, constant_values=(c, d)) * np.arange(30.0).reshape(5, 6)))


def test_pad_with_differentiated_values_per_axis_and_side():
    assert_gradient(padded_per_side, A, 0.7, -1.3)
