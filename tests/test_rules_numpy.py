"""The NumPy rules, each checked against central finite differences (and in float32)."""

import numpy as np

NUMPY_2 = int(np.__version__.split('.')[0]) >= 2
NUMPY_2_1 = tuple(int(p) for p in np.__version__.split('.')[:2]) >= (2, 1)
import pytest
from gradcheck import case, check_rule_vjp, module_rules, run_case, template_problems, untested

from adtrans import registry
from adtrans.rules.support import added_at, concatenated_by, stored_in, subtracted_at

rng = np.random.default_rng(2)
A = rng.standard_normal((3, 4))
B = rng.standard_normal((4, 2))
C3 = rng.standard_normal((2, 3, 4))
COL = rng.standard_normal((3, 1))
ROW = rng.standard_normal((1, 4))
VEC = rng.standard_normal(4)
VEC3 = rng.standard_normal(3)
POS = rng.uniform(0.5, 2.0, (3, 4))
POS_ROW = rng.uniform(0.5, 2.0, (1, 4))
UNIT = rng.uniform(-0.9, 0.9, (3, 4))
BIG = rng.uniform(1.2, 3.0, (3, 4))
SQ = rng.standard_normal((3, 3)) + 3 * np.eye(3)
SQ_BATCH = rng.standard_normal((2, 3, 3)) + 3 * np.eye(3)
SPD = SQ @ SQ.T + np.eye(3)
SPD_BATCH = SQ_BATCH @ np.swapaxes(SQ_BATCH, -1, -2) + np.eye(3)
DISTINCT = np.arange(12.0).reshape(3, 4) * 0.37 % 1.9 - 0.8   # no ties: max/sort/abs are smooth here
MASK = A > 0
ZEROS = np.array([[1.5, 0.0, 2.0, -0.7], [0.0, 0.0, 3.0, 1.2], [0.5, -1.1, 0.0, 0.9]])   # zeros in rows and columns

CASES = [
    # Arithmetic ufuncs, with broadcasting.
    case(np.add, COL, ROW), case(np.add, A, 2.0), case(np.add, 1.5, VEC),
    case(np.subtract, COL, ROW), case(np.subtract, A, VEC),
    case(np.multiply, COL, ROW), case(np.multiply, A, 2.0), case(np.multiply, 1.5, -2.0),
    case(np.divide, COL, POS_ROW), case(np.divide, A, 3.0), case(np.true_divide, 2.0, POS),
    case(np.negative, A), case(np.positive, A),
    case(np.power, POS, 2), case(np.power, POS, 2.5), case(np.power, POS, ROW), case(np.power, 2.0, A),
    case(np.float_power, POS, 1.5),
    case(np.power, ZEROS, 0), case(np.power, ZEROS, np.arange(4)), case(np.float_power, ZEROS, 0.0, check={"wrt": ["x1"]}),
    case(np.square, A), case(np.reciprocal, POS), case(np.sqrt, POS), case(np.cbrt, POS),
    case(np.absolute, DISTINCT), case(np.abs, -1.5), case(np.fabs, DISTINCT),
    case(np.copysign, DISTINCT, ROW),
    case(np.remainder, A * 4, POS), case(np.mod, -2.7, 1.3), case(np.fmod, A * 4, POS_ROW),
    # Exponentials and logarithms.
    case(np.exp, A), case(np.exp, 0.3), case(np.exp2, A), case(np.expm1, A),
    case(np.log, POS), case(np.log, 2.5), case(np.log2, POS), case(np.log10, POS), case(np.log1p, POS),
    case(np.logaddexp, COL, ROW), case(np.logaddexp2, A, 0.5),
    # Trigonometric and hyperbolic.
    case(np.sin, A), case(np.cos, A), case(np.tan, UNIT), case(np.arcsin, UNIT), case(np.arccos, UNIT),
    case(np.arctan, A), case(np.arctan2, COL, ROW), case(np.hypot, COL, ROW),
    case(np.sinh, A), case(np.cosh, A), case(np.tanh, A), case(np.arcsinh, A), case(np.arccosh, BIG),
    case(np.arctanh, UNIT), case(np.deg2rad, A), case(np.radians, A), case(np.rad2deg, A), case(np.degrees, A),
    # Choosing functions.
    case(np.maximum, COL, ROW), case(np.maximum, A, 0.0), case(np.maximum, 0, A), case(np.maximum, A, 0),
    case(np.maximum, 0.0, A), case(np.maximum, A, 0.5), case(np.minimum, COL, ROW), case(np.minimum, 0.5, A),
    case(np.where, MASK, A, 0.0), case(np.where, MASK[:, :1], COL, ROW),
    case(np.clip, A, -0.5, 0.5), case(np.clip, A, COL, None),
    *([case(np.clip, A, min=-0.3, max=np.abs(ROW))] if NUMPY_2_1 else []),    # min=/max= are NumPy 2.1+
    case(np.ndarray.clip, A, -0.5, 0.5), case(np.ndarray.clip, A, max=0.2),
    case(np.nan_to_num, A),
    # Reductions, with axis and keepdims.
    case(np.sum, A), case(np.sum, A, axis=0), case(np.sum, C3, axis=(0, 2)), case(np.sum, C3, axis=-1, keepdims=True),
    case(np.sum, [1.5, 2.5]), case(np.sum, A, dtype=np.float64),
    case(np.ndarray.sum, A), case(np.ndarray.sum, C3, 1), case(np.ndarray.sum, C3, axis=(1, 2), keepdims=True),
    case(np.mean, A), case(np.mean, C3, axis=1), case(np.mean, C3, axis=(0, 2), keepdims=True),
    case(np.ndarray.mean, A), case(np.ndarray.mean, A, axis=1, keepdims=True),
    case(np.prod, POS), case(np.prod, A, axis=1), case(np.prod, C3, axis=(0, 2), keepdims=True),
    case(np.prod, np.array([[1.5, 0.0, 2.0], [0.0, 0.0, 3.0]]), axis=1),
    case(np.ndarray.prod, POS, axis=0),
    case(np.sum, A, where=MASK), case(np.sum, A, axis=1, initial=1.5, where=MASK[:1]), case(np.sum, A, initial=0.5),
    case(np.ndarray.sum, C3, axis=(0, 2), keepdims=True, where=C3 > 0), case(np.ndarray.sum, A, initial=-1.0),
    case(np.mean, A, where=MASK | np.eye(3, 4, dtype=bool)), case(np.mean, C3, axis=(1, 2), keepdims=True, where=C3 > -1),
    case(np.ndarray.mean, A, axis=0, where=ROW > -5),
    case(np.prod, POS, axis=1, where=MASK), case(np.prod, ZEROS, axis=0, initial=2.5, where=ZEROS < 2),
    case(np.ndarray.prod, POS, initial=0.5), case(np.ndarray.prod, ZEROS, 1, where=ZEROS != 1.5),
    case(np.max, DISTINCT), case(np.max, DISTINCT, axis=0), case(np.max, DISTINCT, axis=1, keepdims=True),
    case(np.amax, DISTINCT, axis=-1), case(np.min, DISTINCT), case(np.min, DISTINCT, axis=(0, 1)),
    case(np.amin, DISTINCT, 0), case(np.ndarray.max, DISTINCT, axis=1), case(np.ndarray.min, DISTINCT),
    case(np.var, A), case(np.var, A, axis=0, ddof=1), case(np.var, C3, axis=(1, 2), keepdims=True),
    case(np.ndarray.var, A, axis=1),
    case(np.std, A), case(np.std, A, axis=1, ddof=1, keepdims=True), case(np.ndarray.std, C3, axis=0),
    case(np.cumsum, A), case(np.cumsum, A, axis=0), case(np.cumsum, C3, -1), case(np.ndarray.cumsum, A, axis=1),
    case(np.cumprod, A), case(np.cumprod, A, axis=0), case(np.cumprod, C3, -1), case(np.ndarray.cumprod, A, axis=1),
    case(np.cumprod, ZEROS, axis=1), case(np.cumprod, ZEROS), case(np.ndarray.cumprod, ZEROS, 0),
    case(np.trace, SQ), case(np.trace, C3, 1, 1, 2), case(np.ndarray.trace, A, -1),
    # Products.
    case(np.matmul, A, B), case(np.matmul, VEC, B), case(np.matmul, A, VEC), case(np.matmul, VEC, VEC),
    case(np.matmul, C3, B), case(np.matmul, VEC3, C3), case(np.matmul, rng.standard_normal((2, 1, 3, 4)), B),
    case(np.dot, A, B), case(np.dot, VEC, VEC), case(np.dot, A, VEC), case(np.dot, VEC3, A),
    case(np.dot, 2.0, A), case(np.dot, C3, B), case(np.dot, A, rng.standard_normal((2, 4, 3))),
    case(np.ndarray.dot, A, B),
    case(np.tensordot, C3, rng.standard_normal((3, 4, 5))),
    case(np.tensordot, C3, rng.standard_normal((4, 2)), axes=([2, 0], [0, 1])),
    case(np.tensordot, A, B, axes=1), case(np.tensordot, A, VEC3, axes=([0], [0])),
    case(np.inner, A, ROW), case(np.inner, VEC, VEC),
    case(np.outer, VEC, VEC3), case(np.outer, A, COL),
    case(np.einsum, "ij,jk->ik", A, B), case(np.einsum, "ij,jk", A, B), case(np.einsum, "i,i", VEC, VEC),
    case(np.einsum, "ij->", A), case(np.einsum, "ij->j", A), case(np.einsum, "ii->i", SQ), case(np.einsum, "ii", SQ),
    case(np.einsum, "bij,bjk->bik", C3, rng.standard_normal((2, 4, 5))),
    case(np.einsum, "...i,i->...", C3, VEC), case(np.einsum, "ij,ij,ij->i", A, POS, ROW),
    case(np.einsum, "i,j->ij", VEC, VEC3),
    # Shapes.
    case(np.reshape, A, (2, 6)), case(np.reshape, A, (4, 3), order="F"), case(np.reshape, A, -1),
    case(np.ndarray.reshape, A, 2, 6), case(np.ndarray.reshape, A, (6, 2)),
    case(np.ndarray.reshape, A, (12,), order="F"),
    case(np.ravel, A), case(np.ravel, A, order="F"), case(np.ndarray.ravel, A), case(np.ndarray.flatten, A, "F"),
    case(np.squeeze, COL), case(np.squeeze, COL, axis=1), case(np.ndarray.squeeze, ROW),
    case(np.expand_dims, A, 1), case(np.expand_dims, A, (0, 3)),
    case(np.transpose, A), case(np.transpose, C3), case(np.transpose, C3, (1, 2, 0)),
    case(np.transpose, C3, (-1, 0, 1)),
    case(np.ndarray.transpose, C3), case(np.ndarray.transpose, C3, 2, 0, 1), case(np.ndarray.transpose, C3, (1, 0, 2)),
    case(np.ndarray.T, A), case(np.ndarray.T, C3),
    case(np.swapaxes, C3, 0, 2), case(np.ndarray.swapaxes, C3, 1, -1), case(np.moveaxis, C3, 0, -1),
    case(np.moveaxis, C3, (0, 1), (2, 0)),
    case(np.broadcast_to, ROW, (3, 4)), case(np.broadcast_to, VEC, (2, 3, 4)), case(np.broadcast_to, 1.5, (2,)),
    case(np.flip, A), case(np.flip, C3, 1), case(np.flip, C3, (0, 2)), case(np.fliplr, A), case(np.flipud, A),
    case(np.roll, A, 1), case(np.roll, A, -1, axis=1), case(np.roll, C3, (1, 2), axis=(0, 2)),
    case(np.tile, A, 2), case(np.tile, A, (2, 1, 3)), case(np.tile, VEC, (3, 1)),
    case(np.repeat, A, 2), case(np.repeat, A, 3, axis=1), case(np.repeat, A, [1, 0, 2], axis=0),
    case(np.ndarray.repeat, VEC, 2),
    case(np.pad, A, 1), case(np.pad, A, ((1, 0), (2, 3))), case(np.pad, A, 2, constant_values=1.5),
    case(np.pad, A, ((1, 2), (0, 1)), constant_values=((0.5, -1.0), (2.0, 1.5))),
    case(np.pad, A, 1, constant_values=(0.5, -1.0)), case(np.pad, C3, (1, 2), constant_values=((0.5, -1.0),)),
    case(np.pad, A, ((0, 2), (1, 1)), mode="edge"), case(np.pad, A, 2, mode="reflect"),
    case(np.pad, A, (1, 3), mode="symmetric"), case(np.pad, A, 2, mode="wrap"),
    case(np.triu, A), case(np.triu, C3, 1), case(np.tril, A, -1),
    case(np.diagonal, A), case(np.diagonal, C3, 1, 1, 2), case(np.diagonal, A, -1),
    case(np.ndarray.diagonal, C3, 0, 0, 2),
    case(np.diag, VEC), case(np.diag, VEC3, 1), case(np.diag, A), case(np.diag, A, -1),
    case(np.diff, A), case(np.diff, A, 2, axis=0), case(np.diff, VEC, 3),
    # Joining and splitting.
    case(np.concatenate, [A, POS]), case(np.concatenate, (A, COL), axis=1),
    case(np.concatenate, [VEC, VEC3], axis=None),
    case(np.stack, [VEC, VEC]), case(np.stack, (A, POS), axis=-1), case(np.stack, [1.5, 2.5]),
    case(np.hstack, [A, COL]), case(np.hstack, (VEC, VEC3)), case(np.vstack, [A, ROW, VEC]),
    case(concatenated_by, np.r_, 0.5, VEC, -1.5), case(concatenated_by, np.r_, A, ROW), case(concatenated_by, np.c_, VEC3, A),
    case(np.split, A, 2, axis=1), case(np.split, A, [1], axis=0), case(np.array_split, VEC, 3),
    # Indexing and sorting.
    case(np.take, A, [0, 2, 2]), case(np.take, A, [[0], [3]], axis=1), case(np.take, A, [5, -1], mode="wrap"),
    case(np.ndarray.take, A, [1, 1], axis=0),
    case(np.take_along_axis, A, np.array([[0], [3], [3]]), axis=1), case(np.take_along_axis, A, np.argsort(A, 0), 0),
    case(np.sort, DISTINCT), case(np.sort, DISTINCT, axis=0), case(np.sort, DISTINCT, axis=None),
    # np.add.at / np.subtract.at by value (repeated places add up), and out= (stored_in).
    case(added_at, A, [0, 0, 2], ROW), case(added_at, A, ([0, 2, 0], [1, 1, 1]), VEC3), case(added_at, VEC, [1, 1, 3], 2.5),
    case(subtracted_at, A, ([0, 0], [1, 1]), np.array([0.5, -1.5])), case(subtracted_at, VEC, 2, 1.5),
    case(stored_in, A, POS), case(stored_in, VEC, A), case(stored_in, 0.5, VEC),
    # Making and converting arrays.
    case(np.array, [1.5, 2.5]), case(np.array, [VEC, VEC]), case(np.array, A), case(np.array, 2.5),
    case(np.array, VEC, ndmin=2),
    case(np.asarray, [[1.5], [2.5]]), case(np.asarray, A), case(np.asanyarray, A), case(np.ascontiguousarray, A.T),
    case(np.copy, A), case(np.ndarray.copy, A),
    case(np.ndarray.astype, A, np.float64),
    case(np.ndarray.astype, A, np.float32, check={"float32": False, "rtol": 1e-4, "eps": 1e-2}),
    case(np.ndarray.item, np.array([2.5])), case(np.ndarray.item, A, 5), case(np.ndarray.item, A, (1, 2)),
    case(np.ndarray.item, A, 1, 2),
    case(np.ndarray.tolist, A),
    case(np.float64, 2.5), case(np.float64, np.float32(2.5)), case(np.float32, 2.5, check={"rtol": 1e-4, "eps": 1e-2}),
    case(np.float16, 2.5, check={"rtol": 1e-2, "eps": 0.25}),
    case(np.linspace, 0.5, 2.0, 5), case(np.linspace, VEC3, 2.0, 4), case(np.linspace, 0.5, 2.0, 1),
    case(np.linspace, VEC3, POS[:, 0], 4, endpoint=False, axis=-1), case(np.linspace, -1.0, 0.5, 6, retstep=True),
    case(np.linspace, COL, ROW, 3, axis=1),
    case(np.full, (2, 3), 1.5), case(np.full, (2, 3), VEC3), case(np.full_like, A, 2.5),
    # Linear algebra.
    case(np.linalg.inv, SQ), case(np.linalg.inv, SQ_BATCH),
    case(np.linalg.det, SQ), case(np.linalg.det, SQ_BATCH),
    case(np.linalg.slogdet, SQ), case(np.linalg.slogdet, -SQ_BATCH),
    case(np.linalg.solve, SQ, VEC3), case(np.linalg.solve, SQ, A),
    *([case(np.linalg.solve, SQ_BATCH, A)] if NUMPY_2 else []),      # NumPy 1 reads b as vectors here
    *([case(np.linalg.solve, SQ_BATCH, rng.standard_normal((2, 3, 1)))] if NUMPY_2 else []),
    case(np.linalg.cholesky, SPD, check={"symmetric": ("a",)}),
    case(np.linalg.cholesky, SPD_BATCH, check={"symmetric": ("a",)}),
    *([case(np.linalg.cholesky, SPD, upper=True, check={"symmetric": ("a",)})] if NUMPY_2 else []),
    case(np.linalg.norm, VEC), case(np.linalg.norm, A), case(np.linalg.norm, A, axis=1),
    case(np.linalg.norm, C3, axis=(0, 2), keepdims=True), case(np.linalg.norm, VEC, 1), case(np.linalg.norm, VEC, 3),
    case(np.linalg.norm, VEC, np.inf), case(np.linalg.norm, VEC, -np.inf), case(np.linalg.norm, A, "fro"),
    case(np.linalg.norm, A, "nuc"), case(np.linalg.norm, A, 2), case(np.linalg.norm, A, -2),
    case(np.linalg.norm, DISTINCT, 1), case(np.linalg.norm, DISTINCT, np.inf), case(np.linalg.norm, DISTINCT, -1),
    case(np.linalg.norm, C3, "fro", (1, 2)), case(np.linalg.norm, C3, 2, (2, 1), keepdims=True),
    case(np.linalg.norm, A, 0.5, axis=0),
]
if hasattr(np, "unstack"):
    CASES.append(case(np.unstack, A, axis=1))
if hasattr(np.ndarray, "mT"):
    CASES += [case(np.ndarray.mT, C3)]
if hasattr(np, "matrix_transpose"):
    CASES += [case(np.matrix_transpose, C3), case(np.linalg.matrix_transpose, A)]
if hasattr(np.linalg, "vector_norm"):
    CASES += [case(np.linalg.vector_norm, A), case(np.linalg.vector_norm, A, ord=1),
              case(np.linalg.vector_norm, C3, axis=(0, 2), ord=3)]


@pytest.mark.parametrize("c", CASES)
def test_rule_matches_finite_differences(c):
    run_case(c)


def test_every_numpy_rule_and_case_is_tested():
    assert untested("adtrans.rules.numpy", CASES) == []


@pytest.mark.parametrize("rule", module_rules("adtrans.rules.numpy"), ids=lambda r: r.name)
def test_templates_are_well_formed(rule):
    assert template_problems(rule) == []


# -- Conventions --------------------------------------------------------------------

def pull(fn, *args, d_y, wanted=None, **kwargs):
    rule = registry.lookup_rule(fn)
    return registry.vjp_from_rule(rule, args, kwargs, wanted=None if wanted is None else sorted(wanted))[1](d_y)


def test_relu_gives_nothing_at_zero():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(pull(np.maximum, x, 0.0, d_y=np.ones(3))["x1"], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(pull(np.maximum, 0, x, d_y=np.ones(3))["x2"], [0.0, 0.0, 1.0])


def test_maximum_and_minimum_split_ties_in_half():
    x = np.array([1.0, 2.0, 3.0])
    d = pull(np.maximum, x, np.array([2.0, 2.0, 2.0]), d_y=np.ones(3))
    np.testing.assert_array_equal(d["x1"], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(d["x2"], [1.0, 0.5, 0.0])
    d = pull(np.minimum, x, 2.0, d_y=np.ones(3))
    np.testing.assert_array_equal(d["x1"], [1.0, 0.5, 0.0])
    assert d["x2"] == 1.5


def test_max_reduction_shares_the_cotangent_among_ties():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    d = pull(np.max, x, axis=1, d_y=np.array([1.0, 1.0]))
    np.testing.assert_array_equal(d["a"], [[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])


def test_abs_and_clip_conventions():
    np.testing.assert_array_equal(pull(np.abs, np.array([-1.0, 0.0, 2.0]), d_y=np.ones(3))["x"], [-1.0, 0.0, 1.0])
    d = pull(np.clip, np.array([-1.0, 0.0, 1.0, 2.0]), 0.0, 1.0, d_y=np.ones(4), wanted={"a", "a_min", "a_max"})
    np.testing.assert_array_equal(d["a"], [0.0, 1.0, 1.0, 0.0])   # boundaries pass the cotangent through
    assert d["a_min"] == 1.0 and d["a_max"] == 1.0


def test_prod_with_zeros_is_exact():
    d = pull(np.prod, np.array([2.0, 0.0, 3.0]), d_y=1.0)
    np.testing.assert_array_equal(d["a"], [0.0, 6.0, 0.0])


def test_norm_at_zero_has_zero_cotangent():
    d = pull(np.linalg.norm, np.zeros(3), d_y=1.0)
    np.testing.assert_array_equal(d["x"], np.zeros(3))


def test_sequence_cotangents_are_lists():
    d = pull(np.concatenate, [np.ones(2), np.ones(3)], d_y=np.arange(5.0))
    assert isinstance(d["arrays"], list)
    np.testing.assert_array_equal(d["arrays"][1], [2.0, 3.0, 4.0])
    d = pull(np.stack, (np.ones(2), np.ones(2)), d_y=np.ones((2, 2)))
    assert isinstance(d["arrays"], tuple)


def test_split_accepts_missing_cotangents():
    d = pull(np.split, np.arange(4.0), 2, d_y=[None, np.ones(2)])
    np.testing.assert_array_equal(d["ary"], [0.0, 0.0, 1.0, 1.0])


def test_reduction_cotangents_are_writable():
    d = pull(np.sum, np.ones((2, 3)), axis=0, d_y=np.ones(3))
    d["a"] += 1.0


def test_astype_to_an_integer_type_has_zero_cotangent():
    x = np.array([1.5, 2.5])
    d = pull(np.ndarray.astype, x, np.int64, d_y=np.ones(2, dtype=np.int64))
    np.testing.assert_array_equal(d["self"], [0.0, 0.0])


def test_pad_modes_without_a_derivative_raise():
    with pytest.raises(NotImplementedError, match="mode='linear_ramp'"):
        check_rule_vjp(np.pad, A, 1, mode="linear_ramp")


def test_piecewise_constant_functions_have_no_derivative():
    for fn in (np.sign, np.floor, np.ceil, np.round, np.around, np.rint, np.trunc, np.floor_divide):
        assert registry.is_constant_function(fn)
    for fn in (np.argmax, np.zeros_like, np.shape, np.isnan):
        assert registry.is_constant_function(fn)


def test_random_samplers_are_constant_by_module():
    rng = np.random.default_rng(0)
    for fn in (np.random.rand, np.random.randn, np.random.seed, np.random.default_rng, rng.normal,
               np.random.Generator.uniform, np.random.RandomState(0).rand):
        assert registry.is_constant_function(fn), fn
    for fn in (np.sin, np.sum, np.ndarray.sum):
        assert not registry.is_constant_function(fn), fn


def test_noise_from_a_generator_is_a_constant_factor():
    import adtrans

    def noisy(x, rng):
        noise = rng.normal(size=x.shape)
        return np.sum(x * noise) + np.sum(np.random.rand(3))

    x = np.ones(3)
    grad = adtrans.gradient(noisy, x, np.random.default_rng(7), wrt="x")
    np.testing.assert_array_equal(grad, np.random.default_rng(7).normal(size=3))


def test_tanh_cotangent_reuses_its_own_array_and_leaves_its_inputs_alone():
    from adtrans.rules.support import tanh_cotangent
    rng = np.random.default_rng(0)
    y = np.tanh(rng.standard_normal((4, 3))).astype(np.float32)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    y_before, g_before = y.copy(), g.copy()
    also_held = [y]         # someone else holds y: it must be left alone
    got = tanh_cotangent(g, y)
    assert got.dtype == np.float32 and got is not g and got is not y
    np.testing.assert_array_equal(got, g * (1 - y * y))        # the same numbers, bit for bit
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(g, g_before)
    # Where the product is wider than y * y, or g broadcasts y, it falls back to the expression.
    wide = tanh_cotangent(g.astype(np.float64), y)
    assert wide.dtype == np.float64
    np.testing.assert_array_equal(wide, g.astype(np.float64) * (1 - y * y))
    np.testing.assert_array_equal(tanh_cotangent(g, y[0]), g * (1 - y[0] * y[0]))
    assert tanh_cotangent(2.0, 0.5) == 2.0 * (1 - 0.25)
    assert tanh_cotangent(np.float32(2), y).dtype == np.float32
    assert also_held[0] is y


def test_tanh_cotangent_writes_into_y_when_only_its_caller_holds_it():
    # A pullback run once pops y off its tape; its local is then the only reference, and the
    # pullback never reads y again: its memory can take the result.
    from adtrans.rules.support import tanh_cotangent
    rng = np.random.default_rng(1)
    g = rng.standard_normal((5, 4)).astype(np.float32)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    expected = g * (1 - np.tanh(x) * np.tanh(x))
    seen = {}

    def pull_once():
        y = np.tanh(x)
        seen["address"] = y.__array_interface__["data"][0]
        return tanh_cotangent(g, y)

    got = pull_once()
    assert got.__array_interface__["data"][0] == seen["address"]    # y's own memory
    np.testing.assert_array_equal(got, expected)                     # the same bits
    # Not when g shares y's memory, or y is a view (its base may be held elsewhere).
    def same_buffer():
        y = np.tanh(x)
        return tanh_cotangent(y, y)
    np.testing.assert_array_equal(same_buffer(), np.tanh(x) * (1 - np.tanh(x) * np.tanh(x)))
    base = np.tanh(x)
    np.testing.assert_array_equal(tanh_cotangent(g[1:], base[1:]), g[1:] * (1 - base[1:] * base[1:]))
    np.testing.assert_array_equal(base, np.tanh(x))


def _address(a):
    return a.__array_interface__["data"][0]


def test_in_place_reuses_a_temporary_and_gives_the_same_bits():
    # The forward's `in_place(np.tanh, in_place(operator.add, h @ W, b))`: the product's memory
    # takes the sum (NumPy would not: b is broadcast) and then the activation.
    import operator

    from adtrans.rules.support import in_place
    rng = np.random.default_rng(2)
    h = rng.standard_normal((512, 256)).astype(np.float32)      # 512 KiB: worth reusing
    W = rng.standard_normal((256, 256)).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    seen = []

    def recording_matmul(a, c):
        out = a @ c
        seen.append(_address(out))
        return out

    got = in_place(np.tanh, in_place(operator.add, recording_matmul(h, W), b))
    assert _address(got) == seen[0] and got.dtype == np.float32
    np.testing.assert_array_equal(got, np.tanh(h @ W + b))
    for f, op in ((operator.sub, np.subtract), (operator.mul, np.multiply), (operator.truediv, np.divide)):
        np.testing.assert_array_equal(in_place(f, h @ W, b), op(h @ W, b))
    for ufunc in (np.exp, np.sin, np.log1p, np.sqrt, np.negative):
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(in_place(ufunc, h @ W), ufunc(h @ W))


def test_in_place_leaves_what_someone_else_holds_alone():
    import operator

    from adtrans.rules.support import in_place
    rng = np.random.default_rng(3)
    h = rng.standard_normal((512, 256)).astype(np.float32)
    before = h.copy()
    # A named array, a view of one, a small array: plain calls, inputs untouched.
    for x in (h, h[1:], h[:4]):
        got = in_place(np.tanh, x)
        assert not np.may_share_memory(got, h)
        np.testing.assert_array_equal(got, np.tanh(x))
        got = in_place(operator.add, x, 1.0)
        assert not np.may_share_memory(got, h)
    np.testing.assert_array_equal(h, before)
    # Results of another shape or dtype, a dtype the ufunc changes, operands with operators of
    # their own, or no array at all: the operation as written.
    wide = in_place(operator.add, h + 0, np.ones((2, 512, 256), np.float32))
    assert wide.shape == (2, 512, 256)
    assert in_place(operator.add, h + 0, np.float64(1) if np.__version__ >= "2" else 1j).dtype != np.float32
    assert in_place(np.tanh, np.arange(70000) + 1).dtype == np.float64
    assert in_place(np.absolute, (h + 1j)).dtype == np.float32

    class Other:
        __array_ufunc__ = None      # ndarray's + defers to __radd__ (np.add would refuse)

        def __radd__(self, other):
            return "radd"
    assert in_place(operator.add, h + 0, Other()) == "radd"
    assert in_place(operator.mul, 2.0, 3.0) == 6.0 and in_place(np.tanh, 0.5) == np.tanh(0.5)


def test_in_place_is_calibrated_to_this_python():
    # A temporary passed straight in is held less often than a local passed in: measured at
    # import (CPython versions differ), so a named array is never overwritten.
    from adtrans.rules import support
    assert 0 < support._TEMPORARY < support._ONE_LOCAL

    def named():
        x = np.ones(70000)
        return support.in_place(np.negative, x) is x, x[0]
    assert named() == (False, 1.0)
