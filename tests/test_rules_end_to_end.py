"""The built-in rules used through the compiler: small functions, checked with check_gradient.

The rule tests evaluate each rule eagerly; these differentiate ordinary
Python functions, so the rules are inlined into generated code (or, for
methods of arguments, dispatched), and check the result numerically.
"""

import math

import numpy as np
import pytest

import adtrans
from adtrans import check_gradient

rng = np.random.default_rng(3)
A = rng.standard_normal((3, 4))
B = rng.standard_normal((4, 2))
C3 = rng.standard_normal((2, 3, 4))
COL = rng.standard_normal((3, 1))
ROW = rng.standard_normal((1, 4))
VEC = rng.standard_normal(4)
POS = rng.uniform(0.5, 2.0, (3, 4))
UNIT = rng.uniform(-0.9, 0.9, (3, 4))
SQ = rng.standard_normal((3, 3)) + 3 * np.eye(3)
SPD = SQ @ SQ.T + np.eye(3)
DISTINCT = np.arange(12.0).reshape(3, 4) * 0.37 % 1.9 - 0.8


# -- math and operators on Python floats ------------------------------------------

def trig(x, y):
    return math.sin(x) * math.cos(y) + math.tan(x / 4) - math.atan2(y, x) + math.hypot(x, y)


def inverse_trig(x):
    return math.asin(x) + math.acos(x / 2) + math.atan(x) + math.asinh(x) + math.atanh(x / 2)


def hyperbolic(x):
    return math.sinh(x) * math.cosh(x) + math.tanh(x) + math.acosh(x + 2)


def exps_and_logs(x, base):
    return (math.exp(x) + math.expm1(x) + math.log(x) + math.log(x, base) + math.log2(x)
            + math.log10(x) + math.log1p(x) + math.sqrt(x))


def powers(x, y):
    return x ** 2 + x ** 3 + y ** x + math.pow(x, 2) + math.pow(x, y) + pow(x, 2) + pow(y, x) + 1 / x - x % 0.7


def special(x):
    return math.erf(x) + math.erfc(x) + math.gamma(x) + math.lgamma(x) + math.degrees(x) + math.radians(x)


def signs_and_choices(x, y):
    return abs(x) + math.fabs(y) + max(x, y) + min(x, y, 0.25) + math.copysign(x, -1.0) - -x + +y


def sequences(x, y):
    a = [x, y, x * y]
    b = (x, 2 * y)
    c = [y, x * y, x]
    d = [x * 3, y]
    return sum(a) + math.fsum(b) + max(c) + min(d) + sum(sorted([x, y, x * y])[:2]) * 2


def remainders(x, y):
    return math.fmod(x, y) + math.remainder(x, y) + math.ldexp(x, 2) + float(y)


# -- NumPy -----------------------------------------------------------------------------

def ufuncs(x):
    return np.sum(np.exp(x) + np.log(np.abs(x) + 1) + np.sin(x) * np.cos(x) + np.tanh(x) + np.sqrt(x * x + 1)
                  + np.square(x) + np.expm1(x) + np.log1p(x * x) + np.arctan(x) + np.sinh(x) + np.cosh(x) / 3)


def more_ufuncs(x):
    return np.sum(np.exp2(x) + np.log2(x) + np.log10(x) + np.cbrt(x) + np.reciprocal(x) + np.arcsinh(x)
                  + np.arccosh(x + 1) + np.power(x, 1.5) + np.power(x, 2) + np.float_power(x, 0.5)
                  + np.negative(x) + np.positive(x) + np.deg2rad(x) + np.rad2deg(x) / 100)


def bounded_ufuncs(u):
    return np.sum(np.arcsin(u) + np.arccos(u) + np.arctanh(u) + np.tan(u))


def binary_ufuncs(x, col, row):
    return np.sum(np.add(x, row) * np.subtract(col, row) + np.multiply(x, 2.0) + np.divide(x, row * row + 1)
                  + np.arctan2(col, row) + np.hypot(x, col) + np.logaddexp(x, row) + np.logaddexp2(col, x))


def broadcasting_operators(x, col, row, s):
    return np.sum((x + col) * row - s / (row * row + 1) + (col - 2.0) ** 2 + s * x)


def choices(x, row):
    return np.sum(np.maximum(x, 0.0) + np.minimum(x, row) + np.where(x > 0, x, row) + np.clip(x, -0.5, 0.5)
                  + x.clip(min=-0.2) + np.abs(x))


def reductions(x):
    return (np.sum(x) + np.mean(x, axis=0).sum() + np.max(x, axis=1).sum() + np.min(x) + np.prod(x[0])
            + np.std(x) + np.var(x, axis=1, ddof=1).sum() + np.cumsum(x, axis=1)[:, -1].sum()
            + np.sum(np.mean(x, axis=1, keepdims=True) * x) + np.amax(x) + np.amin(x, axis=0)[1])


def methods(x):
    return (x.sum() + x.mean(axis=1).sum() + x.max() + x.min(axis=0).sum() + x.prod(axis=1).sum()
            + x.std() + x.var(axis=0).sum() + x.cumsum()[-1] + x.T.sum(axis=0)[2] + x.dot(x.T).sum()
            + x.reshape(2, 6)[1, 2] + x.reshape((4, 3))[3, 0] + x.ravel()[5] + x.flatten()[7]
            + x.transpose(1, 0)[1, 2] + x.copy().sum() + x.astype(np.float64).sum() + x.squeeze().sum()
            + x.clip(-0.5, 0.5).sum() + x.cumsum(axis=0)[2, 1])


def logsumexp(x):
    m = np.max(x, axis=1, keepdims=True)
    return np.sum(np.log(np.sum(np.exp(x - m), axis=1)) + m[:, 0])


def softmax_cross_entropy(logits):
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    return -np.mean(log_probabilities[:, 0])


def products(x, b, v):
    return (np.sum(np.dot(x, b)) + np.sum(np.matmul(x, b) ** 2) + np.sum(x @ v) + v @ v
            + np.sum(np.outer(v, x[0])) + np.sum(np.tensordot(x, b, axes=1)) + np.einsum("ij,jk->", x, b)
            + np.sum(np.einsum("ij,j->i", x, v) ** 2) + np.inner(v, v))


def shapes(x, c):
    return (np.sum(np.reshape(x, (4, 3))[1]) + np.sum(np.transpose(c, (2, 0, 1))[0]) + np.sum(np.transpose(x)[0])
            + np.sum(np.squeeze(x[:, :1])) + np.sum(np.expand_dims(x, 0)[0, 1]) + np.sum(np.ravel(x)[:5])
            + np.sum(np.swapaxes(c, 0, 2)[1]) + np.sum(np.moveaxis(c, 0, -1)[0]) + np.sum(np.flip(x, 1)[0])
            + np.sum(np.roll(x, 1, axis=1)[0]) + np.sum(np.broadcast_to(x[0], (2, 4)) * c[:, 0])
            + np.sum(np.tile(x, (2, 1))[3:]) + np.sum(np.repeat(x, 2, axis=0)[:3]) + np.sum(np.pad(x, 1)[0:2] ** 2)
            + np.sum(np.triu(x)) + np.trace(x[:, :3]) + np.sum(np.diag(x[0])) + np.sum(np.diff(x, axis=1) ** 2))


def joining(x, v):
    doubled = np.concatenate([x, x * 2], axis=0)
    stacked = np.stack([v, v * v, np.sin(v)], axis=0)
    return (np.sum(doubled[1:4] * doubled[2:5]) + np.sum(stacked[1:] * x[1:]) + np.sum(np.hstack([x, x[:, :1]]) ** 2)
            + np.sum(np.vstack([x, v]) ** 3) + np.sum(np.array([v[0], v[1] * 2]) ** 2))


def indexing_and_sorting(x):
    return (np.sum(np.sort(x, axis=1)[:, -1]) + np.sum(np.take(x, [0, 2, 2], axis=0) ** 2)
            + np.sum(np.take_along_axis(x, np.array([[1], [0], [3]]), axis=1)))


def linear_algebra(a, spd, v):
    sign, logdet = np.linalg.slogdet(a)
    return (np.sum(np.linalg.inv(a)) + np.linalg.det(a) + logdet + np.sum(np.linalg.solve(a, v) ** 2)
            + np.sum(np.linalg.cholesky(spd)) + np.linalg.norm(v) + np.linalg.norm(a, "nuc") + np.linalg.norm(a, 1))


def scalar_numpy(x):
    return float(np.exp(x) + np.log(x) * np.sin(x)) + np.float64(x) * 2


def list_of_floats(x, y):
    return np.sum(np.array([x, y, x * y]) ** 2) + np.mean(np.stack([x, y]))


def tuple_operands_of_array_arithmetic(x, y):
    # A tuple given to NumPy arithmetic is an array-like value, not a shape.
    return np.sum(np.ones(2) + (x, y)) + np.sum(VEC[:2] * (y, x * x))


def full_and_float_constructors(s):
    return np.sum(np.full((2, 3), s) * np.full_like(A, s)[:2, :3]) + np.float64(s)


def zero_safe(x):
    return np.sum(np.where(x > 0, np.sqrt(np.abs(x)) + 0, 0.0)) + np.linalg.norm(x - x)


CASES = [
    (trig, (0.7, -1.3)), (inverse_trig, (0.4,)), (hyperbolic, (0.8,)), (exps_and_logs, (1.7, 3.0)),
    (powers, (1.3, 2.2)), (special, (2.7,)), (signs_and_choices, (-0.7, 1.1)), (sequences, (0.6, 1.9)),
    (remainders, (7.3, 2.1)),
    (ufuncs, (A,)), (more_ufuncs, (POS,)), (bounded_ufuncs, (UNIT,)), (binary_ufuncs, (A, COL, ROW)),
    (broadcasting_operators, (A, COL, ROW, 1.5)), (choices, (DISTINCT, ROW)), (reductions, (POS,)),
    (methods, (DISTINCT + 1.5,)), (logsumexp, (A,)), (softmax_cross_entropy, (A,)), (products, (A, B, VEC)),
    (shapes, (A, C3)), (joining, (A, VEC)), (indexing_and_sorting, (DISTINCT,)),
    (linear_algebra, (SQ, SPD, rng.standard_normal(3))), (scalar_numpy, (1.3,)), (list_of_floats, (0.5, 1.5)),
    (tuple_operands_of_array_arithmetic, (0.5, 1.5)),
    (full_and_float_constructors, (1.5,)), (zero_safe, (DISTINCT,)),
]


@pytest.mark.parametrize("f, args", CASES, ids=[f.__name__ for f, _ in CASES])
def test_gradient_matches_finite_differences(f, args):
    if f is linear_algebra:   # cholesky reads one triangle: check along symmetric directions only
        check_gradient(lambda a, v: f(a, SPD, v), args[0], args[2])
        check_gradient(f, *args, wrt=(0, 2))
        return
    check_gradient(f, *args)


FLOAT32_CASES = [
    (ufuncs, (A,)), (binary_ufuncs, (A, COL, ROW)), (broadcasting_operators, (A, COL, ROW, 1.5)),
    (choices, (DISTINCT, ROW)), (reductions, (POS,)), (logsumexp, (A,)), (softmax_cross_entropy, (A,)),
    (products, (A, B, VEC)), (shapes, (A, C3)), (joining, (A, VEC)), (indexing_and_sorting, (DISTINCT,)),
]


@pytest.mark.parametrize("f, args", FLOAT32_CASES, ids=[f.__name__ for f, _ in FLOAT32_CASES])
def test_float32_programs_get_float32_gradients(f, args):
    args32 = tuple(a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in args)
    check_gradient(f, *args32)
    gradients = adtrans.gradient(f, *args32, wrt=tuple(range(len(args32))))
    for a, g in zip(args32, gradients):
        if isinstance(a, np.ndarray):
            assert g.dtype == np.float32 and g.shape == a.shape


def test_check_gradient_names_the_argument_of_a_wrong_derivative():
    def wrong(x, y):
        return adtrans.with_derivative(x, lambda d: 3 * d) * y

    with pytest.raises(AssertionError, match="argument 'x' of .*wrong.* largest error"):
        check_gradient(wrong, np.ones(3), np.ones(3))
    check_gradient(wrong, np.ones(3), np.ones(3), wrt="y")


def test_check_gradient_promotes_integers_named_in_wrt():
    def f(x, n):
        return x ** n

    check_gradient(f, 2, 3, wrt=("x",))
    check_gradient(f, 1.5, 3)


def test_check_gradient_handles_structured_arguments_and_results():
    def f(pair, scale):
        a, b = pair
        return np.tanh(a * scale), np.sum(b) * scale

    check_gradient(f, (A, [1.5, -0.5]), 0.7)
    check_gradient(f, (A.astype(np.float32), [1.5, -0.5]), 0.7, wrt="pair")


# -- Known compiler gaps (adtrans/reverse.py), kept here as reproductions ------------------------

def split_pieces(x):
    parts = np.split(x, 2, axis=0)
    return np.sum(parts[0] * parts[1])


def one_list_used_twice(x, y):
    items = [x, y, x * y]
    return sum(items) + max(items)


def min_of_a_list_literal(x, y):
    return min([x, y * 2])


def transpose_without_axes(x):
    return np.sum(x.transpose() * A.T)


def test_subscripts_of_a_split():
    check_gradient(split_pieces, A[:2])


def test_a_list_used_twice():
    check_gradient(one_list_used_twice, 0.6, 1.9)


def test_list_literal_in_star_arguments():
    check_gradient(min_of_a_list_literal, 0.6, 1.9)


def test_method_with_empty_star_arguments():
    check_gradient(transpose_without_axes, A)
