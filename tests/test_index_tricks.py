"""np.r_ and np.c_ of differentiated values (NumPy's concatenation by subscript), and other
objects indexed with differentiated values."""

import numpy as np
import pytest
from structured_check import assert_gradient

import adtrans
from numpy import r_

rng = np.random.default_rng(7)
U, V = rng.standard_normal(3), rng.standard_normal(3)
M = rng.standard_normal((2, 3))
WEIGHTS = np.array([0.5, -1.0, 2.0, 0.25])


def with_scalars_and_ranges(u, left, right):
    ext = np.r_[left, u, right, 0:2, 1.5]          # a slice is a constant range
    return np.sum(ext ** 2 * np.arange(ext.size))


def rows_and_columns(m, u, v):
    stacked = np.r_[m, u[None, :]]                  # 2-D blocks along axis 0
    columns = np.c_[u, v, m.T]                      # 1-D arrays are columns
    return np.sum(stacked ** 3) + np.sum(np.sin(columns) * np.arange(12.0).reshape(3, 4))


def with_directives(u, v, m):
    two_rows = np.r_["0,2", u, v]                   # stacked as rows of a 2-D array
    side = np.r_["-1", m, m * 2.0]
    return np.sum(two_rows ** 2) + np.sum(side * np.arange(12.0).reshape(2, 6))


def imported_r(u, left):
    return np.sum(r_[u, left] ** 3) + np.sum(r_[u] * WEIGHTS[:3])


@pytest.mark.parametrize("f, args", [
    (with_scalars_and_ranges, (U, 0.7, -0.3)),
    (rows_and_columns, (M, U, V)),
    (with_directives, (U, V, M)),
    (imported_r, (U, 0.4)),
])
def test_joined_by_index_tricks(f, args):
    assert_gradient(f, *args)


def test_float32_parts_keep_their_dtype():
    u = U.astype(np.float32)
    g = adtrans.gradient(lambda u, s: np.sum(np.r_[s, u] ** 2), u, np.float32(0.5))
    assert g[0].dtype == np.float32 and type(g[1]) is np.float32


def table_lookup(x, k):
    return x * WEIGHTS[k] + x * WEIGHTS[k:].sum()


def test_a_global_table_indexed_by_an_integer_is_a_constant():
    assert adtrans.gradient(table_lookup, 2.0, 1, wrt=0) == pytest.approx(-1.0 + 1.25)


def grid_of_a_parameter(a):
    xs = np.mgrid[0.0:a:5j]
    return np.sum(xs ** 2)


def test_mgrid_with_a_differentiated_bound_is_a_located_error():
    with pytest.raises(adtrans.DifferentiationError, match=r"np\.mgrid\[\.\.\.\]") as caught:
        adtrans.gradient(grid_of_a_parameter, 2.0)
    assert caught.value.filename.endswith("test_index_tricks.py")
    assert caught.value.lineno == grid_of_a_parameter.__code__.co_firstlineno + 1


def test_generated_code_names_the_joined_array():
    text = adtrans.generated_source(imported_r)
    # Python 3.8 (astunparse) prints the index tuple in parentheses.
    assert "joined = r_[u, left]" in text or "joined = r_[(u, left)]" in text
    assert "concatenated_by_cotangents(d_joined, r_, (u, left))" in text
