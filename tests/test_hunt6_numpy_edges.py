"""Bug hunt: the NumPy and math rules as users really call them, through whole differentiated functions.

tests/test_rules_numpy.py checks each rule in isolation; here every rule is
reached the way a JAX or PyTorch user writes it: keyword and positional
forms, methods and functions, float32 arguments, 0-d arrays and NumPy
scalars, broadcasting on either side, fancy indexing and assignment with
repeated indices, masks, ties, batched linear algebra, einsum spellings,
and the guarded-sqrt NaN trap. Every gradient is compared with central
differences in float64 (`structured_check.assert_gradient`, which also
checks the value is f's, bit for bit) or with an analytic gradient.
"""

import math
import warnings

import numpy as np
import pytest
from structured_check import assert_gradient

import adtrans
from adtrans import DifferentiationError, check_gradient

rng = np.random.default_rng(0)
A34 = rng.standard_normal((3, 4))
B42 = rng.standard_normal((4, 2))
C234 = rng.standard_normal((2, 3, 4))
V3 = rng.standard_normal(3)
V4 = rng.standard_normal(4)
POS34 = rng.uniform(0.5, 2.0, (3, 4))
SQ = rng.standard_normal((3, 3)) + 3 * np.eye(3)
SQ_BATCH = rng.standard_normal((2, 3, 3)) + 3 * np.eye(3)
SPD = SQ @ SQ.T + np.eye(3)
SPD_BATCH = SQ_BATCH @ np.swapaxes(SQ_BATCH, -1, -2) + np.eye(3)
DISTINCT = np.arange(12.0).reshape(3, 4) * 0.37 % 1.9 - 0.8


def float32_agrees(f, *args, rtol=2e-3, atol=2e-4):
    """f's gradients at float32 `args` are float32 and close to the float64 gradients."""
    positions = tuple(i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype.kind == "f")
    narrow = tuple(a.astype(np.float32) if i in positions else a for i, a in enumerate(args))
    wide = tuple(a.astype(np.float64) if i in positions else a for i, a in enumerate(args))
    value32, g32 = adtrans.value_with_gradient(f, *narrow, wrt=positions)
    assert np.array_equal(np.asarray(value32), np.asarray(f(*narrow)))
    g64 = adtrans.gradient(f, *wide, wrt=positions)
    for i, a, b in zip(positions, g32, g64):
        assert isinstance(a, np.ndarray), f"argument {i}: gradient {type(a)}"
        assert a.dtype == np.float32, f"argument {i}: float32 argument got a {a.dtype} gradient"
        assert a.shape == args[i].shape
        scale = max(1.0, float(np.max(np.abs(b))))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, err_msg=f"argument {i}")


# -- Reductions in keyword and positional forms, methods and functions ------------------------------

def reductions_keyword_forms(x):
    a = np.sum(x, axis=(0, 2), keepdims=True)          # (1, 3, 1)
    b = np.mean(x, axis=-1)                            # (2, 3)
    c = np.max(x, axis=(-1, -3))                       # (3,)
    d = np.sum(x, axis=None)
    e = np.min(x, -2, keepdims=True)                   # (2, 1, 4)
    return np.sum(a * x) + np.sum(b ** 2) + c @ np.arange(3.0) + d + np.sum(e * x[:, :1, :])


def reduction_methods(x):
    return (x.sum(1).sum() * 0.5 + (x.mean(axis=-1) ** 2).sum() + x.max() + x.min(0).sum()
            + x.sum(axis=(0, 1), keepdims=True).sum() + x.mean((0, 2)).prod() + x.std(ddof=1)
            + x.var(axis=-1, keepdims=True).sum() + x.max(axis=-1, keepdims=True).mean())


def shape_methods(x):
    a = x.reshape(-1, 3)                       # (8, 3)
    b = x.reshape((2, -1))                     # (2, 12)
    c = x.transpose(1, 0, 2)                   # (3, 2, 4)
    d = x.T                                    # (4, 3, 2)
    e = x.transpose((2, 0, 1))
    f = x.reshape(6, 4).T.dot(np.arange(6.0))
    return (np.sum(a[::2] ** 2) + np.sum(b[1] * b[0]) + np.sum(c[0] * c[2]) + np.sum(d[1] * d[3])
            + np.sum(e[0] ** 3) + f @ f + x.ravel()[7] * x.flatten()[3] + x.squeeze().sum())


def astype_clip_dot(x, y):
    a = x.astype(np.float64)
    b = x.clip(0, 1)
    c = x.dot(y)
    d = x.clip(min=-0.5).clip(max=0.5)
    return float(np.sum(a ** 2)) + np.sum(b * x) + np.sum(c ** 2) + np.sum(d)


def astype_round_trip(x):
    return np.sum(x.astype(np.float32) * 2.0) + np.sum(x.astype(np.float32).astype(np.float64) ** 2)


def test_reductions_keyword_forms():
    assert_gradient(reductions_keyword_forms, DISTINCT.reshape(1, 3, 4) * np.array([[[1.0]], [[-2.0]]]))


def test_reduction_methods():
    assert_gradient(reduction_methods, C234)


def test_shape_methods():
    assert_gradient(shape_methods, C234)


def test_astype_clip_dot():
    x = np.array([[-0.3, 0.2, 0.7, 1.4], [0.55, -1.2, 0.05, 2.0], [0.31, 0.9, -0.6, 0.45]])
    assert_gradient(astype_clip_dot, x, B42)


def test_astype_round_trip_through_float32():
    # d/dx [2 x32 + x32**2] = 2 + 2 x32 (cast back to float64); finite differences would see float32 steps.
    g = adtrans.gradient(astype_round_trip, A34)
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, 2.0 + 2 * A34.astype(np.float32).astype(np.float64), rtol=1e-6)


# -- float32 arguments ---------------------------------------------------------------------------

def float32_program(x, w, b):
    h = np.tanh(x @ w + b)
    s = h - h.max(axis=-1, keepdims=True)
    p = np.exp(s) / np.exp(s).sum(axis=-1, keepdims=True)
    return -np.mean(np.log(p[:, 0])) + 0.01 * np.sum(w ** 2) + 1e-3 * (x ** 2).sum() + np.sqrt(b @ b + 1.0)


def test_float32_program_keeps_float32_and_agrees():
    float32_agrees(float32_program, A34, B42, np.array([0.1, -0.2]))


def float32_with_float64_scalars(x):
    # NumPy scalars of dtype float64 meet float32 arrays: under NEP 50 (NumPy 2) they widen the result.
    s = np.float64(1.5)
    return np.sum(x * s) + np.sum(x ** np.float64(3.0)) + np.sum(np.exp(x) / s) + np.mean(x) * math.pi


def test_float32_with_float64_scalars():
    float32_agrees(float32_with_float64_scalars, POS34)


def float32_x_squared(x):
    return np.sum(x ** 2) + np.sum(x ** 2.0) + np.sum(x * x) + np.sum(pow(x, 2))


def test_float32_square():
    float32_agrees(float32_x_squared, A34)
    assert_gradient(float32_x_squared, A34)


# -- 0-d arrays, NumPy scalars, Python floats mixed with arrays -----------------------------------

def scalars_mixed(s, t, x):
    return np.sum(s * x + t) + s * t + np.sum(x / s) - np.sum(t - x) + np.sum((2.0 - x) * (x + 3.0)) + 1.0 / t


@pytest.mark.parametrize("s, t", [
    (1.3, -0.7),
    (np.float64(1.3), np.float64(-0.7)),
    (np.array(1.3), np.array(-0.7)),
], ids=["python", "numpy_scalar", "zero_d"])
def test_scalars_of_every_kind(s, t):
    assert_gradient(scalars_mixed, s, t, V4)
    gs, gt, gx = adtrans.gradient(scalars_mixed, s, t, V4)
    for g, a in ((gs, s), (gt, t)):
        assert type(g) is type(a), f"gradient of a {type(a).__name__} is a {type(g).__name__}"
        assert np.shape(g) == np.shape(a)


def scalar_funcs(s):
    return np.exp(s) * np.log(s) + np.sqrt(s) + math.sin(s) + float(np.tanh(s)) + np.maximum(s, 1.0)


@pytest.mark.parametrize("s", [1.7, np.float64(1.7), np.array(1.7)], ids=["python", "numpy_scalar", "zero_d"])
def test_scalar_functions_of_scalars(s):
    assert_gradient(scalar_funcs, s)
    g = adtrans.gradient(scalar_funcs, s)
    assert type(g) is type(s)


def zero_d_float32(s, x):
    return np.sum(s * x) + s ** 2


def test_zero_d_float32():
    s = np.array(1.5, dtype=np.float32)
    gs, gx = adtrans.gradient(zero_d_float32, s, V3.astype(np.float32))
    assert isinstance(gs, np.ndarray) and gs.shape == () and gs.dtype == np.float32
    np.testing.assert_allclose(gs, np.sum(V3) + 3.0, rtol=1e-5)
    np.testing.assert_allclose(gx, np.full(3, 1.5), rtol=1e-6)


# -- Broadcasting in every binary operator --------------------------------------------------------

def broadcast_all_ops(x, col, one, row, s):
    # x (3, 4), col (3, 1), one (1,), row (4,), s float
    return np.sum(
        (x + col) * (one - x) / (row ** 2 + 1.0) + (s - col) ** 2 * one + row / (col ** 2 + 2.0)
        + np.maximum(x, col) + np.minimum(row, col) + np.where(x > 0, col, row) + np.hypot(col, row)
        + np.arctan2(one, x) + np.logaddexp(col, row) + np.power(np.abs(x) + 1.0, one) + (s * row) % 0.7
        + np.clip(x, 0.1 * col - 0.5, 0.1 * row + 0.5))   # bounds with lo <= hi


def test_broadcasting_in_every_binary_op():
    assert_gradient(broadcast_all_ops, DISTINCT, V3[:, None], np.array([0.4]), V4, 0.8, rtol=1e-5, atol=1e-6)


def broadcast_scalar_left(x, s):
    return np.sum(s + x) + np.sum(s - x) + np.sum(s * x) + np.sum(s / (x + 3.0)) + np.sum(s ** (x * 0.1))


def test_scalar_on_either_side():
    assert_gradient(broadcast_scalar_left, POS34, 1.7)
    assert_gradient(broadcast_scalar_left, POS34, np.float64(1.7))
    assert_gradient(broadcast_scalar_left, POS34, np.array(1.7))
    assert_gradient(broadcast_scalar_left, POS34, np.array([[1.7]]))


def augmented_broadcasts(x, row):
    y = x * 1.0
    y += row
    y *= row
    y -= 0.5 * row
    y /= (row ** 2 + 1.0)
    y **= 2
    return np.sum(y)


def test_augmented_assignment_broadcasts():
    assert_gradient(augmented_broadcasts, A34, V4)
    assert_gradient(augmented_broadcasts, A34, V4[None, :])


# -- Integer and boolean indexing, fancy assignment with repeated indices ----------------------------

def gather_repeated(x):
    y = x[[0, 0, 1]]
    z = x[np.array([2, 2, 2, 0])]
    w = x[[0, 2], 1:]
    return np.sum(y ** 2) + np.sum(z * np.arange(1.0, 5.0)[:, None]) + np.sum(w ** 3)


def test_gather_with_repeated_indices():
    assert_gradient(gather_repeated, A34)


def gather_two_index_arrays(x):
    rows = np.array([0, 1, 1, 2])
    cols = np.array([3, 0, 0, 3])
    return np.sum(x[rows, cols] ** 2) + np.sum(x[rows[:, None], cols] * 0.5) + np.sum(x[:, [1, 1]] ** 3)


def test_gather_with_two_index_arrays():
    assert_gradient(gather_two_index_arrays, A34)


def scatter_set_repeated(x, v):
    y = x * 1.0
    y[[0, 0, 2]] = v            # NumPy keeps the last write to row 0: v[1]
    return np.sum(y ** 2 * np.arange(1.0, 5.0))


def test_fancy_assignment_with_repeated_indices_keeps_the_last_write():
    assert_gradient(scatter_set_repeated, A34, rng.standard_normal((3, 4)))


def scatter_add_repeated(x, v):
    y = x * 1.0
    y[[0, 0, 2]] += v           # buffered: row 0 becomes x[0] + v[1] only (not x[0] + v[0] + v[1])
    return np.sum(y ** 2 * np.arange(1.0, 5.0))


def test_fancy_augmented_assignment_with_repeated_indices_is_buffered():
    assert_gradient(scatter_add_repeated, A34, rng.standard_normal((3, 4)))


def right_or_located_error(f, *args, line=None):
    """f's gradient is right (against finite differences), or differentiating f is a located error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", adtrans.ZeroDerivativeWarning)
            adtrans.gradient(f, *args, wrt=tuple(range(len(args))))
    except DifferentiationError as e:
        assert e.filename.endswith("test_hunt6_numpy_edges.py") and e.lineno is not None, str(e)
        if line is not None:
            assert e.lineno == line, str(e)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adtrans.ZeroDerivativeWarning)
        assert_gradient(f, *args)


def scatter_add_embeddings(table, tokens, upstream):
    # The backward of an embedding lookup, written by hand the way NumPy users do: np.add.at.
    grad_table = np.zeros_like(table)
    np.add.at(grad_table, tokens, upstream * 2.0)
    return np.sum(grad_table * table) + np.sum(grad_table ** 2)


def test_np_add_at_in_a_realistic_program():
    tokens = np.array([0, 2, 0, 0, 1])
    right_or_located_error(lambda table, upstream: scatter_add_embeddings(table, tokens, upstream),
                           A34[:, :2], rng.standard_normal((5, 2)))


def np_add_at(x, v):
    y = np.zeros(3)
    np.add.at(y, [0, 0, 2], v)      # unbuffered: y[0] = v[0] + v[1]
    return np.sum(y * x)


def np_multiply_at_active(x):
    y = x * 1.0
    np.multiply.at(y, [0, 0], 3.0)  # y[0] = 9 x[0]
    return np.sum(y ** 2)


def np_copyto(x, v):
    y = np.zeros(3)
    np.copyto(y, v)
    return np.sum(y * x)


def np_put(x, v):
    y = np.zeros(3)
    np.put(y, [0, 2], v[:2])
    return np.sum(y * x)


def np_putmask(x, v):
    y = np.zeros(3)
    np.putmask(y, x > 1.5, v)
    return np.sum(y * x)


def np_fill_diagonal(x):
    y = np.outer(x, x)
    np.fill_diagonal(y, 0.0)
    return np.sum(y)


@pytest.mark.parametrize("f, args", [
    (np_add_at, (np.array([1.0, 2.0, 3.0]), np.array([0.3, -1.2, 0.8]))),
    (np_multiply_at_active, (np.array([1.0, 2.0, 3.0]),)),
    (np_copyto, (np.array([1.0, 2.0, 3.0]), np.array([0.3, -1.2, 0.8]))),
    (np_put, (np.array([1.0, 2.0, 3.0]), np.array([0.3, -1.2, 0.8]))),
    (np_putmask, (np.array([1.0, 2.0, 3.0]), np.array([0.3, -1.2, 0.8]))),
    (np_fill_diagonal, (np.array([1.0, 2.0, 3.0]),)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_minimal_functions_changing_their_first_argument(f, args):
    right_or_located_error(f, *args)


def test_the_method_form_of_a_change_in_place_is_refused_at_its_line():
    # What the functions above should match: y.fill(v) is a located DifferentiationError.
    def fill(x, v):
        y = np.zeros(3)
        y.fill(v[0])
        return np.sum(y * x)

    with pytest.raises(DifferentiationError, match="changes a container in place"):
        adtrans.gradient(fill, V3, V3)


def out_keyword(x, v):
    y = np.zeros(3)
    np.exp(v, out=y)
    z = x * 1.0
    np.add(z, v, out=z)
    np.clip(z, -1.0, 0.5, out=z)
    return np.sum(y * x) + np.sum(z ** 2)


def test_out_keyword_is_followed():
    assert_gradient(out_keyword, np.array([1.0, 2.0, 3.0]), np.array([0.3, -1.2, 0.8]))


def scatter_with_mask_and_slice(x, v):
    y = x.copy()
    y[y < 0] = 0.0
    y[:, 1] = v
    y[1:, ::2] *= 2.0
    return np.sum(y ** 2) + np.sum(y[0] * v[0])


def test_assignment_through_a_mask_a_column_and_a_strided_slice():
    assert_gradient(scatter_with_mask_and_slice, DISTINCT, V3)


def boolean_masks(x):
    pos = x[x > 0]
    neg = x[x < 0]
    w = np.where(x > 0.2, x, 0.0)
    m = x > 0
    return np.sum(pos ** 2) - np.sum(neg ** 3) + np.sum(w * x) + np.sum(np.where(m, x ** 2, -x)) + x[m].mean()


def test_boolean_masks():
    assert_gradient(boolean_masks, DISTINCT)


def masked_rows(x):
    keep = x.sum(axis=1) > 0
    return np.sum(x[keep] ** 2) + np.sum(x[~keep, 0])


def test_boolean_mask_selecting_rows():
    x = DISTINCT.copy()
    assert_gradient(masked_rows, x)


def integer_scalar_index_from_argmax(x):
    i = np.argmax(x)
    j = int(np.argmin(x[0]))
    return x.ravel()[i] * 2 + x[0, j] ** 2


def test_index_from_argmax():
    assert_gradient(integer_scalar_index_from_argmax, DISTINCT)


def ellipsis_and_newaxis(x):
    a = x[..., 1]
    b = x[None, :, np.newaxis, :, 2]
    c = x[1, ..., ::-1]
    return np.sum(a * b[0, :, 0]) + np.sum(c ** 2) + np.sum(x[-1, -2:] ** 3)


def test_ellipsis_newaxis_negative_steps():
    assert_gradient(ellipsis_and_newaxis, C234)


# -- max/min with ties, maximum with ties, abs at 0 -----------------------------------------------

def max_with_ties(x):
    return np.max(x) + x.min() + np.sum(np.max(x, axis=0)) + np.sum(x.max(axis=1, keepdims=True) * 0.5)


def test_max_with_ties_shares_the_cotangent():
    x = np.array([[1.0, 3.0, 3.0], [3.0, -1.0, -1.0]])
    g = adtrans.gradient(max_with_ties, x)
    # np.max: the three 3.0s share 1; x.min(): the two -1.0s share 1;
    # max over axis 0: column maxima 3 (row 1), 3 (row 0), 3 (row 0), each unshared;
    # max over axis 1 with weight 0.5: row 0 two 3s share 0.5, row 1 one 3 gets 0.5.
    expected = np.array([[0.0, 1 / 3 + 1 + 0.25, 1 / 3 + 1 + 0.25], [1 / 3 + 1 + 0.5, 0.5, 0.5]])
    np.testing.assert_allclose(g, expected, rtol=1e-12)


def maximum_ties(x, y):
    return np.sum(np.maximum(x, y)) + np.sum(np.minimum(x, 2.0 * y)) + np.sum(np.maximum(x, 0.0) * 3.0)


def test_maximum_with_ties_splits_in_half():
    x = np.array([1.0, 2.0, 0.0, -1.0])
    y = np.array([1.0, 1.0, 0.0, 0.0])
    gx, gy = adtrans.gradient(maximum_ties, x, y)
    # maximum(x, y): tie at 0 and 2 (halves), x wins at 1, y wins at 3.
    # minimum(x, 2y): 2y = [2, 2, 0, 0]: x wins at 0 and 3, tie at 1 and 2 (halves, y's half doubled).
    # maximum(x, 0.0) * 3: a ReLU, nothing at x == 0: 3 at 0 and 1.
    np.testing.assert_allclose(gx, [0.5 + 1 + 3, 1 + 0.5 + 3, 0.5 + 0.5, 0 + 1], rtol=1e-12)
    np.testing.assert_allclose(gy, [0.5 + 0, 0 + 1.0, 0.5 + 1.0, 1 + 0], rtol=1e-12)


def abs_at_zero(x):
    return np.sum(np.abs(x)) + np.sum(abs(x)) + np.linalg.norm(x, 1) + abs(float(x[0]))


def test_abs_at_zero_is_zero():
    x = np.array([0.0, -2.0, 3.0])
    g = adtrans.gradient(abs_at_zero, x)
    np.testing.assert_array_equal(g, [0.0, -3.0, 3.0])


# -- sort / argsort ----------------------------------------------------------------------------------

def top_two_mean(x):
    s = np.sort(x, axis=-1)
    return np.mean(s[..., -2:]) + np.sum(s[:, 0] ** 2)


def reorder_by_argsort(x, w):
    order = np.argsort(x)
    return np.sum(x[order] * w) + np.sum(np.take_along_axis(x, np.argsort(-x), axis=0)[:2] ** 2)


def argsort_columns(x):
    idx = np.argsort(x, axis=0)
    return np.sum(np.take_along_axis(x, idx, axis=0) * np.arange(3.0)[:, None])


def test_sort_and_argsort():
    assert_gradient(top_two_mean, DISTINCT)
    assert_gradient(reorder_by_argsort, DISTINCT[0] * 3 + DISTINCT[1], np.arange(1.0, 5.0))
    assert_gradient(argsort_columns, DISTINCT)


# -- cumsum / cumprod ------------------------------------------------------------------------------

def cumulative(x):
    return (np.sum(np.cumsum(x, axis=1) ** 2) + np.sum(x.cumsum(0)[-1] * 2) + np.sum(np.cumsum(x)[::3])
            + np.sum(np.cumsum(x, axis=-2) * x))


def test_cumsum_with_axis():
    assert_gradient(cumulative, A34)


def cumulative_product(x):
    return np.sum(np.cumprod(x, axis=1)) + np.sum(x.cumprod())


def test_cumprod_is_right_or_a_located_error():
    try:
        assert_gradient(cumulative_product, POS34 * 0.9)
    except DifferentiationError as e:
        assert "test_hunt6_numpy_edges.py" in str(e) and e.lineno is not None


# -- Linear algebra, batched ---------------------------------------------------------------------------

def gaussian_log_likelihood(cov, x):
    # The log density of N(0, cov) at the rows of x, the way a user writes it.
    n = x.shape[-1]
    chol = np.linalg.cholesky(cov)
    sign, logdet = np.linalg.slogdet(cov)
    alpha = np.linalg.solve(cov, x.T)              # (3, k)
    quad = np.sum(x.T * alpha, axis=0)
    return -0.5 * np.sum(quad) - 0.5 * x.shape[0] * (logdet + n * np.log(2 * np.pi)) + 0.0 * np.sum(chol)


def test_gaussian_log_likelihood():
    # cholesky reads one triangle, so check with a symmetrised parametrisation of cov.
    def f(m, x):
        return gaussian_log_likelihood(m @ m.T + np.eye(3), x)
    assert_gradient(f, SQ * 0.5, A34[:, :3].copy())


def batched_linalg(a, b, v):
    inv = np.linalg.inv(a)                         # (2, 3, 3)
    det = np.linalg.det(a)                         # (2,)
    sign, logdet = np.linalg.slogdet(a)
    x_mat = np.linalg.solve(a, b)                  # b (2, 3, 4)
    x_vec = np.linalg.solve(a[0], v)               # v (3,)
    x_col = np.linalg.solve(a, v[:, None])         # (2, 3, 1), broadcasting b over the batch
    return (np.sum(inv ** 2) + np.sum(det) + np.sum(logdet * np.array([1.0, -2.0])) + np.sum(x_mat * b)
            + x_vec @ v + np.sum(x_col ** 2))


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.0.0",
                    reason="np.linalg.solve's batched right-hand sides follow NumPy 2")
def test_batched_inv_det_slogdet_solve():
    assert_gradient(batched_linalg, SQ_BATCH, rng.standard_normal((2, 3, 4)),
                    V3, rtol=1e-5, atol=1e-6)


def batched_cholesky(m):
    spd = m @ np.swapaxes(m, -1, -2) + np.eye(3)
    l = np.linalg.cholesky(spd)
    logdet = 2.0 * np.sum(np.log(np.diagonal(l, axis1=-2, axis2=-1)), axis=-1)
    return np.sum(logdet * np.array([1.0, 0.5])) + np.sum(l[..., 2, :] ** 2) + np.sum(np.tril(l, -1))


def test_batched_cholesky_through_a_symmetric_product():
    assert_gradient(batched_cholesky, SQ_BATCH * 0.5)


def solve_vector_rhs_batched(a, b):
    # NumPy 2 reads b as a vector only when b.ndim == 1, so a stack of vectors is written b[..., None].
    return np.sum(np.linalg.solve(a, b[..., None])[..., 0] ** 2)


def test_solve_with_a_stack_of_vectors():
    assert_gradient(solve_vector_rhs_batched, SQ_BATCH, A34[:2, :3].copy())


def norms(x, c):
    return (np.linalg.norm(x) + np.linalg.norm(x, axis=1).sum() + np.linalg.norm(x, ord=1, axis=0).sum()
            + np.linalg.norm(x, np.inf) + np.linalg.norm(x, ord="fro") + np.linalg.norm(x[0], ord=3)
            + np.linalg.norm(c, axis=(1, 2)).sum() + np.linalg.norm(c, axis=-1, keepdims=True).sum()
            + np.linalg.norm(x, ord=2, axis=(0, 1)) + np.linalg.norm(x[1], np.inf) + np.linalg.norm(x[2], -1))


def test_norms_with_ord_and_axis():
    assert_gradient(norms, DISTINCT + 0.013 * np.arange(12).reshape(3, 4), C234)


def matrix_power_and_pinv(a):
    return np.sum(np.linalg.matrix_power(a, 3)) + np.sum(np.linalg.pinv(a))


def test_matrix_power_and_pinv_right_or_located():
    right_or_located_error(matrix_power_and_pinv, SQ)


def eigh_and_svd(a):
    w, v = np.linalg.eigh(a + a.T)
    s = np.linalg.svd(a, compute_uv=False)
    return np.sum(w ** 2) + np.sum(s)


def test_eigh_and_svd_right_or_located():
    right_or_located_error(eigh_and_svd, SQ)


# -- einsum, tensordot, outer -----------------------------------------------------------------

def einsum_forms(a, b, c, sq):
    return (np.einsum("ii->", sq) + np.einsum("ii", sq) * 2 + np.sum(np.einsum("ij,jk", a, b))
            + np.sum(np.einsum("...ij,...jk->...ik", c, np.swapaxes(c, -1, -2)))
            + np.sum(np.einsum("bij,jk->bik", c, b) ** 2) + np.einsum("ij,ij->", a, a)
            + np.sum(np.einsum("i...->...", c)) + np.sum(np.einsum("...i", c) ** 2)
            + np.sum(np.einsum("ij->ji", a) * a.T) + np.einsum("i,i", a[0], a[1])
            + np.sum(np.einsum("ij...,j...->i...", a, b) ** 2) + np.sum(np.einsum("ba", a))
            + np.sum(np.einsum("bii->b", np.stack([sq, sq.T]))))


def test_einsum_spellings():
    assert_gradient(einsum_forms, A34, B42, C234, SQ)


def einsum_same_operand_twice(x):
    return np.einsum("i,i->", x, x) + np.sum(np.einsum("ij,kj->ik", x.reshape(2, 2), x.reshape(2, 2)))


def test_einsum_with_the_same_operand_twice():
    assert_gradient(einsum_same_operand_twice, V4)


def einsum_optimize(a, b, c):
    return np.sum(np.einsum("ij,jk,kl->il", a, b, c, optimize=True)) + np.einsum("ij,jk,ki->", a, b, c,
                                                                             optimize="greedy")


def test_einsum_with_optimize():
    assert_gradient(einsum_optimize, A34, B42, rng.standard_normal((2, 3)))


def tensordot_forms(a, b, c):
    return (np.sum(np.tensordot(a, b, axes=1)) + np.sum(np.tensordot(a, a, axes=([1], [1])) ** 2)
            + np.sum(np.tensordot(c, a, axes=[[1, 2], [0, 1]])) + np.sum(np.tensordot(a, b, 0)[1, 2])
            + np.tensordot(a, a) + np.sum(np.tensordot(c, c, axes=([0, 2], [0, 2])))
            + np.sum(np.tensordot(b, c, axes=((0,), (2,))) ** 2) + np.sum(np.tensordot(c, b, axes=(-1, 0))))


def test_tensordot_axes_forms():
    assert_gradient(tensordot_forms, A34, B42, C234)


def outer_forms(u, v, m):
    return np.sum(np.outer(u, v) ** 2) + np.sum(np.outer(m, u)) + np.sum(u[:, None] * v[None, :] * np.outer(u, v))


def test_outer_forms():
    assert_gradient(outer_forms, V3, V4, A34[:2, :2].copy())


def ufunc_outer(u, v):
    return np.sum(np.multiply.outer(u, v) * 0.5) + np.sum(np.subtract.outer(u, v) ** 2)


def test_ufunc_outer_right_or_located():
    right_or_located_error(ufunc_outer, V3, V4)


def matmul_shapes(a, b, v, c):
    return (np.sum(a @ b) + np.sum(v @ a.T) + np.sum(a @ v)
            + np.sum(c @ b) + np.sum(np.matmul(c, v)) + np.sum(v @ c.transpose(0, 2, 1)) + (v @ v) ** 2)


def test_matmul_with_vectors_and_stacks():
    assert_gradient(matmul_shapes, A34, B42, V4, C234)


# -- Joining, splitting and shape functions as users call them ----------------------------------------

def join_and_split(x, v):
    a = np.concatenate([x, x ** 2], axis=-1)                   # (3, 8)
    b = np.concatenate((x, v[None, :]))                        # (4, 4)
    c = np.stack([x, 2 * x, x ** 3], axis=1)                   # (3, 3, 4)
    d = np.stack((v, v * 0.5), -1)                             # (4, 2)
    p, q, r = np.split(a, [2, 5], axis=1)                      # widths 2, 3, 3
    top, bottom = np.split(b, 2)
    parts = np.array_split(v, [1, 3])                          # 1, 2, 1
    uneven = np.array_split(x, 3, axis=1)                      # widths 2, 1, 1
    return (np.sum(p ** 2) + np.sum(q * r) + np.sum(top * bottom) + np.sum(c[:, 1] * c[:, 2]) + np.sum(d ** 2)
            + parts[0][0] * parts[1].sum() + np.sum(parts[2] ** 3) + np.sum(uneven[0]) + np.sum(uneven[2] ** 2))


def test_join_and_split_with_axes_and_index_lists():
    assert_gradient(join_and_split, A34, V4)


def unpack_a_split_in_a_loop(x):
    total = 0.0
    for k, piece in enumerate(np.split(x, 4, axis=1)):
        total = total + (k + 1) * np.sum(piece ** 2)
    for row in np.split(x, 3):
        total = total + np.sum(np.sin(row))
    return total


def test_split_pieces_iterated():
    assert_gradient(unpack_a_split_in_a_loop, A34)


def shape_functions(x, v):
    return (np.sum(np.tile(v, 3) * np.arange(12.0)) + np.sum(np.tile(x, (2, 1, 2))[1] ** 2)
            + np.sum(np.repeat(x, [1, 2, 0], axis=0) ** 2) + np.sum(np.repeat(v, 2) * np.arange(8.0))
            + np.sum(x.repeat(3, axis=1)[:, ::5]) + np.sum(np.roll(x, -1, axis=0) * x)
            + np.sum(np.roll(v, 2) * np.arange(4.0)) + np.sum(np.roll(x, (1, -2), axis=(0, 1)) * x ** 2)
            + np.sum(np.flip(x) * x) + np.sum(np.flip(x, axis=-1)[0] * v) + np.sum(x[::-1, ::-1] * x)
            + np.sum(np.expand_dims(v, axis=0) * x) + np.sum(np.expand_dims(x, (0, -1))[0, :, 1, 0] ** 2)
            + np.sum(np.squeeze(x[:, 1:2]) ** 2) + np.sum(np.squeeze(x[None, 1:2], axis=(0, 1)) * v)
            + np.sum(np.broadcast_to(v, (3, 4)) * x) + np.sum(np.broadcast_to(x[:, :1], (3, 4)) ** 2))


def test_shape_functions():
    assert_gradient(shape_functions, A34, V4)


def padded(x, c):
    return (np.sum(np.pad(x, 1) ** 2) + np.sum(np.pad(x, ((1, 2), (0, 1)), mode="reflect") * 0.5)
            + np.sum(np.pad(x, 2, mode="symmetric") ** 2) + np.sum(np.pad(x, (1, 2), mode="edge") * np.arange(7.0))
            + np.sum(np.pad(x, [(0, 0), (2, 2)], mode="wrap") ** 3) + np.sum(np.pad(x, 1, constant_values=c) ** 2)
            + np.sum(np.pad(x, ((1, 1), (1, 1)), "constant", constant_values=(1.0, 2.0)) ** 2))


def test_pad_modes():
    assert_gradient(padded, A34, 0.7)


def pad_per_side_values(x, c):
    return np.sum(np.pad(x, ((1, 1), (1, 1)), "constant", constant_values=(c, 2.0 * c)) ** 2)


def test_pad_per_side_differentiable_constant_values():
    right_or_located_error(pad_per_side_values, A34, 0.7)


def padded_unsupported_mode(x):
    return np.sum(np.pad(x, 1, mode="maximum") ** 2)


def test_pad_mode_without_derivative_is_not_silent():
    # docs/rules.md: "other modes raise NotImplementedError in the pullback"
    with pytest.raises((NotImplementedError, DifferentiationError)):
        adtrans.gradient(padded_unsupported_mode, A34)


def linspace_constants(x):
    t = np.linspace(0.0, 1.0, 4)
    grid = np.linspace(-1, 1, 3)[:, None]
    w = np.arange(4) / 3.0
    return np.sum(x * t) + np.sum(x * grid) + np.sum(x ** 2 * w) + np.sum(np.ones_like(x) * x)


def test_linspace_and_arange_constants():
    assert_gradient(linspace_constants, A34)


def linspace_of_a_parameter(a, b):
    t = np.linspace(a, b, 5)
    return np.sum(t ** 2)


def test_linspace_with_differentiable_ends_right_or_located():
    right_or_located_error(linspace_of_a_parameter, 0.5, 2.0)


# -- Array methods dispatched at run time ------------------------------------------------------------

def rank_weighted_loss(x):
    # Weight each score by its rank (a constant), the way a user writes it with methods.
    ranks = x.argsort().argsort()
    best = x.argmax()
    return np.sum(x * ranks) + x[best] * 2.0


def test_rank_weights_from_argsort_method_are_constants():
    x = np.array([0.3, -1.2, 0.8, 0.1])
    g = adtrans.gradient(rank_weighted_loss, x)
    np.testing.assert_array_equal(g, np.argsort(np.argsort(x)) + 2.0 * (np.arange(4) == np.argmax(x)))


def argmax_method_in_arithmetic(x):
    return np.sum(x[:, 0] * x.argmax(axis=1))


def argmax_function_in_arithmetic(x):
    return np.sum(x[:, 0] * np.argmax(x, axis=1))


def all_method_in_arithmetic(x):
    return np.sum(x * x.all())


@pytest.mark.parametrize("f", [argmax_method_in_arithmetic, all_method_in_arithmetic],
                         ids=lambda f: f.__name__)
def test_minimal_constant_method_results_in_arithmetic(f):
    assert_gradient(f, DISTINCT)


def test_the_function_form_of_argmax_in_arithmetic_works():
    assert_gradient(argmax_function_in_arithmetic, DISTINCT)


def cumprod_method(x):
    return np.sum(x.cumprod(axis=1))


def round_method(x):
    return np.sum(x.round(1) * x)


@pytest.mark.parametrize("f", [cumprod_method, round_method], ids=lambda f: f.__name__)
def test_minimal_unknown_array_method_is_located(f):
    right_or_located_error(f, POS34)


# -- A nested def in one branch, another function in the other --------------------------------------

def activation_chosen_by_branch(x, slope=None):
    if slope is None:
        act = np.tanh
    else:
        k = slope * 0.5

        def act(t):
            return np.where(t > 0, t, k * t)
    return np.sum(act(x) ** 2)


def test_activation_chosen_by_branch_without_the_closure():
    assert_gradient(lambda x: activation_chosen_by_branch(x), A34)


def test_activation_chosen_by_branch_with_the_closure():
    assert_gradient(lambda x: activation_chosen_by_branch(x, 0.2), A34)


def vectorized_square(x):
    sq = np.vectorize(lambda t: t * t)
    return np.sum(sq(x))


@pytest.mark.xfail(strict=True, reason="BUG: np.vectorize(f)(x) is differentiated through numpy's own source "
                                       "and refused at a 'raise' in numpy's vectorize._get_ufunc_and_otypes: "
                                       "located in numpy's file, not at the user's call (the closure-in-one-"
                                       "branch crash before it is fixed)")
def test_np_vectorize_right_or_located():
    right_or_located_error(vectorized_square, A34)


# -- Reductions with where= and initial= ---------------------------------------------------------------

def masked_mean(x, mask):
    return np.mean(x ** 2, where=mask) + np.sum(x, where=mask, initial=0.0) + x.sum(where=~mask)


def test_masked_reductions_with_where():
    mask = DISTINCT > 0
    assert_gradient(lambda x: masked_mean(x, mask), DISTINCT)


# -- Powers: negative bases, integer exponents, exponent 0 -----------------------------------------

def powers_of_negative_bases(x):
    return (np.sum(x ** 3) + np.sum(np.power(x, 2)) + np.sum(x ** -1) + np.sum(x ** -2.0) + np.sum((-x) ** 4)
            + np.sum(np.power(x, np.array([1, 2, 3, 5]))) + np.sum(pow(x, 3)) + np.sum(np.float_power(x, 3))
            + np.sum(x ** np.int64(3)) + np.sum(np.square(x) * np.reciprocal(x)))


def test_powers_of_negative_bases_with_integer_exponents():
    x = np.array([-1.3, -0.4, 0.7, 2.1])
    assert_gradient(powers_of_negative_bases, x)


def polynomial(x, c):
    total = 0.0
    for n in range(len(c)):
        total = total + c[n] * x ** n
    return total


def polynomial_features(x, c):
    features = x[:, None] ** np.arange(3)              # a Vandermonde matrix: 1, x, x**2
    return np.sum(features @ c)


def test_polynomial_away_from_zero():
    c = np.array([1.0, 2.0, 3.0])
    assert_gradient(polynomial, 0.5, c)
    assert_gradient(polynomial_features, np.array([0.5, -1.5]), c)


def test_polynomial_at_zero():
    c = np.array([1.0, 2.0, 3.0])
    # d/dx (c0 + c1 x + c2 x^2) = c1 + 2 c2 x: 2 at x = 0; w.r.t. c: (1, x, x^2) = (1, 0, 0).
    gx, gc = adtrans.gradient(polynomial, 0.0, c)
    assert gx == 2.0
    np.testing.assert_array_equal(gc, [1.0, 0.0, 0.0])


def test_polynomial_features_at_zero():
    c = np.array([1.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        g = adtrans.gradient(polynomial_features, np.array([0.0, 0.5]), c, wrt=0)
    np.testing.assert_allclose(g, [2.0, 2.0 + 2 * 3.0 * 0.5], rtol=1e-12)


def minimal_power_zero(x):
    return np.sum(np.power(x, 0))


def test_minimal_power_zero_at_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        g = adtrans.gradient(minimal_power_zero, np.array([0.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 0.0])


# -- Elementwise maths near their edges ----------------------------------------------------------------

def edge_functions(x, y):
    return (np.sum(np.log1p(x ** 2)) + np.sum(np.expm1(-x)) + np.sum(np.hypot(x, y)) + np.sum(np.arctan2(y, x))
            + np.sum(np.logaddexp(x, 2.0 * y)) + np.sum(np.log1p(np.exp(-np.abs(x))))
            + np.sum(np.logaddexp(x, -np.inf)) + np.sum(np.expm1(1e-9 * x)) * 1e6)


def test_log1p_expm1_hypot_arctan2_logaddexp():
    assert_gradient(edge_functions, DISTINCT + 0.05, A34)


def test_logaddexp_with_minus_infinity_gives_the_other_side_everything():
    def f(x):
        return np.sum(np.logaddexp(x, -np.inf) * np.arange(1.0, 4.0))
    g = adtrans.gradient(f, np.array([-1.0, 0.0, 3.0]))
    np.testing.assert_allclose(g, [1.0, 2.0, 3.0], rtol=1e-15)


def stable_softplus(x):
    return np.sum(np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))))


def test_stable_softplus_away_from_zero():
    x = np.array([-3.0, -0.5, 0.5, 40.0])
    np.testing.assert_allclose(adtrans.gradient(stable_softplus, x), 1 / (1 + np.exp(-x)), rtol=1e-12)


def test_stable_softplus_at_zero():
    # softplus(x) = max(x, 0) + log1p(exp(-|x|)) is smooth; its derivative is sigmoid(x), 1/2 at 0.
    # Decided (docs/rules.md, "Conventions at kinks"): adtrans keeps its ReLU convention, np.maximum(x, 0)
    # gives x nothing at 0, and |x|' = 0 there, so this spelling gets 0 at 0. JAX gets 0 too (jnp.maximum
    # splits the tie, 1/2, but jnp.abs' derivative at 0 is 1: 1/2 - 1/2); PyTorch gets 1/2. Spelled
    # np.logaddexp(0.0, x), softplus has derivative sigmoid(x) everywhere, 1/2 at 0.
    g = adtrans.gradient(stable_softplus, np.array([0.0]))
    np.testing.assert_array_equal(g, [0.0])
    g = adtrans.gradient(lambda x: np.sum(np.logaddexp(0.0, x)), np.array([0.0]))
    np.testing.assert_allclose(g, [0.5], rtol=1e-12)


# -- The guarded sqrt: NaN gradients through np.where (the JAX FAQ trap) --------------------------------

def guarded_sqrt(x):
    return np.sum(np.where(x > 0, np.sqrt(x), 0.0))


def double_where_sqrt(x):
    safe = np.where(x > 0, x, 1.0)
    return np.sum(np.where(x > 0, np.sqrt(safe), 0.0))


def test_guarded_sqrt_gives_nan_where_jax_does():
    # JAX's FAQ ("gradients contain NaN where using where"): jnp.where(x > 0, jnp.sqrt(x), 0.) has a NaN
    # gradient at x == 0 (0 cotangent times sqrt's infinite derivative) and at x < 0 (sqrt(x) is nan).
    # adtrans behaves the same: its sqrt rule is d_y / (2 * y), 0 / 0 and 0 / nan. A JAX user expects this.
    x = np.array([-1.0, 0.0, 4.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value, g = adtrans.value_with_gradient(guarded_sqrt, x)
        assert value == guarded_sqrt(x)
    assert np.isnan(g[0]) and np.isnan(g[1])
    assert g[2] == 0.25


def test_double_where_sqrt_is_exact():
    # The fix JAX's FAQ recommends works in adtrans too: the masked places get exactly 0.
    x = np.array([-1.0, 0.0, 4.0])
    g = adtrans.gradient(double_where_sqrt, x)
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.25])


def distance_matrix(points):
    diff = points[:, None, :] - points[None, :, :]
    sq = np.sum(diff ** 2, axis=-1)
    safe = np.where(sq > 0, sq, 1.0)
    return np.sum(np.where(sq > 0, np.sqrt(safe), 0.0))


def test_pairwise_distances_with_zero_diagonal():
    pts = rng.standard_normal((4, 2))
    assert_gradient(distance_matrix, pts)


def test_norm_at_zero_is_zero_but_sqrt_of_sum_is_nan():
    def via_norm(x):
        return np.linalg.norm(x)

    def via_sqrt(x):
        return np.sqrt(np.sum(x ** 2))

    z = np.zeros(3)
    np.testing.assert_array_equal(adtrans.gradient(via_norm, z), np.zeros(3))     # docs: a subgradient
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.all(np.isnan(adtrans.gradient(via_sqrt, z)))                    # as in JAX: 0 * inf


# -- logsumexp and softmax idioms ---------------------------------------------------------------------

def logsumexp_scalar(x):
    m = x.max()
    return m + np.log(np.exp(x - m).sum())


def logsumexp_rows(x):
    m = np.max(x, axis=-1, keepdims=True)
    return np.sum(m[..., 0] + np.log(np.sum(np.exp(x - m), axis=-1)))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_loss(x, w):
    return np.sum(softmax(x) * w) + np.sum(softmax(x, axis=0) ** 2)


def test_logsumexp_is_softmax_even_with_ties_in_the_max():
    x = np.array([1.0, 3.0, 3.0, -2.0])          # the max is tied: the tie convention must not matter
    g = adtrans.gradient(logsumexp_scalar, x)
    np.testing.assert_allclose(g, np.exp(x) / np.exp(x).sum(), rtol=1e-14)
    xs = np.array([[1.0, 3.0, 3.0], [0.5, 0.5, 0.5]])
    g = adtrans.gradient(logsumexp_rows, xs)
    np.testing.assert_allclose(g, np.exp(xs) / np.exp(xs).sum(axis=1, keepdims=True), rtol=1e-14)


def test_softmax_with_keepdims_on_both_axes():
    assert_gradient(softmax_loss, A34, POS34)
    float32_agrees(softmax_loss, A34, POS34)


# -- out= and writing through views --------------------------------------------------------------------

def out_into_a_slice(x, v):
    y = np.zeros(4)
    np.exp(v, out=y[1:])
    return np.sum(y * x)


def out_as_a_tuple(x, v):
    y = np.zeros(3)
    np.sin(v, out=(y,))
    return np.sum(y * x)


@pytest.mark.parametrize("f, args", [
    (out_into_a_slice, (np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.3, -1.2, 0.8]))),
    (out_as_a_tuple, (np.array([1.0, 2.0, 3.0]), np.array([0.3, -1.2, 0.8]))),
], ids=["slice", "tuple"])
def test_minimal_out_that_is_not_a_plain_local(f, args):
    right_or_located_error(f, *args)


def out_of_another_dtype(x, v):
    y = np.zeros(3)                 # float64: np.exp(v, out=y) computes in float32, stores in float64
    np.exp(v, out=y)
    return np.sum(y * x)


def test_out_keeps_the_dtype_of_the_out_array():
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    v = np.array([0.3, -1.2, 0.8], dtype=np.float32)
    value, g = adtrans.value_with_gradient(out_of_another_dtype, x, v)
    expected = out_of_another_dtype(x, v)
    assert value.dtype == expected.dtype and value == expected
    assert g[0].dtype == np.float32 and g[1].dtype == np.float32


def accumulate_rows_through_a_view(x, v):
    out = np.zeros((2, 3))
    for i in range(2):
        row = out[i]                # a view: changing it changes out
        row += v * (i + 1)
    return np.sum(out * x)


def write_through_transpose(x, v):
    y = np.zeros((3, 2))
    yt = y.T
    yt[0] = v
    return np.sum(y * x.T)


def out_into_a_view(x, v):
    y = np.zeros(3)
    w = y[:2]
    np.multiply(v[:2], 2.0, out=w)
    return np.sum(y * x)


@pytest.mark.parametrize("f, args", [
    (accumulate_rows_through_a_view, (np.arange(1.0, 7.0).reshape(2, 3), np.array([0.3, -1.2, 0.8]))),
    (write_through_transpose, (np.arange(1.0, 7.0).reshape(2, 3), np.array([0.3, -1.2, 0.8]))),
    (out_into_a_view, (np.array([1.0, 2.0, 3.0]), np.array([0.3, -1.2, 0.8]))),
], ids=lambda v: getattr(v, "__name__", ""))
def test_changes_through_views_of_locals(f, args):
    right_or_located_error(f, *args)


def chained_subscript_assignment(x, v):
    y = np.zeros((2, 3))
    y[0][1] = v[0]
    return np.sum(y * x)


def test_chained_subscript_assignment_works_by_value():
    # Was "is a located error"; y[0][1] = v now runs as y = with_item(y, 0, with_item(y[0], 1, v)),
    # which gives Python's value (docs/index.md, Decisions), so it is checked to be right instead.
    x = A34[:2, :3].copy()
    right_or_located_error(chained_subscript_assignment, x, V3)
    expected = np.zeros(3)
    expected[0] = x[0, 1]
    np.testing.assert_allclose(adtrans.gradient(chained_subscript_assignment, x, V3, wrt=1), expected)


# -- Two lambdas on one line, each calling NumPy -------------------------------------------------------

ACTIVATIONS = {"tanh": lambda z: np.tanh(z), "sin": lambda z: np.sin(z)}


def activation_loss(x, act):
    return np.sum(act(x))


def test_activations_in_a_dict_of_lambdas_on_one_line():
    x = np.array([0.1, 0.2, -0.7])
    g_tanh = adtrans.gradient(activation_loss, x, ACTIVATIONS["tanh"], wrt=0)
    g_sin = adtrans.gradient(activation_loss, x, ACTIVATIONS["sin"], wrt=0)
    np.testing.assert_allclose(g_tanh, 1 - np.tanh(x) ** 2, rtol=1e-14)
    np.testing.assert_allclose(g_sin, np.cos(x), rtol=1e-14)


def test_minimal_two_numpy_lambdas_on_one_line():
    fs = [lambda x: np.sum(x ** 3), lambda x: np.sum(x ** 4)]
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(adtrans.gradient(fs[1], x), 4 * x ** 3, rtol=1e-14)


def test_two_plain_lambdas_on_one_line_are_told_apart():
    fs = [lambda x: x ** 3, lambda x: x ** 4]
    assert adtrans.gradient(fs[0], 2.0) == 12.0
    assert adtrans.gradient(fs[1], 2.0) == 32.0


# -- More assignment forms, einsum and solve broadcasting, mixed dtypes (all right) ---------------------

def augmented_fancy_forms(x, w, u):
    y = x * 1.0
    y[[0, 0, 2]] *= w                        # buffered: row 0 is multiplied by w[1] only
    y[[0, 0, 1], [1, 1, 3]] -= u             # buffered: (0, 1) gets -u[1]
    m = x > 0
    y[m] = w[m] * 3.0
    y[-1, -2:] = u[:2]
    y[..., 1] += 0.5 * u
    return np.sum(y ** 2)


def test_augmented_fancy_and_mask_assignments():
    assert_gradient(augmented_fancy_forms, DISTINCT, rng.standard_normal((3, 4)), V3)


def einsum_and_solve_broadcasting(a, b, m, c):
    return (np.sum(np.einsum("...i,...i->...", a, b) ** 2)            # (2, 1, 3) with (4, 3)
            + np.sum(np.einsum("ij,ij->i", b, a[0, :, :].repeat(4, axis=0)) ** 2)
            + np.sum(np.linalg.solve(m, c[0, :, 0]) ** 2)             # a stack of matrices, one vector
            + np.sum(np.linalg.solve(m[0], c) ** 2)                   # one matrix, a stack of right sides
            + np.sum((b.T[:3, :3] @ c) ** 2))                         # (3, 3) @ (2, 3, 4)


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "2.0.0",
                    reason="np.linalg.solve's batched right-hand sides follow NumPy 2")
def test_einsum_and_solve_broadcasting():
    assert_gradient(einsum_and_solve_broadcasting, rng.standard_normal((2, 1, 3)), rng.standard_normal((4, 3)),
                    SQ_BATCH, rng.standard_normal((2, 3, 4)))


def mixed_precision(x32, w64, s32):
    return np.sum(x32 * w64) + np.sum((x32 @ w64.T) ** 2) + s32 * np.sum(x32) + np.sum(w64 * s32)


def test_mixed_precision_keeps_each_arguments_dtype():
    x32, s32 = A34.astype(np.float32), np.float32(1.5)
    gx, gw, gs = adtrans.gradient(mixed_precision, x32, A34, s32)
    assert gx.dtype == np.float32 and gw.dtype == np.float64 and type(gs) is np.float32
    gx64, gw64, gs64 = adtrans.gradient(mixed_precision, x32.astype(np.float64), A34, float(s32))
    np.testing.assert_allclose(gx, gx64, rtol=1e-4)
    np.testing.assert_allclose(gw, gw64, rtol=1e-4)
    np.testing.assert_allclose(gs, gs64, rtol=1e-4)


def row_norms(x):
    return np.sum(np.linalg.norm(x, axis=1)) + np.sum(np.linalg.norm(x, ord=1, axis=-1) * 2.0) \
        + np.sum(np.linalg.norm(x, ord=np.inf, axis=1) * 3.0)


def test_row_norms_with_a_zero_row():
    x = np.array([[0.0, 0.0, 0.0], [3.0, -4.0, 0.0]])
    # 2-norm: 0 at the zero row (docs), x / |x| = (0.6, -0.8, 0) otherwise;
    # 1-norm: sign(x), 0 at 0; inf-norm: the largest |x| (here -4) gets sign: -1.
    expected = np.array([[0.0, 0.0, 0.0], [0.6 + 2.0, -0.8 - 2.0 - 3.0, 0.0]])
    np.testing.assert_allclose(adtrans.gradient(row_norms, x), expected, rtol=1e-14)


def builtin_reductions_of_an_array(x):
    return max(x) + min(x) + sum(x) + sum(x * x)


def test_builtin_max_min_sum_over_a_1d_array():
    x = np.array([1.0, 3.0, 3.0, -2.0])
    # max: the tied 3.0s share 1 (docs); min: -2 gets 1; sum: 1 each; sum(x*x): 2x.
    expected = np.array([0.0, 0.5, 0.5, 1.0]) + 1.0 + 2 * x
    np.testing.assert_allclose(adtrans.gradient(builtin_reductions_of_an_array, x), expected, rtol=1e-14)
