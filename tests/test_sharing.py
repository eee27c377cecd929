"""Changes in place: followed by value where adtrans can (np.add.at, out=, copyto), refused at the
user's line where another name would see them (adtrans/sharing.py), and left alone where Python
changes nothing else (floats, fresh arrays, rows of a 1-D array, slices of a list)."""

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from structured_check import assert_gradient

import adtrans
from adtrans import DifferentiationError

rng = np.random.default_rng(7)
X = rng.standard_normal(4)
M = rng.standard_normal((3, 4))


def line_of(f, offset):
    return f.__code__.co_firstlineno + offset


# -- Followed by value ----------------------------------------------------------------------------

def scatter_add_rows(W, v):
    out = np.zeros((3, 4))
    np.add.at(out, [0, 2, 0, 0], W)          # row 0 gets three rows of W
    np.subtract.at(out, (1, [1, 3]), v)      # one place twice: both subtracted
    return np.sum(out ** 2 * np.arange(1.0, 5.0))


def test_add_at_and_subtract_at_with_repeated_places():
    assert_gradient(scatter_add_rows, rng.standard_normal((4, 4)), 0.7)


def add_at_a_changed_argument(x, idx):
    x = x * 2.0
    np.add.at(x, idx, x[:2])                 # reads x before the change, as NumPy does
    return np.sum(np.sin(x))


def test_add_at_reading_the_array_it_adds_into():
    assert_gradient(add_at_a_changed_argument, X, np.array([3, 3]), wrt=(0,))


def copy_then_zero_diagonal(x, v):
    y = np.zeros((3, 3))
    np.copyto(y, np.outer(v, v))
    np.fill_diagonal(y, x[0])
    return np.sum(np.tanh(y) * np.arange(9.0).reshape(3, 3))


def test_copyto_and_fill_diagonal():
    assert_gradient(copy_then_zero_diagonal, X, X[:3])


def fill_diagonal_of_a_wide_matrix(x):
    y = np.outer(x[:2], x)
    np.fill_diagonal(y, 0.5)
    return np.sum(y ** 2)


def test_fill_diagonal_of_a_wide_matrix_writes_what_numpy_writes():
    assert_gradient(fill_diagonal_of_a_wide_matrix, X)


def out_into_a_row_and_a_tuple(x):
    y = np.zeros((2, 4))
    np.tanh(x, out=y[1])
    z = np.ones(4)
    np.multiply(z, x, out=(z,))
    return np.sum(y * z)


def test_out_into_a_row_and_into_a_one_element_tuple():
    assert_gradient(out_into_a_row_and_a_tuple, X)


def out_of_wider_dtype(x):
    y = np.zeros(4)                           # float64: np.exp computes in float32, stores in float64
    np.exp(x, out=y)
    return np.sum(y * y)


def test_out_keeps_its_dtype_and_the_argument_gets_its_own():
    x = X.astype(np.float32)
    value, grad = adtrans.value_with_gradient(out_of_wider_dtype, x)
    assert value == out_of_wider_dtype(x) and value.dtype == np.float64
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, 2 * np.exp(x.astype(np.float64)) ** 2, rtol=1e-6)


def out_into_an_attribute(x, holder):
    np.exp(x, out=holder.buffer)
    return np.sum(holder.buffer)


def out_with_where(x):
    y = np.zeros(4)
    np.exp(x, out=y, where=x > 0)
    return np.sum(y)


@pytest.mark.parametrize("f, line", [(out_into_an_attribute, 1), (out_with_where, 2)])
def test_other_out_is_a_located_error(f, line):
    class Holder:
        buffer = np.zeros(4)

    args = (X, Holder()) if f is out_into_an_attribute else (X,)
    with pytest.raises(DifferentiationError, match="out=") as info:
        adtrans.gradient(f, *args, wrt=(0,))
    assert info.value.lineno == line_of(f, line)


def put_of_constants(x):
    mask = np.zeros(4)
    np.put(mask, [1, 3], 1.0)                # no derivative flows through it: runs as written
    return np.sum(mask * x)


def test_put_of_constants_runs_as_written():
    np.testing.assert_array_equal(adtrans.gradient(put_of_constants, X), [0.0, 1.0, 0.0, 1.0])


def put_of_a_differentiated_value(x):
    y = np.zeros(4)
    np.put(y, [1, 3], x[:2])
    return np.sum(y * x)


def test_put_of_a_differentiated_value_is_refused_at_its_line():
    with pytest.raises(DifferentiationError, match="changes its first argument in place") as info:
        adtrans.gradient(put_of_a_differentiated_value, X)
    assert info.value.lineno == line_of(put_of_a_differentiated_value, 2)


# -- Another name sees the change: refused, at the change ---------------------------------------------

def view_then_change(x):
    y = x * 1.0
    head = y[:2]
    head *= 3.0
    return np.sum(y)


def test_a_view_changed_in_place_is_refused_at_the_change():
    with pytest.raises(DifferentiationError, match="'head' shares its memory with 'y'") as info:
        adtrans.gradient(view_then_change, X)
    assert info.value.lineno == line_of(view_then_change, 3)
    assert "head = head * ..." in str(info.value)


def test_the_check_is_in_the_generated_forward():
    text = adtrans.generated_source(view_then_change)
    assert "refuse_shared_change(head, y, changing_head_changes_y)" in text


def alias_through_a_reshape(x):
    z = np.zeros(6)
    m = z.reshape(2, 3)
    m[1] = x[:3]
    return np.sum(z * np.arange(6.0))


def test_a_reshape_changed_through_is_refused():
    with pytest.raises(DifferentiationError, match="'m' shares its memory with 'z'") as info:
        adtrans.gradient(alias_through_a_reshape, X)
    assert info.value.lineno == line_of(alias_through_a_reshape, 3)


# -- Python changes nothing else: no error, Python's value and gradient ------------------------------

def float_alias(x):
    h = x
    h += 1.0
    return h * x


def test_a_float_alias_changed_in_place_is_no_error():
    assert adtrans.gradient(float_alias, 1.5) == 4.0
    # Known floats get no check at all.
    assert "refuse_shared_change" not in adtrans.generated_source(float_alias, floats=("x",))


def test_a_numpy_scalar_alias_changed_in_place_is_no_error():
    value, grad = adtrans.value_with_gradient(float_alias, np.float64(1.5))
    assert value == float_alias(np.float64(1.5)) and grad == 4.0


def fresh_copy_changed(x):
    h = x.copy()
    h += 1.0
    return np.sum(h * x)


def test_a_fresh_copy_changed_in_place_needs_no_check():
    assert "refuse_shared_change" not in adtrans.generated_source(fresh_copy_changed)
    assert_gradient(fresh_copy_changed, X)


def rows_of_a_vector(x):
    total = 0.0
    for xi in x:
        xi *= 2.0                            # a row of a 1-D array is a number: x is unchanged
        total = total + xi
    return total + np.sum(x ** 2)


def test_the_rows_of_a_vector_are_numbers():
    assert_gradient(rows_of_a_vector, X)


def slice_of_a_list(xs):
    ys = xs[1:]                              # a list's slice is a copy
    ys[0] = ys[0] * 3.0
    return xs[1] + ys[0]


def test_a_slice_of_a_list_is_a_copy():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert adtrans.gradient(slice_of_a_list, [1.0, 2.0, 3.0]) == [0.0, 4.0, 0.0]


def disjoint_halves(y0, k):
    y = y0.copy()
    q = y[:2]
    p = y[2:]
    for _ in range(3):
        p -= k * q                           # changes y, not q
        q += 0.1 * p
    return np.sum(q ** 2) + np.sum(p ** 2)


def test_disjoint_views_read_only_through_themselves():
    assert_gradient(disjoint_halves, X, 1.5)


@dataclass
class Body:
    pos: np.ndarray
    vel: np.ndarray


def move_reading_a_field_first(b0, dt):
    b = Body(b0.pos, b0.vel)                 # the caller's b0 stays as it is
    v = b.vel                                # held by b: setting b.pos does not change it
    b.pos = b.pos + dt * v
    return np.sum(b.pos * v)


def test_setting_a_field_leaves_what_was_read_from_another_alone():
    assert "refuse_shared_change" not in adtrans.generated_source(move_reading_a_field_first)
    assert_gradient(move_reading_a_field_first, Body(X[:2].copy(), X[2:].copy()), 0.1)


def move_through_an_alias(b, dt):
    c = b
    c.pos = c.pos + dt * c.vel
    return np.sum(b.pos)


def test_setting_a_field_through_an_alias_is_refused():
    with pytest.raises(DifferentiationError, match="'c' shares its memory with 'b'") as info:
        adtrans.gradient(move_through_an_alias, Body(X[:2].copy(), X[2:].copy()), 0.1)
    assert info.value.lineno == line_of(move_through_an_alias, 2)


SCATTERED = np.zeros(3)


def scatters_into_a_global_in_a_loop(x, idx):
    s = 0.0
    for _ in range(2):
        np.add.at(SCATTERED, idx, 1.0)          # a global's counts: no derivative, run as written
        s = s + np.sum(x * SCATTERED)
    return s


def test_a_global_changed_in_place_and_read_by_differentiated_code_is_a_located_error():
    # The pullback would read SCATTERED's last value where each pass met the value it had then
    # (d/dx would be [8, 0, 4], not [6, 0, 3]): refused at the line that changes it.
    SCATTERED[:] = 0.0
    with pytest.raises(adtrans.DifferentiationError, match="changes 'SCATTERED' in place") as info:
        adtrans.gradient(scatters_into_a_global_in_a_loop, np.ones(3), np.array([0, 0, 2]))
    assert info.value.lineno == scatters_into_a_global_in_a_loop.__code__.co_firstlineno + 3
