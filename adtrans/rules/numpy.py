"""Derivatives of NumPy functions, ufuncs and array methods.

Grouped like NumPy's documentation: elementwise maths, reductions, products,
shape manipulation, indexing, linear algebra.  Array methods are keyed by
their descriptor on ``np.ndarray`` (``np.ndarray.sum``, the ``np.ndarray.T``
property) with the array as the parameter ``self``.

Conventions (see docs/rules.md): at a tie, ``maximum``/``minimum`` give each
argument half the cotangent (but ``np.maximum(x, 0)``, a ReLU, gives x none
at 0) and ``max``/``min`` reductions share it equally
among the elements equal to the result; ``abs`` and ``sign``-like kinks have
derivative 0 at 0; ``clip`` passes the cotangent through at its bounds;
``floor``, ``round``, ``sign`` and friends are piecewise constant: no
derivative flows through them.
"""

import numpy as np

from adtrans.registry import NONZERO, constant_function, constant_module, rules_for
from adtrans.rules.support import (
    DEGREES_PER_RADIAN, LN2, LN10, RADIANS_PER_DEGREE, added_at, astype_cotangent, clip_mask, cholesky_cotangent,
    concatenate_cotangents, concatenated_by, concatenated_by_cotangents, cumprod_cotangent, cumsum_cotangent,
    diag_cotangent, diagonal_index, diagonal_cotangent, diff_cotangent, dot_cotangent_a, dot_cotangent_b,
    einsum_cotangents, extremum_cotangent, hstack_cotangents, inverse_permutation, item_cotangent, join_cotangents,
    linspace_cotangent, masked_mean_cotangent, masked_sum_cotangent, matmul_cotangent_a, matmul_cotangent_b,
    max_share, min_share, mT, norm_cotangent, outer_cotangent_a, outer_cotangent_b, pad_constant_cotangent,
    pad_cotangent, power_slope, prod_cotangent, reduced_count, repeat_cotangent, shaped_like, solve_cotangent_a,
    solve_cotangent_b, sort_cotangent, stack_cotangents, std_cotangent, stored_in, subtracted_at, sum_cotangent,
    take_along_axis_cotangent, take_cotangent, tanh_cotangent, tensordot_cotangent_a, tensordot_cotangent_b,
    tile_cotangent, trace_cotangent, unbroadcast, unstack_cotangents, var_cotangent, vstack_cotangents, xlogy)

rule = rules_for(globals())

# -- Arithmetic ufuncs ---------------------------------------------------------------
rule(np.add, "x1, x2", x1="unbroadcast(d_y, x1)", x2="unbroadcast(d_y, x2)")
rule(np.subtract, "x1, x2", x1="unbroadcast(d_y, x1)", x2="unbroadcast(-d_y, x2)")
rule(np.multiply, "x1, x2", x1="unbroadcast(d_y * x2, x1)", x2="unbroadcast(d_y * x1, x2)")
rule(np.divide, "x1, x2", x1="unbroadcast(d_y / x2, x1)", x2="unbroadcast(-d_y * y / x2, x2)")  # = true_divide
rule(np.negative, "x", x="-d_y")
rule(np.positive, "x", x="d_y")
rule(np.power, "x1, x2", when={"x2": 2}, x1="unbroadcast(d_y * (2 * x1), x1)")
rule(np.power, "x1, x2", when={"x2": NONZERO}, x1="unbroadcast(d_y * x2 * x1 ** (x2 - 1), x1)")
rule(np.power, "x1, x2", x1="unbroadcast(d_y * power_slope(x1, x2), x1)",
     x2="unbroadcast(d_y * xlogy(y, x1), x2)")
rule(np.float_power, "x1, x2", when={"x2": NONZERO}, x1="unbroadcast(d_y * x2 * x1 ** (x2 - 1), x1)")
rule(np.float_power, "x1, x2", x1="unbroadcast(d_y * power_slope(x1, x2), x1)",
     x2="unbroadcast(d_y * xlogy(y, x1), x2)")
rule(np.square, "x", x="d_y * (2 * x)")
rule(np.reciprocal, "x", x="-d_y * y * y")
rule(np.sqrt, "x", x="d_y / (2 * y)")
rule(np.cbrt, "x", x="d_y / (3 * y * y)")
rule(np.absolute, "x", x="d_y * np.sign(x)")   # = np.abs; 0 at 0
rule(np.fabs, "x", x="d_y * np.sign(x)")
rule(np.copysign, "x1, x2", x1="unbroadcast(d_y * np.sign(x1) * np.copysign(1, x2), x1)")
# remainder (= mod) is x1 - floor(x1 / x2) * x2; fmod truncates instead.
rule(np.remainder, "x1, x2", x1="unbroadcast(d_y, x1)", x2="unbroadcast(-d_y * np.floor_divide(x1, x2), x2)")
rule(np.fmod, "x1, x2", x1="unbroadcast(d_y, x1)", x2="unbroadcast(-d_y * np.trunc(x1 / x2), x2)")

# -- Exponentials and logarithms ---------------------------------------------------------
rule(np.exp, "x", x="d_y * y")
rule(np.exp2, "x", x="d_y * y * LN2")
rule(np.expm1, "x", x="d_y * (y + 1)")
rule(np.log, "x", x="d_y / x")
rule(np.log2, "x", x="d_y / (x * LN2)")
rule(np.log10, "x", x="d_y / (x * LN10)")
rule(np.log1p, "x", x="d_y / (1 + x)")
rule(np.logaddexp, "x1, x2", x1="unbroadcast(d_y * np.exp(x1 - y), x1)", x2="unbroadcast(d_y * np.exp(x2 - y), x2)")
rule(np.logaddexp2, "x1, x2", x1="unbroadcast(d_y * np.exp2(x1 - y), x1)",
     x2="unbroadcast(d_y * np.exp2(x2 - y), x2)")

# -- Trigonometric and hyperbolic functions ----------------------------------------------
rule(np.sin, "x", x="d_y * np.cos(x)")
rule(np.cos, "x", x="-d_y * np.sin(x)")
rule(np.tan, "x", x="d_y * (1 + y * y)")
rule(np.arcsin, "x", x="d_y / np.sqrt(1 - x * x)")
rule(np.arccos, "x", x="-d_y / np.sqrt(1 - x * x)")
rule(np.arctan, "x", x="d_y / (1 + x * x)")
rule(np.arctan2, "x1, x2", x1="unbroadcast(d_y * x2 / (x1 * x1 + x2 * x2), x1)",
     x2="unbroadcast(-d_y * x1 / (x1 * x1 + x2 * x2), x2)")
rule(np.hypot, "x1, x2", x1="unbroadcast(d_y * x1 / y, x1)", x2="unbroadcast(d_y * x2 / y, x2)")
rule(np.sinh, "x", x="d_y * np.cosh(x)")
rule(np.cosh, "x", x="d_y * np.sinh(x)")
rule(np.tanh, "x", x="tanh_cotangent(d_y, y)")
rule(np.arcsinh, "x", x="d_y / np.sqrt(x * x + 1)")
rule(np.arccosh, "x", x="d_y / np.sqrt(x * x - 1)")
rule(np.arctanh, "x", x="d_y / (1 - x * x)")
rule(np.deg2rad, "x", x="d_y * RADIANS_PER_DEGREE")
rule(np.radians, "x", x="d_y * RADIANS_PER_DEGREE")
rule(np.rad2deg, "x", x="d_y * DEGREES_PER_RADIAN")
rule(np.degrees, "x", x="d_y * DEGREES_PER_RADIAN")

# -- Comparisons that choose: ties split the cotangent in half -----------------------------
# ReLU written np.maximum(x, 0): nothing at x == 0 (like relu in PyTorch and JAX), and one pass
# over x instead of three (finding ties costs a comparison and a reduction).
for _zero in (0.0, 0):
    rule(np.maximum, "x1, x2", when={"x2": _zero}, x1="d_y * (x1 > 0)")
    rule(np.maximum, "x1, x2", when={"x1": _zero}, x2="d_y * (x2 > 0)")
rule(np.maximum, "x1, x2", x1="unbroadcast(max_share(d_y, x1, x2), x1)", x2="unbroadcast(max_share(d_y, x2, x1), x2)")
rule(np.minimum, "x1, x2", x1="unbroadcast(min_share(d_y, x1, x2), x1)", x2="unbroadcast(min_share(d_y, x2, x1), x2)")
rule(np.where, "condition, x1=None, x2=None", x1="unbroadcast(np.where(condition, d_y, 0), x1)",
     x2="unbroadcast(np.where(condition, 0, d_y), x2)")
rule(np.clip, "a, a_min=None, a_max=None, out=None, *, min=None, max=None",
     a="unbroadcast(d_y * clip_mask(a, a_min, a_max, min, max), a)",
     a_min="unbroadcast(d_y * (a < a_min), a_min)", a_max="unbroadcast(d_y * (a > a_max), a_max)",
     min="unbroadcast(d_y * (a < min), min)", max="unbroadcast(d_y * (a > max), max)")
rule(np.ndarray.clip, "self, min=None, max=None, out=None",
     self="unbroadcast(d_y * clip_mask(self, min, max), self)",
     min="unbroadcast(d_y * (self < min), min)", max="unbroadcast(d_y * (self > max), max)")
rule(np.nan_to_num, "x, copy=True, nan=0.0, posinf=None, neginf=None", x="d_y * np.isfinite(x)")

# -- Reductions ----------------------------------------------------------------------------
# where= and initial=: a case of their own, so the common call's pullback stays as short.
SUM = "a, axis=None, dtype=None, out=None, keepdims=False, initial=0, where=True"
rule(np.sum, SUM, when={"where": True}, a="sum_cotangent(d_y, a, axis, keepdims)")
rule(np.sum, SUM, a="masked_sum_cotangent(d_y, a, axis, keepdims, where)", initial="unbroadcast(d_y, initial)")
SUM_METHOD = "self, axis=None, dtype=None, out=None, keepdims=False, initial=0, where=True"
rule(np.ndarray.sum, SUM_METHOD, when={"where": True}, self="sum_cotangent(d_y, self, axis, keepdims)")
rule(np.ndarray.sum, SUM_METHOD, self="masked_sum_cotangent(d_y, self, axis, keepdims, where)",
     initial="unbroadcast(d_y, initial)")
MEAN = "a, axis=None, dtype=None, out=None, keepdims=False, *, where=True"
rule(np.mean, MEAN, when={"where": True}, a="sum_cotangent(d_y / reduced_count(a, axis), a, axis, keepdims)")
rule(np.mean, MEAN, a="masked_mean_cotangent(d_y, a, axis, keepdims, where)")
MEAN_METHOD = "self, axis=None, dtype=None, out=None, keepdims=False, *, where=True"
rule(np.ndarray.mean, MEAN_METHOD, when={"where": True},
     self="sum_cotangent(d_y / reduced_count(self, axis), self, axis, keepdims)")
rule(np.ndarray.mean, MEAN_METHOD, self="masked_mean_cotangent(d_y, self, axis, keepdims, where)")
PROD = "a, axis=None, dtype=None, out=None, keepdims=False, initial=1, where=True"
rule(np.prod, PROD, when={"initial": 1, "where": True}, a="prod_cotangent(d_y, a, axis, keepdims)")
rule(np.prod, PROD, a="prod_cotangent(d_y * initial, a, axis, keepdims, where)",
     initial="unbroadcast(d_y * np.prod(a, axis, keepdims=keepdims, where=where), initial)")
PROD_METHOD = "self, axis=None, dtype=None, out=None, keepdims=False, initial=1, where=True"
rule(np.ndarray.prod, PROD_METHOD, when={"initial": 1, "where": True}, self="prod_cotangent(d_y, self, axis, keepdims)")
rule(np.ndarray.prod, PROD_METHOD, self="prod_cotangent(d_y * initial, self, axis, keepdims, where)",
     initial="unbroadcast(d_y * np.prod(self, axis, keepdims=keepdims, where=where), initial)")
for fn in dict.fromkeys((np.max, np.amax, np.min, np.amin)):   # the same functions in NumPy 1.x
    rule(fn, "a, axis=None, out=None, keepdims=False", a="extremum_cotangent(d_y, a, y, axis, keepdims)")
for fn in (np.ndarray.max, np.ndarray.min):
    rule(fn, "self, axis=None, out=None, keepdims=False", self="extremum_cotangent(d_y, self, y, axis, keepdims)")
rule(np.var, "a, axis=None, dtype=None, out=None, ddof=0, keepdims=False",
     a="var_cotangent(d_y, a, axis, ddof, keepdims)")
rule(np.ndarray.var, "self, axis=None, dtype=None, out=None, ddof=0, keepdims=False",
     self="var_cotangent(d_y, self, axis, ddof, keepdims)")
rule(np.std, "a, axis=None, dtype=None, out=None, ddof=0, keepdims=False",
     a="std_cotangent(d_y, a, y, axis, ddof, keepdims)")
rule(np.ndarray.std, "self, axis=None, dtype=None, out=None, ddof=0, keepdims=False",
     self="std_cotangent(d_y, self, y, axis, ddof, keepdims)")
rule(np.cumsum, "a, axis=None, dtype=None, out=None", a="cumsum_cotangent(d_y, a, axis)")
rule(np.ndarray.cumsum, "self, axis=None, dtype=None, out=None", self="cumsum_cotangent(d_y, self, axis)")
rule(np.cumprod, "a, axis=None, dtype=None, out=None", a="cumprod_cotangent(d_y, a, y, axis)")
rule(np.ndarray.cumprod, "self, axis=None, dtype=None, out=None", self="cumprod_cotangent(d_y, self, y, axis)")
rule(np.trace, "a, offset=0, axis1=0, axis2=1, dtype=None, out=None",
     a="trace_cotangent(d_y, a, offset, axis1, axis2)")
rule(np.ndarray.trace, "self, offset=0, axis1=0, axis2=1, dtype=None, out=None",
     self="trace_cotangent(d_y, self, offset, axis1, axis2)")

# -- Products ----------------------------------------------------------------------------
rule(np.matmul, "x1, x2", x1="matmul_cotangent_a(d_y, x1, x2)", x2="matmul_cotangent_b(d_y, x1, x2)")
rule(np.dot, "a, b, out=None", a="dot_cotangent_a(d_y, a, b)", b="dot_cotangent_b(d_y, a, b)")
rule(np.ndarray.dot, "self, b, out=None", self="dot_cotangent_a(d_y, self, b)", b="dot_cotangent_b(d_y, self, b)")
rule(np.tensordot, "a, b, axes=2", a="tensordot_cotangent_a(d_y, a, b, axes)",
     b="tensordot_cotangent_b(d_y, a, b, axes)")
rule(np.inner, "a, b", a="tensordot_cotangent_a(d_y, a, b, (-1, -1))", b="tensordot_cotangent_b(d_y, a, b, (-1, -1))")
rule(np.outer, "a, b, out=None", a="outer_cotangent_a(d_y, a, b)", b="outer_cotangent_b(d_y, a, b)")
rule(np.einsum, "subscripts, *operands, out=None, optimize=False",
     operands="einsum_cotangents(d_y, subscripts, operands)")

# -- Shape manipulation ----------------------------------------------------------------------
rule(np.reshape, "a, shape=None, order='C', *, newshape=None, copy=None",
     a="np.reshape(d_y, np.shape(a), order=order)")
rule(np.ndarray.reshape, "self, *shape, order='C', copy=None", self="np.reshape(d_y, self.shape, order=order)")
rule(np.ravel, "a, order='C'", a="np.reshape(d_y, np.shape(a), order=order)")
rule(np.ndarray.ravel, "self, order='C'", self="np.reshape(d_y, self.shape, order=order)")
rule(np.ndarray.flatten, "self, order='C'", self="np.reshape(d_y, self.shape, order=order)")
rule(np.squeeze, "a, axis=None", a="np.reshape(d_y, np.shape(a))")
rule(np.ndarray.squeeze, "self, axis=None", self="np.reshape(d_y, self.shape)")
rule(np.expand_dims, "a, axis", a="np.reshape(d_y, np.shape(a))")
rule(np.transpose, "a, axes=None", when={"axes": None}, a="np.transpose(d_y)")   # = np.permute_dims
rule(np.transpose, "a, axes=None", a="np.transpose(d_y, inverse_permutation(axes))")
rule(np.ndarray.transpose, "self, *axes", self="np.transpose(d_y, inverse_permutation(axes))")
rule(np.ndarray.T, "self", self="d_y.T")
if hasattr(np.ndarray, "mT"):
    rule(np.ndarray.mT, "self", self="mT(d_y)")
for fn in dict.fromkeys((getattr(np, "matrix_transpose", None), getattr(np.linalg, "matrix_transpose", None))):
    if fn is not None:
        rule(fn, "x", x="mT(d_y)")
rule(np.swapaxes, "a, axis1, axis2", a="np.swapaxes(d_y, axis1, axis2)")
rule(np.ndarray.swapaxes, "self, axis1, axis2", self="np.swapaxes(d_y, axis1, axis2)")
rule(np.moveaxis, "a, source, destination", a="np.moveaxis(d_y, destination, source)")
rule(np.broadcast_to, "array, shape, subok=False", array="unbroadcast(d_y, array)")
rule(np.flip, "m, axis=None", m="np.flip(d_y, axis)")
rule(np.fliplr, "m", m="np.fliplr(d_y)")
rule(np.flipud, "m", m="np.flipud(d_y)")
rule(np.roll, "a, shift, axis=None", a="np.roll(d_y, np.negative(shift), axis)")
rule(np.tile, "A, reps", A="tile_cotangent(d_y, A, reps)")
rule(np.repeat, "a, repeats, axis=None", a="repeat_cotangent(d_y, a, repeats, axis)")
rule(np.ndarray.repeat, "self, repeats, axis=None", self="repeat_cotangent(d_y, self, repeats, axis)")
rule(np.pad, "array, pad_width, mode='constant', *, constant_values=0, reflect_type='even'",
     array="pad_cotangent(d_y, array, pad_width, mode, reflect_type)",
     constant_values="pad_constant_cotangent(d_y, array, pad_width, constant_values)")
rule(np.triu, "m, k=0", m="np.triu(d_y, k)")
rule(np.tril, "m, k=0", m="np.tril(d_y, k)")
rule(np.diagonal, "a, offset=0, axis1=0, axis2=1", a="diagonal_cotangent(d_y, a, offset, axis1, axis2)")
rule(np.ndarray.diagonal, "self, offset=0, axis1=0, axis2=1",
     self="diagonal_cotangent(d_y, self, offset, axis1, axis2)")
rule(np.diag, "v, k=0", v="diag_cotangent(d_y, v, k)")
rule(np.diff, "a, n=1, axis=-1", a="diff_cotangent(d_y, a, n, axis)")

# -- Joining and splitting: a sequence argument's cotangent is a list, one per element ----------
rule(np.concatenate, "arrays, axis=0, out=None, *, dtype=None, casting='same_kind'",   # = np.concat
     arrays="concatenate_cotangents(d_y, arrays, axis)")
rule(np.stack, "arrays, axis=0, out=None, *, dtype=None, casting='same_kind'",
     arrays="stack_cotangents(d_y, arrays, axis)")
rule(np.hstack, "tup, *, dtype=None, casting='same_kind'", tup="hstack_cotangents(d_y, tup)")
rule(np.vstack, "tup, *, dtype=None, casting='same_kind'", tup="vstack_cotangents(d_y, tup)")
rule(np.split, "ary, indices_or_sections, axis=0", ary="join_cotangents(d_y, y, axis)")
rule(np.array_split, "ary, indices_or_sections, axis=0", ary="join_cotangents(d_y, y, axis)")
# np.r_[a, x, b] and np.c_[a, b] (subscripts of NumPy's index tricks) are keyed to concatenated_by.
rule(concatenated_by, "trick, *parts", parts="concatenated_by_cotangents(d_y, trick, parts)")
if hasattr(np, "unstack"):
    rule(np.unstack, "x, *, axis=0", x="unstack_cotangents(d_y, y, axis)")

# -- Indexing and sorting ----------------------------------------------------------------
rule(np.take, "a, indices, axis=None, out=None, mode='raise'", a="take_cotangent(d_y, a, indices, axis, mode)")
rule(np.ndarray.take, "self, indices, axis=None, out=None, mode='raise'",
     self="take_cotangent(d_y, self, indices, axis, mode)")
rule(np.take_along_axis, "arr, indices, axis=-1", arr="take_along_axis_cotangent(d_y, arr, indices, axis)")
rule(np.sort, "a, axis=-1, kind=None, order=None, *, stable=None", a="sort_cotangent(d_y, a, axis)")
# np.add.at(a, i, b) and np.subtract.at(a, i, b) of a local run as a = added_at(a, i, b): each b
# gets the cotangent of the place it went to, repeated places and all.
rule(added_at, "a, indices, b", a="d_y", b="unbroadcast(d_y[indices], b)")
rule(subtracted_at, "a, indices, b", a="d_y", b="unbroadcast(-d_y[indices], b)")
# np.exp(v, out=y) runs as y = stored_in(np.exp(v), y): y's dtype, and none of y's values.
rule(stored_in, "value, out", value="unbroadcast(d_y, value)", out="np.zeros_like(d_y)")

# -- Making arrays and converting them -----------------------------------------------------
rule(np.array, "object, dtype=None, *, copy=True, order='K', subok=False, ndmin=0, like=None",
     object="shaped_like(d_y, object)")
rule(np.asarray, "a, dtype=None, order=None, *, device=None, copy=None, like=None", a="shaped_like(d_y, a)")
rule(np.asanyarray, "a, dtype=None, order=None, *, device=None, copy=None, like=None", a="shaped_like(d_y, a)")
rule(np.ascontiguousarray, "a, dtype=None, *, like=None", a="shaped_like(d_y, a)")
rule(np.copy, "a, order='K', subok=False", a="shaped_like(d_y, a)")
rule(np.ndarray.copy, "self, order='C'", self="d_y")
rule(np.ndarray.astype, "self, dtype, order='K', casting='unsafe', subok=True, copy=True",
     self="astype_cotangent(d_y, self, y)")
rule(np.ndarray.item, "self, *args", self="item_cotangent(d_y, self, args)")
rule(np.ndarray.tolist, "self", self="shaped_like(np.asarray(d_y), self)")
for fn in (np.float64, np.float32, np.float16):
    rule(fn, "x=0.0", x="shaped_like(d_y, x)")
rule(np.linspace, "start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None",
     start="linspace_cotangent(d_y, start, num, endpoint, retstep, dtype, axis, False)",
     stop="linspace_cotangent(d_y, stop, num, endpoint, retstep, dtype, axis, True)")
rule(np.full, "shape, fill_value, dtype=None, order='C', *, device=None, like=None",
     fill_value="unbroadcast(d_y, fill_value)")
rule(np.full_like, "a, fill_value, dtype=None, order='K', subok=True, shape=None, *, device=None",
     a="None", fill_value="unbroadcast(d_y, fill_value)")   # a gives only the shape: no cotangent

# -- Linear algebra -----------------------------------------------------------------------
rule(np.linalg.inv, "a", a="-(mT(y) @ d_y @ mT(y))")
rule(np.linalg.det, "a", a="np.expand_dims(d_y * y, (-2, -1)) * mT(np.linalg.inv(a))")
rule(np.linalg.slogdet, "a", a="np.expand_dims(d_y[1], (-2, -1)) * mT(np.linalg.inv(a))")
rule(np.linalg.solve, "a, b", a="solve_cotangent_a(d_y, a, b, y)", b="solve_cotangent_b(d_y, a, b)")
rule(np.linalg.cholesky, "a, *, upper=False", a="cholesky_cotangent(d_y, y, upper)")
rule(np.linalg.norm, "x, ord=None, axis=None, keepdims=False", x="norm_cotangent(d_y, x, y, ord, axis, keepdims)")
if hasattr(np.linalg, "vector_norm"):
    rule(np.linalg.vector_norm, "x, *, axis=None, keepdims=False, ord=2",
         x="norm_cotangent(d_y, x, y, ord, axis, keepdims, vector=True)")

# -- No derivative: integer or boolean results, and piecewise-constant functions ---------------
constant_function(
    np.sign, np.floor, np.ceil, np.round, np.around, np.rint, np.trunc, np.fix, np.floor_divide,
    np.heaviside, np.signbit, np.ndarray.round,
    reason="it is piecewise constant: its derivative is zero wherever it exists")
constant_function(
    np.shape, np.ndim, np.size, np.zeros_like, np.ones_like, np.empty_like, np.zeros, np.ones, np.empty,
    np.eye, np.identity, np.arange, np.argmax, np.argmin, np.argsort, np.argwhere, np.nonzero, np.flatnonzero,
    np.searchsorted, np.digitize, np.count_nonzero, np.isnan, np.isinf, np.isfinite, np.isclose,
    np.allclose, np.array_equal, np.equal, np.not_equal, np.less, np.less_equal, np.greater,
    np.greater_equal, np.logical_and, np.logical_or, np.logical_not, np.logical_xor, np.any, np.all,
    np.result_type, np.broadcast_shapes, np.tri, np.triu_indices, np.tril_indices, np.diag_indices,
    np.unravel_index, np.ravel_multi_index, np.linalg.matrix_rank, diagonal_index,
    np.ndarray.argmax, np.ndarray.argmin, np.ndarray.argsort, np.ndarray.nonzero, np.ndarray.any,
    np.ndarray.all, np.ndarray.searchsorted,
    reason="its result is not a differentiable value")
constant_module("numpy.random", reason="it draws random numbers")
