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
