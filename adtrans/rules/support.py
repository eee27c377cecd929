"""Helpers that derivative templates call: the shared logic of many rules.

A template stays one line of maths because the fiddly parts live here: undoing
broadcasting, expanding a reduction's cotangent back to its input, splitting
the cotangent of a concatenation.  Every helper returns a cotangent with its
argument's structure, shape and dtype: a float32 argument gets a float32
cotangent, a Python float a float, a list of values a list of cotangents.
"""

import math
import operator
import sys
import types

import numpy as np

from adtrans import tangents

LN2 = math.log(2.0)
LN10 = math.log(10.0)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
DEGREES_PER_RADIAN = 180.0 / math.pi
RADIANS_PER_DEGREE = math.pi / 180.0


# -- Shape, structure and dtype -------------------------------------------------

def unbroadcast(g, x):
    """Sum `g` over the axes along which `x` was broadcast, so it has `x`'s shape and dtype.

    `x` may also be a `Shape`, when the pullback keeps no more of it (a tuple is a value:
    ``np.ones(2) + (x, y)``).
    """
    if type(x) is Shape:
        if type(g) in (list, tuple):
            _concatenated()
        return _sum_to_shape(g, x)
    x_shape = getattr(x, "shape", None)
    if x_shape is not None:
        if getattr(g, "shape", None) == x_shape and getattr(g, "dtype", None) == x.dtype:
            return g
    elif type(g) is float and type(x) in (float, int):
        return g
    if type(g) in (list, tuple):
        _concatenated()
    summed = _sum_to_shape(g, _shape(x))
    if (type(summed) is np.ndarray and type(x) is np.ndarray and summed.shape == x_shape
            and summed.dtype == x.dtype and summed.flags.writeable):
        return summed
    return shaped_like(summed, x)


def _concatenated():
    """`g` is a list's cotangent where a number's was expected: lists were joined or repeated by
    something other than the ``+`` and ``*`` the compiler follows (see `addend_cotangent`)."""
    raise tangents.structures._error(
        "cannot differentiate lists or tuples joined or repeated here", None,
        ["'sum' and NumPy add numbers and arrays, not lists: concatenate lists with '+' (a + b)",
         "an int that came in a tuple or list with floats is taken for a number carrying a derivative: "
         "to repeat a list by it, write xs * without_derivative(n)"])


class Shape(tuple):
    """A shape standing for an array of that shape (see `unbroadcast`), told apart from a tuple value."""

    __slots__ = ()


def matmul_shape(a, b):
    """The shape of ``a @ b`` from its operands, so a pullback need not keep the product."""
    a_shape, b_shape = _shape(a), _shape(b)
    if len(a_shape) == 2 and len(b_shape) == 2:
        return Shape((a_shape[0], b_shape[1]))
    if len(a_shape) == 1 and len(b_shape) == 1:
        return Shape()
    if len(a_shape) == 1:
        return Shape(b_shape[:-2] + b_shape[-1:])
    if len(b_shape) == 1:
        return Shape(a_shape[:-1])
    return Shape(tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2])) + (a_shape[-2], b_shape[-1]))


def shape_only(x):
    """A stand-in for an array a pullback reads only for its shape and dtype.

    One zero broadcast to `x`'s shape (no memory of its own), so the forward
    can let go of `x`; anything but an array of several elements is kept.
    """
    if type(x) is np.ndarray and x.nbytes >= _WORTH_FREEING:
        return np.broadcast_to(np.zeros((), dtype=x.dtype), x.shape)
    return x


# Below this, a value is kept as it is: its memory is nothing next to the stand-in's cost (~5 us).
_WORTH_FREEING = 64 * 1024


# The helpers that read an argument only for its shape and dtype: positions of those arguments.
SHAPE_ARGUMENTS = {"unbroadcast": (1,), "sum_cotangent": (1,), "reduced_count": (0,),
                   "masked_sum_cotangent": (1,), "masked_mean_cotangent": (1,),
                   "matmul_shape": (0, 1), "addend_cotangent": (1, 2), "factor_cotangent": (1,)}


def _shape(x):
    """``np.shape(x)``, without its Python-level dispatch for the common case of an array."""
    return x.shape if type(x) is np.ndarray else np.shape(x)


def _sum_to_shape(g, shape):
    g_shape = _shape(g)
    if g_shape == shape:
        return g
    extra = len(g_shape) - len(shape)
    if extra < 0:
        return np.broadcast_to(g, shape)
    axes = list(range(extra))
    for i, n in enumerate(shape):
        if n == 1 and g_shape[i + extra] != 1:
            axes.append(i + extra)
    if axes:
        axes = tuple(axes)
        g = np.add.reduce(g, axis=axes) if type(g) is np.ndarray else np.sum(g, axis=axes)
    if _shape(g) != shape:
        g = np.reshape(g, shape)
    return g


def shaped_like(g, x):
    """`g`, holding as many numbers as `x`, in `x`'s structure, shape and dtype.

    An array argument gets an array of its dtype (any dtype when it is an
    integer array: ints named in `wrt` are promoted), a NumPy scalar a scalar,
    a Python number a float, a list or tuple a list or tuple of cotangents.
    """
    if isinstance(x, np.ndarray):
        dtype = x.dtype if x.dtype.kind in "fc" else None
        g = np.asarray(g, dtype=dtype)
        if g.shape != x.shape:
            g = np.reshape(g, x.shape)
        if not g.flags.writeable:
            g = g.copy()
        return g
    if isinstance(x, np.generic):
        dtype = x.dtype if x.dtype.kind in "fc" else np.float64
        return np.asarray(g, dtype=dtype).reshape(())[()]
    if hasattr(type(x), "__dataclass_fields__"):
        return g        # a dataclass (a layer): its tangent is already of its own kind
    if isinstance(x, (list, tuple)):
        if isinstance(g, np.ndarray) and g.ndim != np.ndim(x):
            g = np.reshape(g, np.shape(x))
        return _same_sequence(x, [shaped_like(gi, xi) for gi, xi in zip(g, x)])
    if not isinstance(x, (float, int)):
        raise TypeError(f"adtrans cannot give a cotangent to a value of type {type(x).__name__}")
    if type(g) is float:
        return g
    return float(np.reshape(g, ()))


def _same_sequence(template, items):
    """`items` as a sequence of `template`'s type: list, tuple or NamedTuple."""
    if isinstance(template, list):
        return list(items)
    if hasattr(template, "_fields"):
        return type(template)(*items)
    return tuple(items)


def _zero_like(x):
    if isinstance(x, np.ndarray):
        return np.zeros(x.shape, dtype=_float_dtype(x))
    if isinstance(x, np.generic):
        return _float_dtype(x).type(0)
    if isinstance(x, (list, tuple)):
        return _same_sequence(x, [_zero_like(xi) for xi in x])
    if isinstance(x, (int, float)):
        return 0.0
    return tangents.zeros_like(x)     # a structure's zero tangent; a function's is None


def _float_dtype(x):
    """`x`'s dtype when it is floating, else float64 (the dtype of a promoted integer)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        dtype = np.asarray(x).dtype
    return dtype if dtype.kind in "fc" else np.dtype(np.float64)


def _axes(axis, ndim):
    """A reduction's `axis` argument as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        return tuple(sorted(a % ndim for a in axis)) if ndim else ()
    return (axis % ndim,) if ndim else ()


def _keep_reduced_dims(g, axis, keepdims, ndim):
    """A reduction's cotangent (or result) with the reduced axes back as size-1 axes."""
    if keepdims or axis is None or ndim == 0:
        return g
    return np.expand_dims(g, _axes(axis, ndim))


def _broadcast_copy(g, x):
    """`g` broadcast to `x`'s shape, as a fresh writable array of `x`'s dtype."""
    if type(x) is np.ndarray and x.dtype.kind in "fc":
        out = np.empty(x.shape, dtype=x.dtype)
        out[...] = g
        return out
    out = np.empty(np.shape(x), dtype=_cotangent_dtype(g, x))
    out[...] = g
    return shaped_like(out, x)


def _cotangent_dtype(g, x):
    dtype = getattr(x, "dtype", None)
    if dtype is not None and dtype.kind in "fc":
        return dtype
    return _float_dtype(g)


def mT(x):
    """The matrix transpose of a stack of matrices: swap the last two axes."""
    return np.swapaxes(x, -1, -2)


def sign(x):
    """-1, 0 or 1; the derivative of |x|, taken as 0 at 0."""
    if isinstance(x, (np.ndarray, np.generic)):
        return np.sign(x)
    return (x > 0) - (x < 0)


def _any(mask):
    return mask.any() if hasattr(mask, "any") else bool(mask)


# -- Reductions ----------------------------------------------------------------

def reduced_count(a, axis):
    """How many elements each result of a reduction over `axis` combines."""
    if axis is None:
        return a.size if type(a) is np.ndarray else np.size(a)
    shape = np.shape(a)
    return math.prod(shape[i] for i in _axes(axis, len(shape)))


def tanh_cotangent(g, y):
    """``g * (1 - y * y)``, the cotangent of `x` in ``y = np.tanh(x)``, in one array at most.

    Written out, the expression makes three arrays of `y`'s size (``y * y``,
    ``1 - ...``, the product); here the last two reuse the first.  And when
    the caller holds `y` in one local and nobody else holds it at all (a
    pullback run once, whose tape entry for `y` was just popped: the pullback
    never reads `y` after this rule), the result is written into `y`'s own
    memory, so a deep tanh network's backward allocates nothing here.  The
    same arithmetic in the same order either way: the same numbers.
    """
    if (type(y) is np.ndarray and y.base is None and y.flags.writeable
            and sys.getrefcount(y) <= _ONE_LOCAL and np.shape(g) in (y.shape, ())
            and np.result_type(g, y) == y.dtype
            and not (type(g) is np.ndarray and np.may_share_memory(g, y))):
        np.multiply(y, y, out=y)
        np.subtract(1, y, out=y)
        np.multiply(g, y, out=y)
        return y
    return tanh_cotangent_of_kept(g, y)


def tanh_cotangent_of_kept(g, y):
    """`tanh_cotangent` for a `y` that is kept (a pullback closure's, which may run again)."""
    out = y * y
    if (type(out) is np.ndarray and np.shape(g) in (out.shape, ())
            and np.result_type(g, out) == out.dtype):
        np.subtract(1, out, out=out)
        np.multiply(g, out, out=out)
        return out
    return g * (1 - out)


def _refcount(value):
    return sys.getrefcount(value)


def _held_by_one_local():
    value = np.empty(2)
    return _refcount(value)


# What sys.getrefcount says, in a helper, of an array its caller holds in one local and nobody
# else holds: measured, because how a call holds its arguments differs between CPython versions.
_ONE_LOCAL = _held_by_one_local()


def _held_by_nobody():
    return _refcount(np.empty(2))


# The same of an array nobody holds at all: a temporary, passed straight from the expression
# that made it (one less than _ONE_LOCAL where the caller's local counts). Where a CPython
# could not tell the two apart, `in_place` never reuses anything.
_TEMPORARY = _held_by_nobody() if _held_by_nobody() < _ONE_LOCAL else 0


def in_place(function, x, *operand):
    """``function(x, *operand)``, written into `x`'s memory when `x` is a temporary.

    `function` is a one-argument ufunc (``np.tanh``) or an arithmetic
    operator (``operator.add``). The forward writes ``h_2 =
    in_place(np.tanh, in_place(operator.add, h_1 @ W, b))`` for ``np.tanh(h_1
    @ W + b)`` (see `ReverseTransform.in_place`): when nothing but this call
    holds `x` (the large array the expression just made, owning its memory)
    and the result has `x`'s shape and dtype, the result reuses `x`, as NumPy
    reuses a temporary for ``-t`` or ``t + u`` of one shape by itself. So the
    product, the sum and the activation are never alive at once. Anything
    else (an array someone holds, a view, a float, a broadcast result, a
    dtype the operation changes, an operand with operators of its own) gets
    plain ``function(x, *operand)``. The same loop either way: the same numbers.
    """
    if (type(x) is np.ndarray and sys.getrefcount(x) <= _TEMPORARY and x.nbytes >= _WORTH_REUSING
            and x.base is None and x.flags.writeable):
        if not operand:
            if _keeps_dtype(function, x.dtype):
                return function(x, out=x)
        else:
            ufunc = _OPERATOR_UFUNCS.get(function)
            (y,) = operand
            if (ufunc is not None and type(y) in _PLAIN_OPERANDS and x.dtype.kind in "fc"
                    and np.result_type(x, y) == x.dtype
                    and (type(y) is not np.ndarray or _broadcasts_into(y.shape, x.shape))):
                return ufunc(x, y, out=x)
    return function(x, *operand)


# Below this NumPy does not reuse temporaries either: checking costs more than it saves.
_WORTH_REUSING = 256 * 1024

# Operators and the ufuncs ndarray's operators call when the other operand has no say.
_OPERATOR_UFUNCS = {operator.add: np.add, operator.sub: np.subtract, operator.mul: np.multiply,
                    operator.truediv: np.true_divide}
_PLAIN_OPERANDS = {np.ndarray, float, int, np.float16, np.float32, np.float64, np.longdouble,
                   np.complex64, np.complex128, np.clongdouble}

_KEEPS_DTYPE = {}


def _keeps_dtype(ufunc, dtype):
    """Is `ufunc` one of one argument mapping an array of float or complex `dtype` to the same?"""
    key = (ufunc, dtype)
    keeps = _KEEPS_DTYPE.get(key)
    if keeps is None:
        keeps = _KEEPS_DTYPE[key] = (isinstance(ufunc, np.ufunc) and ufunc.nin == 1 and ufunc.nout == 1
                                     and dtype.kind in "fc" and dtype.isnative
                                     and f"{dtype.char}->{dtype.char}" in ufunc.types)
    return keeps


def _broadcasts_into(shape, into):
    """Does an array of `shape` broadcast against one of shape `into` without growing it?"""
    if len(shape) > len(into):
        return False
    return all(n == 1 or n == m for n, m in zip(reversed(shape), reversed(into)))


def sum_cotangent(g, a, axis=None, keepdims=False):
    """The cotangent of `a` in ``np.sum(a, axis, keepdims=keepdims)``: `g` spread back over `a`."""
    return _broadcast_copy(_keep_reduced_dims(g, axis, keepdims, np.ndim(a)), a)


def extremum_cotangent(g, a, y, axis=None, keepdims=False):
    """The cotangent of `a` in ``np.max``/``np.min``: shared equally by the elements equal to the result."""
    ndim = np.ndim(a)
    g = np.asarray(_keep_reduced_dims(g, axis, keepdims, ndim), dtype=_cotangent_dtype(g, a))
    y = _keep_reduced_dims(y, axis, keepdims, ndim)
    winners = np.asarray(a) == y
    if np.count_nonzero(winners) != np.size(y):    # ties: each winner gets an equal share
        count = np.sum(winners, axis=None if axis is None else _axes(axis, ndim), keepdims=True)
        g = g / np.maximum(count, 1).astype(g.dtype)
    return shaped_like(winners * g, a)


def masked_sum_cotangent(g, a, axis, keepdims, where):
    """The cotangent of `a` in ``np.sum(a, axis, where=where)``: `g` spread back over the elements
    summed, 0 where `where` leaves them out."""
    out = np.empty(np.shape(a), dtype=_cotangent_dtype(g, a))
    out[...] = _keep_reduced_dims(g, axis, keepdims, out.ndim)
    out *= where
    return shaped_like(out, a)


def masked_mean_cotangent(g, a, axis, keepdims, where):
    """The cotangent of `a` in ``np.mean(a, axis, where=where)``: each element averaged gets `g`
    over the number averaged with it."""
    count = np.sum(np.broadcast_to(where, np.shape(a)), axis=axis, keepdims=keepdims)
    return masked_sum_cotangent(g / count, a, axis, keepdims, where)


def prod_cotangent(g, a, axis=None, keepdims=False, where=True):
    """The cotangent of `a` in ``np.prod``: `g` times the product of the other elements (exact with zeros).

    Elements `where` leaves out count as 1 and get 0.
    """
    x = np.asarray(a)
    if where is not True:
        x = np.where(where, x, np.ones((), dtype=x.dtype))
    ndim = x.ndim
    reduced = _axes(axis, ndim)
    kept = tuple(i for i in range(ndim) if i not in reduced)
    moved = np.transpose(x, kept + reduced)
    flat = moved.reshape(moved.shape[:len(kept)] + (-1,))
    ones = np.ones(flat.shape[:-1] + (1,), dtype=flat.dtype)
    before = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    after = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    g = np.reshape(_keep_reduced_dims(g, axis, keepdims, ndim), [x.shape[i] for i in kept] + [1])
    d = (g * (before * after)).reshape(moved.shape)
    d = np.transpose(d, np.argsort(kept + reduced))
    return shaped_like(d if where is True else d * where, a)


def var_cotangent(g, a, axis=None, ddof=0, keepdims=False):
    """The cotangent of `a` in ``np.var``: ``2 g (a - mean) / (n - ddof)``."""
    x = np.asarray(a)
    g = _keep_reduced_dims(g, axis, keepdims, x.ndim)
    centered = x - np.mean(x, axis=None if axis is None else _axes(axis, x.ndim), keepdims=True)
    return shaped_like(g * centered * (2.0 / (reduced_count(x, axis) - ddof)), a)


def std_cotangent(g, a, y, axis=None, ddof=0, keepdims=False):
    """The cotangent of `a` in ``np.std``: the variance's, through ``std = sqrt(var)``."""
    return var_cotangent(g / (2 * y), a, axis, ddof, keepdims)


def cumsum_cotangent(g, a, axis=None):
    """The cotangent of `a` in ``np.cumsum``: the reversed cumulative sum of `g`."""
    if axis is None:
        g = np.ravel(g)
        axis = 0
    return shaped_like(np.flip(np.cumsum(np.flip(g, axis), axis), axis), a)


def linspace_cotangent(g, x, num, endpoint, retstep, dtype, axis, end):
    """The cotangent of `x`, the start (`end` False) or the stop of ``np.linspace``.

    Sample i is ``start + (stop - start) * t_i``, ``t = np.linspace(0, 1, num, endpoint)``: the
    stop gets ``sum(g * t)``, the start ``sum(g * (1 - t))``, over the samples' axis. With
    ``retstep`` the step, ``(stop - start) / (num - 1)`` (``num`` without the endpoint), adds its
    own. Integer samples (``dtype=int``) are piecewise constant: zero.
    """
    samples, step = g if retstep else (g, None)
    if dtype is not None and np.dtype(dtype).kind not in "fc":
        return _zero_like(x)
    out = 0.0
    if samples is not None:
        t = np.linspace(0.0, 1.0, num, endpoint=endpoint)
        weights = t if end else 1.0 - t
        moved = np.moveaxis(np.asarray(samples), axis, -1)
        out = moved @ weights if moved.shape[-1] else np.zeros(moved.shape[:-1])
    if step is not None:
        intervals = num - 1 if endpoint else num
        if intervals > 0:
            out = out + (step if end else -step) / intervals
    return unbroadcast(out, x)


def cumprod_cotangent(g, a, y, axis=None):
    """The cotangent of `a` in ``y = np.cumprod(a, axis)``: ``y_j / a_i`` summed over j >= i, g-weighted.

    With no zero along the axis, that is the reversed cumulative sum of
    ``g * y``, divided by `a`. With zeros, no division: the cotangent of a_i
    is ``y_(i-1) * s_i``, where ``s_i = g_i + a_(i+1) s_(i+1)`` runs back
    along the axis (exact at the zeros, as JAX's).
    """
    x = np.asarray(a)
    if axis is None:
        x, axis = x.ravel(), 0
    g = np.broadcast_to(g, np.shape(y))
    if np.all(x != 0):
        return shaped_like(np.flip(np.cumsum(np.flip(g * y, axis), axis), axis) / x, a)
    g, x, y = np.moveaxis(g, axis, 0), np.moveaxis(x, axis, 0), np.moveaxis(np.asarray(y), axis, 0)
    out = np.empty(np.broadcast_shapes(g.shape, x.shape), dtype=np.result_type(g, x))
    running = 0
    for i in range(len(x) - 1, -1, -1):
        running = g[i] + (x[i + 1] * running if i + 1 < len(x) else 0)
        out[i] = running * y[i - 1] if i else running
    return shaped_like(np.moveaxis(out, 0, axis), a)


def concatenated_by(trick, *parts):
    """``trick[parts]``: ``np.r_[a, x, b]`` or ``np.c_[a, b]`` as a call. The pullback of such a
    subscript is keyed to this function (the forward runs the subscript as written)."""
    return trick[parts]


def concatenated_by_cotangents(g, trick, parts):
    """The cotangent of each part of ``trick[parts]`` (``np.r_``, ``np.c_``): its run of `g`.

    The trick makes each part a block (a scalar a 1-element array; in ``np.c_`` a 1-D array a
    column) and joins the blocks along its axis (a leading directive string such as '0,2' names
    it): a part's cotangent is its block's run of `g` along that axis, in the part's shape.
    Slices (``np.r_[0:3]``) and the directive string are constants: None.
    """
    directive = parts[0] if parts and isinstance(parts[0], str) else None
    axis = trick.axis
    if directive is not None:
        try:
            axis = int(directive.split(",")[0])
        except ValueError:
            raise tangents.structures._error(
                f"cannot differentiate the matrix directive {directive!r} of np.r_ / np.c_", None,
                ["join the arrays with np.concatenate or np.stack"]) from None
    out, start = [] if directive is None else [None], 0
    for part in parts[len(out):]:
        stand_in = part if isinstance(part, slice) else np.broadcast_to(0.0, np.shape(part))
        block = trick[(directive, stand_in) if directive is not None else (stand_in,)]
        size = np.shape(block)[axis]
        if isinstance(part, slice):
            out.append(None)
        else:
            run = np.take(g, np.arange(start, start + size), axis=axis)
            out.append(shaped_like(np.reshape(run, np.shape(part)), part))
        start += size
    return tuple(out)


# -- Elementwise choices -------------------------------------------------------

def max_share(g, x, other):
    """The part of `g` flowing to `x` in ``max(x, other)``: all where x wins, half at a tie."""
    ties = x == other
    if _any(ties):
        return g * (x > other) + (g / 2) * ties
    return g * (x > other)


def min_share(g, x, other):
    """The part of `g` flowing to `x` in ``min(x, other)``: all where x wins, half at a tie."""
    ties = x == other
    if _any(ties):
        return g * (x < other) + (g / 2) * ties
    return g * (x < other)


def clip_mask(a, a_min, a_max, min=None, max=None):
    """Where ``np.clip`` passes `a` through: inside the bounds, boundaries included."""
    low = a_min if a_min is not None else min
    high = a_max if a_max is not None else max
    inside = True
    if low is not None:
        inside = np.logical_and(inside, np.greater_equal(a, low))
    if high is not None:
        inside = np.logical_and(inside, np.less_equal(a, high))
    return inside


def power_slope(a, b):
    """``b * a ** (b - 1)``, the derivative of ``a ** b`` in `a`, taken as 0 where b == 0.

    ``a ** 0`` is 1 everywhere, so its slope is 0 even at a = 0, where the
    formula reads ``0 * 0 ** -1`` (a ZeroDivisionError or nan): as JAX and
    PyTorch, the exponent 1 stands in for -1 there, so no infinity is made.
    """
    if type(b) is int or type(b) is float:
        return b * a ** (b - 1) if b else 0 * a
    b_is_zero = np.equal(b, 0)
    if not b_is_zero.any():
        return b * a ** (b - 1)
    return b * a ** np.where(b_is_zero, 1, b - 1)


def xlogy(x, y):
    """``x * log(y)``, taken as 0 where x is 0 (so ``d/db a**b`` is 0 at a = 0)."""
    if isinstance(x, (np.ndarray, np.generic)) or isinstance(y, (np.ndarray, np.generic)):
        with np.errstate(divide="ignore", invalid="ignore"):
            product = x * np.log(y)
        return np.where(np.equal(x, 0), 0, product)
    if x == 0:
        return 0.0
    return x * math.log(y) if y > 0 else math.nan


# -- Products ------------------------------------------------------------------

def _as_cotangent_of(product, x):
    """A matrix product that is already `x`'s cotangent when it has `x`'s dtype, else made so."""
    if type(product) is np.ndarray and product.dtype == x.dtype and product.shape == x.shape:
        return product
    return unbroadcast(product, x)


def matmul_cotangent_a(g, a, b):
    """The cotangent of `a` in ``a @ b`` (1-D operands and batch broadcasting included)."""
    if type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == 2 and b.ndim == 2:
        return _as_cotangent_of(g @ b.T, a)
    a_ndim, b_ndim = np.ndim(a), np.ndim(b)
    if a_ndim == 1 and b_ndim == 1:
        return shaped_like(g * np.asarray(b), a)
    if b_ndim == 1:
        return unbroadcast(np.expand_dims(g, -1) * b, a)
    if a_ndim == 1:
        return unbroadcast((np.expand_dims(g, -2) @ mT(b))[..., 0, :], a)
    return unbroadcast(g @ mT(b), a)


def matmul_cotangent_b(g, a, b):
    """The cotangent of `b` in ``a @ b`` (1-D operands and batch broadcasting included)."""
    if type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == 2 and b.ndim == 2:
        return _as_cotangent_of(a.T @ g, b)
    a_ndim, b_ndim = np.ndim(a), np.ndim(b)
    if a_ndim == 1 and b_ndim == 1:
        return shaped_like(g * np.asarray(a), b)
    if b_ndim == 1:
        return unbroadcast((mT(a) @ np.expand_dims(g, -1))[..., 0], b)
    if a_ndim == 1:
        return unbroadcast(np.expand_dims(a, -1) * np.expand_dims(g, -2), b)
    return unbroadcast(mT(a) @ g, b)


def dot_cotangent_a(g, a, b):
    """The cotangent of `a` in ``np.dot(a, b)``."""
    a_ndim, b_ndim = np.ndim(a), np.ndim(b)
    if a_ndim == 0 or b_ndim == 0:
        return unbroadcast(g * np.asarray(b), a)
    if a_ndim == 2 and b_ndim == 2:
        return shaped_like(g @ mT(b), a)
    if b_ndim == 1:
        return shaped_like(np.multiply.outer(g, b), a)
    y_ndim = np.ndim(g)
    b_axes = [i for i in range(b_ndim) if i != b_ndim - 2]
    return shaped_like(np.tensordot(g, b, axes=(list(range(a_ndim - 1, y_ndim)), b_axes)), a)


def dot_cotangent_b(g, a, b):
    """The cotangent of `b` in ``np.dot(a, b)``."""
    a_ndim, b_ndim = np.ndim(a), np.ndim(b)
    if a_ndim == 0 or b_ndim == 0:
        return unbroadcast(g * np.asarray(a), b)
    if a_ndim == 2 and b_ndim == 2:
        return shaped_like(mT(a) @ g, b)
    leading = list(range(a_ndim - 1))
    d = np.tensordot(a, g, axes=(leading, leading))
    if b_ndim >= 2:
        d = np.moveaxis(d, 0, -2)
    return shaped_like(d, b)


def _tensordot_axes(axes, a_ndim, b_ndim):
    if isinstance(axes, (int, np.integer)):
        return list(range(a_ndim - axes, a_ndim)), list(range(axes))
    a_axes, b_axes = axes
    a_axes = [a_axes] if isinstance(a_axes, (int, np.integer)) else list(a_axes)
    b_axes = [b_axes] if isinstance(b_axes, (int, np.integer)) else list(b_axes)
    return [i % a_ndim for i in a_axes], [i % b_ndim for i in b_axes]


def tensordot_cotangent_a(g, a, b, axes=2):
    """The cotangent of `a` in ``np.tensordot(a, b, axes)``."""
    a_ndim, b_ndim = np.ndim(a), np.ndim(b)
    a_axes, b_axes = _tensordot_axes(axes, a_ndim, b_ndim)
    a_free = [i for i in range(a_ndim) if i not in a_axes]
    b_free = [i for i in range(b_ndim) if i not in b_axes]
    y_b = list(range(len(a_free), len(a_free) + len(b_free)))
    d = np.tensordot(g, b, axes=(y_b, b_free))     # axes: a_free, then b's contracted axes in b's order
    paired = [a_axes[b_axes.index(j)] for j in sorted(b_axes)]
    return shaped_like(np.transpose(d, np.argsort(a_free + paired)), a)


def tensordot_cotangent_b(g, a, b, axes=2):
    """The cotangent of `b` in ``np.tensordot(a, b, axes)``."""
    a_ndim, b_ndim = np.ndim(a), np.ndim(b)
    a_axes, b_axes = _tensordot_axes(axes, a_ndim, b_ndim)
    a_free = [i for i in range(a_ndim) if i not in a_axes]
    b_free = [i for i in range(b_ndim) if i not in b_axes]
    d = np.tensordot(a, g, axes=(a_free, list(range(len(a_free)))))   # a's contracted axes in a's order, b_free
    paired = [b_axes[a_axes.index(i)] for i in sorted(a_axes)]
    return shaped_like(np.transpose(d, np.argsort(paired + b_free)), b)


def einsum_cotangents(g, subscripts, operands):
    """The cotangents of ``np.einsum(subscripts, *operands)``, one per operand."""
    if not isinstance(subscripts, str):
        raise NotImplementedError("adtrans differentiates np.einsum only with a subscripts string")
    inputs, output = _einsum_subscripts(subscripts, [np.ndim(op) for op in operands])
    cotangents = []
    for k, operand in enumerate(operands):
        target = inputs[k]
        others = [j for j in range(len(operands)) if j != k]
        available = set(output).union(*(inputs[j] for j in others))
        unique = "".join(dict.fromkeys(target))
        computed = "".join(c for c in unique if c in available)
        spec = ",".join([output] + [inputs[j] for j in others]) + "->" + computed
        d = np.einsum(spec, g, *[operands[j] for j in others])
        sizes = dict(zip(target, np.shape(operand)))
        if computed != unique:   # a label only this operand has: summed, so its cotangent is constant along it
            d = np.broadcast_to(np.reshape(d, [d.shape[computed.index(c)] if c in computed else 1 for c in unique]),
                                [sizes[c] if c not in computed else d.shape[computed.index(c)] for c in unique])
        broadcast = tuple(i for i, c in enumerate(unique) if sizes[c] == 1 and d.shape[i] != 1)
        if broadcast:
            d = np.sum(d, axis=broadcast, keepdims=True)
        if len(unique) != len(target):   # a repeated label reads a diagonal: write the cotangent back on it
            d = _einsum_undiagonal(d, unique, target, sizes)
        cotangents.append(shaped_like(d, operand))
    return tuple(cotangents)


def _einsum_subscripts(subscripts, ndims):
    """Explicit input and output labels of an einsum, with each '...' spelled out."""
    subscripts = subscripts.replace(" ", "")
    inputs, arrow, output = subscripts.partition("->")
    inputs = inputs.split(",")
    letters = set(subscripts) - set(".,->")
    spare = [c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in letters]
    ellipsis_dims = max([n - (len(s) - 3) for s, n in zip(inputs, ndims) if "..." in s], default=0)
    ellipsis = "".join(spare[:ellipsis_dims])
    explicit = []
    for s, n in zip(inputs, ndims):
        if "..." in s:
            s = s.replace("...", ellipsis[ellipsis_dims - (n - (len(s) - 3)):])
        explicit.append(s)
    if arrow:
        output = output.replace("...", ellipsis)
    else:
        counts = "".join(explicit)
        output = ellipsis + "".join(sorted(c for c in set(counts) - set(ellipsis) if counts.count(c) == 1))
    return explicit, output


def _einsum_undiagonal(d, unique, target, sizes):
    spare = iter(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in target)
    seen, labels, eyes = set(), [], []
    for c in target:
        if c in seen:
            fresh = next(spare)
            labels.append(fresh)
            eyes.append((c + fresh, np.eye(sizes[c], dtype=d.dtype)))
        else:
            seen.add(c)
            labels.append(c)
    spec = ",".join([unique] + [s for s, _ in eyes]) + "->" + "".join(labels)
    return np.einsum(spec, d, *[e for _, e in eyes])


def outer_cotangent_a(g, a, b):
    """The cotangent of `a` in ``np.outer(a, b)`` (both flattened)."""
    return shaped_like(g @ np.ravel(b), a)


def outer_cotangent_b(g, a, b):
    """The cotangent of `b` in ``np.outer(a, b)`` (both flattened)."""
    return shaped_like(np.ravel(a) @ g, b)


# -- Shapes and sequences -------------------------------------------------------

def inverse_permutation(axes):
    """The axes that undo a transpose by `axes` (None, a tuple, or a method's ``*axes``)."""
    if isinstance(axes, tuple) and len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
        axes = axes[0]
    if axes is None or len(axes) == 0:
        return None
    n = len(axes)
    return tuple(int(i) for i in np.argsort([a % n for a in axes]))


def concatenate_cotangents(g, arrays, axis=0):
    """The cotangents of the pieces of ``np.concatenate(arrays, axis)``: `g` cut back into them."""
    if axis is None:
        sizes = [np.size(x) for x in arrays]
        pieces = np.split(np.ravel(g), np.cumsum(sizes)[:-1])
    else:
        sizes = [np.shape(x)[axis] if np.ndim(x) else 1 for x in arrays]
        pieces = np.split(g, np.cumsum(sizes)[:-1], axis=axis)
    return _same_sequence(arrays, [shaped_like(p, x) for p, x in zip(pieces, arrays)])


def stack_cotangents(g, arrays, axis=0):
    """The cotangents of the pieces of ``np.stack(arrays, axis)``: slices of `g` along `axis`."""
    return _same_sequence(arrays, [shaped_like(np.take(g, i, axis=axis), x) for i, x in enumerate(arrays)])


def hstack_cotangents(g, tup):
    """The cotangents of the pieces of ``np.hstack``."""
    axis = 0 if np.ndim(tup[0]) <= 1 else 1
    sizes = [np.shape(np.atleast_1d(x))[axis] for x in tup]
    pieces = np.split(g, np.cumsum(sizes)[:-1], axis=axis)
    return _same_sequence(tup, [shaped_like(p, x) for p, x in zip(pieces, tup)])


def vstack_cotangents(g, tup):
    """The cotangents of the pieces of ``np.vstack``."""
    sizes = [np.shape(np.atleast_2d(x))[0] for x in tup]
    pieces = np.split(g, np.cumsum(sizes)[:-1], axis=0)
    return _same_sequence(tup, [shaped_like(p, x) for p, x in zip(pieces, tup)])


def _fill_missing(g, y):
    """Cotangents of a list of results, a zero where a result got none."""
    return [_zero_like(yi) if gi is None else gi for gi, yi in zip(g, y)]


def join_cotangents(g, y, axis=0):
    """The cotangent of the array ``np.split`` cut into the pieces `y`."""
    return np.concatenate(_fill_missing(g, y), axis=axis)


def unstack_cotangents(g, y, axis=0):
    """The cotangent of the array ``np.unstack`` cut into the slices `y`."""
    return np.stack(_fill_missing(g, y), axis=axis)


def each_cotangent(g, seq):
    """One cotangent per element of `seq` when the result is their sum: `g` for each, unbroadcast."""
    if isinstance(seq, np.ndarray):
        return _broadcast_copy(g, seq)
    return _same_sequence(seq, [unbroadcast(g, x) for x in seq])


def tile_cotangent(g, a, reps):
    """The cotangent of `a` in ``np.tile(a, reps)``: `g` summed over the copies."""
    shape = np.shape(a)
    reps = tuple(reps) if np.iterable(reps) else (reps,)
    n = max(len(reps), len(shape))
    a_shape = (1,) * (n - len(shape)) + shape
    reps = (1,) * (n - len(reps)) + reps
    g = np.reshape(g, [k for pair in zip(reps, a_shape) for k in pair])
    return shaped_like(np.sum(g, axis=tuple(range(0, 2 * n, 2))), a)


def repeat_cotangent(g, a, repeats, axis=None):
    """The cotangent of `a` in ``np.repeat(a, repeats, axis)``: `g` summed over each element's copies."""
    shape = np.shape(a)
    if axis is None:
        g, axis, n = np.ravel(g), 0, int(np.prod(shape))
    else:
        axis %= len(shape)
        n = shape[axis]
    repeats = np.asarray(repeats)
    if repeats.size == 1:
        d = np.sum(np.reshape(g, g.shape[:axis] + (n, int(repeats.reshape(()))) + g.shape[axis + 1:]),
                   axis=axis + 1)
    else:
        moved = np.moveaxis(g, axis, 0)
        d = np.zeros((n,) + moved.shape[1:], dtype=moved.dtype)
        np.add.at(d, np.repeat(np.arange(n), repeats), moved)
        d = np.moveaxis(d, 0, axis)
    return shaped_like(d, a)


_COPYING_PAD_MODES = ("edge", "reflect", "symmetric", "wrap")


def _pad_widths(pad_width, ndim):
    return np.broadcast_to(np.asarray(pad_width, dtype=np.intp), (ndim, 2))


def _pad_interior(g, shape, pad_width):
    widths = _pad_widths(pad_width, len(shape))
    return g[tuple(slice(int(before), int(before) + n) for (before, _), n in zip(widths, shape))]


def pad_cotangent(g, array, pad_width, mode="constant", reflect_type="even"):
    """The cotangent of `array` in ``np.pad``: the interior of `g`, plus the copies' cotangents."""
    shape = np.shape(array)
    if mode in ("constant", "empty"):
        return shaped_like(np.array(_pad_interior(g, shape, pad_width)), array)
    if mode in _COPYING_PAD_MODES and reflect_type == "even":
        # Every padded element copies one element of the input: pad an index array to learn which.
        size = math.prod(shape)
        source = np.pad(np.arange(size).reshape(shape), pad_width, mode=mode)
        d = np.bincount(source.ravel(), weights=np.ravel(g), minlength=size)
        return shaped_like(d.reshape(shape), array)
    raise NotImplementedError(
        f"adtrans has no derivative for np.pad with mode={mode!r}, reflect_type={reflect_type!r}")


def pad_constant_cotangent(g, array, pad_width, constant_values):
    """The cotangent of `constant_values` in ``np.pad``: each value gets the sum of `g` over the
    padding it fills.

    A scalar fills all of it. Values per axis and side, ``((before, after), ...)`` or a pair for
    every axis, fill what NumPy gives them (a corner takes the value of the last axis padded there):
    found by padding zeros with that value 1 and the others 0.
    """
    if np.ndim(constant_values) == 0:
        return unbroadcast(np.sum(g) - np.sum(_pad_interior(g, np.shape(array), pad_width)), constant_values)
    ndim = np.ndim(array)
    zeros = np.zeros(np.shape(array))
    sums = np.zeros((ndim, 2))
    for axis in range(ndim):
        for side in range(2):
            one = np.zeros((ndim, 2))
            one[axis, side] = 1.0
            sums[axis, side] = np.sum(g * np.pad(zeros, pad_width, constant_values=one))
    return shaped_like(_sum_to_shape(sums, np.shape(constant_values)), constant_values)


def sort_cotangent(g, a, axis=-1):
    """The cotangent of `a` in ``np.sort``: `g` moved back to where each element came from."""
    x = np.asarray(a)
    if axis is None:
        x, g, axis = x.ravel(), np.ravel(g), 0
    order = np.argsort(x, axis=axis, kind="stable")
    d = np.empty_like(np.asarray(g))
    np.put_along_axis(d, order, g, axis=axis)
    return shaped_like(d, a)


def take_cotangent(g, a, indices, axis=None, mode="raise"):
    """The cotangent of `a` in ``np.take``: `g` added back at the indices it was taken from."""
    x = np.asarray(a)
    d = np.zeros(x.size if axis is None else x.shape, dtype=_cotangent_dtype(g, a))
    n = d.shape[0 if axis is None else axis]
    if mode == "wrap":
        indices = np.mod(indices, n)
    elif mode == "clip":
        indices = np.clip(indices, 0, n - 1)
    where = indices if axis is None else (slice(None),) * (axis % x.ndim) + (indices,)
    np.add.at(d, where, g)
    return shaped_like(d, a)


def take_along_axis_cotangent(g, arr, indices, axis):
    """The cotangent of `arr` in ``np.take_along_axis``."""
    x = np.asarray(arr)
    if axis is None:
        x, axis = x.ravel(), 0
    axis %= x.ndim
    d = np.zeros(x.shape, dtype=_cotangent_dtype(g, arr))
    where = tuple(indices if i == axis else
                  np.arange(n).reshape([-1 if j == i else 1 for j in range(x.ndim)])
                  for i, n in enumerate(x.shape))
    np.add.at(d, where, g)
    return shaped_like(d.reshape(np.shape(arr)), arr)


def diagonal_cotangent(g, a, offset=0, axis1=0, axis2=1):
    """The cotangent of `a` in ``np.diagonal(a, offset, axis1, axis2)``: `g` written on that diagonal."""
    shape = np.shape(a)
    ndim = len(shape)
    axis1, axis2 = axis1 % ndim, axis2 % ndim
    rest = [i for i in range(ndim) if i not in (axis1, axis2)]
    d = np.zeros([shape[i] for i in rest] + [shape[axis1], shape[axis2]], dtype=_cotangent_dtype(g, a))
    n = np.shape(g)[-1]
    rows = np.arange(n) + max(-offset, 0)
    cols = np.arange(n) + max(offset, 0)
    d[..., rows, cols] = g
    return shaped_like(np.transpose(d, np.argsort(rest + [axis1, axis2])), a)


def trace_cotangent(g, a, offset=0, axis1=0, axis2=1):
    """The cotangent of `a` in ``np.trace``: `g` on the diagonal."""
    n = np.diagonal(np.empty(np.shape(a), dtype=np.bool_), offset, axis1, axis2).shape[-1]
    g = np.broadcast_to(np.expand_dims(g, -1), np.shape(g) + (n,))
    return diagonal_cotangent(g, a, offset, axis1, axis2)


def diag_cotangent(g, v, k=0):
    """The cotangent of `v` in ``np.diag(v, k)`` (which builds or reads a diagonal)."""
    if np.ndim(v) == 1:
        return shaped_like(np.diagonal(g, k).copy(), v)
    return diagonal_cotangent(g, v, k)


def diff_cotangent(g, a, n=1, axis=-1):
    """The cotangent of `a` in ``np.diff(a, n, axis)``: the adjoint difference, n times."""
    for _ in range(n):
        pad = [(0, 0)] * np.ndim(g)
        pad[axis] = (1, 0)
        before = np.pad(g, pad)
        pad[axis] = (0, 1)
        g = before - np.pad(g, pad)
    return shaped_like(g, a)


def astype_cotangent(g, x, y):
    """The cotangent of `x` in ``x.astype(dtype)``: `g` cast back; zero when the result is not floating."""
    if np.result_type(y).kind not in "fc":
        return _zero_like(x)
    return shaped_like(g, x)


def item_cotangent(g, x, args):
    """The cotangent of `x` in ``x.item(*args)``: `g` at the element read, zero elsewhere."""
    d = np.zeros(np.shape(x), dtype=_cotangent_dtype(g, x))
    if not args:
        d[...] = g
    elif len(args) == 1 and not isinstance(args[0], tuple):
        d.flat[args[0]] = g
    else:
        d[args[0] if len(args) == 1 else args] = g
    return shaped_like(d, x)


# -- Python sequences: min, max, sorted, math.prod, math.dist, math.hypot ------

def extremum_args_cotangent(g, args, y, key=None):
    """The cotangent of ``max(*args)``/``min(*args)``'s arguments.

    Without `key`, the elements equal to the result share `g` equally (as in
    ``np.max``); with `key`, the element returned gets all of it.
    """
    if len(args) == 1:
        return (_extremum_items_cotangent(g, args[0], y, key),)
    return _extremum_items_cotangent(g, args, y, key)


def _extremum_items_cotangent(g, items, y, key):
    if isinstance(items, np.ndarray) and key is None:
        return extremum_cotangent(g, items, y, axis=0)
    items_list = list(items)
    if key is None:
        winners = [i for i, x in enumerate(items_list) if x == y]
    else:
        winners = [next(i for i, x in enumerate(items_list) if x is y)]
    share = g if len(winners) == 1 else g / len(winners)
    return _same_sequence(items, [unbroadcast(share, x) if i in winners else _zero_like(x)
                                  for i, x in enumerate(items_list)])


def sorted_cotangent(g, iterable, key=None, reverse=False):
    """The cotangent of ``sorted(iterable)``'s argument: `g` moved back to each element's place."""
    items = list(iterable)
    order = sorted(range(len(items)), key=(lambda i: items[i]) if key is None else (lambda i: key(items[i])),
                   reverse=reverse)
    d = [None] * len(items)
    for position, i in enumerate(order):
        d[i] = g[position]
    if isinstance(iterable, np.ndarray):
        return shaped_like(np.asarray(d), iterable)
    return _same_sequence(iterable if isinstance(iterable, (list, tuple)) else [], d)


def prod_items_cotangent(g, iterable, start=1):
    """The cotangent of ``math.prod(iterable, start=start)``'s elements: g times the other factors."""
    items = list(iterable)
    before, product = [], start
    for x in items:
        before.append(product)
        product = product * x
    d, after = [None] * len(items), 1
    for i in range(len(items) - 1, -1, -1):
        d[i] = unbroadcast(g * before[i] * after, items[i])
        after = after * items[i]
    return _same_sequence(iterable if isinstance(iterable, (list, tuple)) else [], d)


def sumprod_cotangent(g, p, q):
    """The cotangent of `p` in ``math.sumprod(p, q)``: ``g * q``."""
    return _same_sequence(p if isinstance(p, (list, tuple)) else [], [g * b for b in q])


def hypot_cotangent(g, y, coordinates):
    """The cotangent of ``math.hypot(*coordinates)``'s arguments: ``g * x / y`` (0 when y is 0)."""
    scale = g / y if y else 0.0
    return tuple(scale * x for x in coordinates)


def dist_cotangent(g, y, p, q):
    """The cotangent of `p` in ``math.dist(p, q)``: ``g * (p - q) / y`` (0 when y is 0)."""
    scale = g / y if y else 0.0
    return _same_sequence(p, [scale * (a - b) for a, b in zip(p, q)])


# -- Special functions -----------------------------------------------------------

def digamma(x):
    """The logarithmic derivative of the gamma function, for a float (the derivative of ``math.lgamma``)."""
    x = float(x)
    if x <= 0 and x == math.floor(x):
        return math.nan
    result = 0.0
    if x < 0.5:   # reflection: psi(x) = psi(1 - x) - pi / tan(pi x)
        result -= math.pi / math.tan(math.pi * x)
        x = 1.0 - x
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    inv2 = 1.0 / (x * x)
    series = inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252 - inv2 * (1 / 240 - inv2 * (
        1 / 132 - inv2 * (691 / 32760))))))
    return result + math.log(x) - 0.5 / x - series


# -- Linear algebra ----------------------------------------------------------------

def solve_cotangent_b(g, a, b):
    """The cotangent of `b` in ``np.linalg.solve(a, b)``: ``solve(a^T, g)``."""
    if np.ndim(b) == 1:
        return unbroadcast(np.linalg.solve(mT(a), np.expand_dims(g, -1))[..., 0], b)
    return unbroadcast(np.linalg.solve(mT(a), g), b)


def solve_cotangent_a(g, a, b, y):
    """The cotangent of `a` in ``x = np.linalg.solve(a, b)``: ``-solve(a^T, g) x^T``."""
    if np.ndim(b) == 1:
        g_b = np.linalg.solve(mT(a), np.expand_dims(g, -1))
        return unbroadcast(-(g_b @ np.expand_dims(y, -2)), a)
    return unbroadcast(-(np.linalg.solve(mT(a), g) @ mT(y)), a)


def cholesky_cotangent(g, y, upper=False):
    """The cotangent of `a` in ``L = np.linalg.cholesky(a)``, as a symmetric matrix.

    ``S = L^-T Phi(L^T g) L^-1`` with Phi the lower triangle with a halved
    diagonal; the cotangent is the symmetric part of S.
    """
    L, g = (mT(y), mT(g)) if upper else (y, g)
    n = L.shape[-1]
    phi = np.tril(mT(L) @ g)
    phi[..., np.arange(n), np.arange(n)] /= 2
    L_inv = np.linalg.inv(L)
    s = mT(L_inv) @ phi @ L_inv
    return (s + mT(s)) / 2


def norm_cotangent(g, x, y, ord=None, axis=None, keepdims=False, vector=False):
    """The cotangent of `x` in ``np.linalg.norm(x, ord, axis, keepdims)`` (0 where the norm is 0).

    With `vector`, as in ``np.linalg.vector_norm``: a vector norm over `axis`, however many axes.
    """
    a = np.asarray(x)
    ndim = a.ndim
    matrix = not vector and ((isinstance(axis, (tuple, list)) and len(axis) == 2)
                             or (axis is None and ndim == 2 and ord is not None))
    if matrix and ord not in (None, "fro"):
        return shaped_like(_matrix_norm_cotangent(g, a, y, ord, (0, 1) if axis is None else axis, keepdims), x)
    if ord == "fro" or ord is None:
        ord = 2
    g = _keep_reduced_dims(g, axis, keepdims, ndim)
    y = _keep_reduced_dims(y, axis, keepdims, ndim)
    if ord == 2:
        d = g * np.divide(a, y, out=np.zeros_like(a, dtype=_float_dtype(a)), where=y != 0)
    elif ord == 1:
        d = g * np.sign(a)
    elif ord == 0:
        d = np.zeros_like(a, dtype=_float_dtype(a))
    elif ord in (np.inf, -np.inf):
        d = extremum_cotangent(g, np.abs(a), y, axis, keepdims=True) * np.sign(a)
    else:
        ratio = np.divide(np.abs(a), y, out=np.zeros_like(a, dtype=_float_dtype(a)), where=y != 0)
        d = g * np.sign(a) * ratio ** (ord - 1)
    return shaped_like(d, x)


def _matrix_norm_cotangent(g, a, y, ord, axis, keepdims):
    rows, cols = (i % a.ndim for i in axis)
    m = np.moveaxis(a, (rows, cols), (-2, -1))
    if not keepdims:
        g = np.asarray(g)
    else:
        g = np.squeeze(g, axis=(rows, cols))
    g = np.asarray(g)[..., None, None]
    if ord in ("nuc", 2, -2):
        u, s, vh = np.linalg.svd(m, full_matrices=False)
        if ord == "nuc":
            d = g * (u @ vh)
        else:
            k = 0 if ord == 2 else s.shape[-1] - 1
            d = g * (u[..., :, k:k + 1] @ vh[..., k:k + 1, :])
    elif ord in (1, -1, np.inf, -np.inf):
        line_axis = -2 if ord in (1, -1) else -1       # ord 1: column sums; inf: row sums
        sums = np.sum(np.abs(m), axis=line_axis, keepdims=True)
        pick = np.max(sums, axis=-1 if ord in (1, -1) else -2, keepdims=True) if ord in (1, np.inf) else \
            np.min(sums, axis=-1 if ord in (1, -1) else -2, keepdims=True)
        winners = sums == pick
        count = np.sum(winners, axis=(-2, -1), keepdims=True).astype(m.dtype)
        d = g * np.sign(m) * winners / count
    else:
        raise NotImplementedError(f"adtrans has no derivative for np.linalg.norm with ord={ord!r}")
    return np.moveaxis(d, (-2, -1), (rows, cols))


# -- Assignment to a subscript (``x[i] = v`` in differentiated code): value semantics.

def with_item(x, index, value):
    """A copy of `x` with ``[index]`` set to `value`: how differentiated code runs ``x[i] = v``."""
    if isinstance(x, np.ndarray):
        out = x.copy()
    elif isinstance(x, (list, dict)):
        out = type(x)(x)
    else:
        raise TypeError(f"cannot assign to an item of a {type(x).__name__} in differentiated code")
    out[index] = value
    return out


def assigned_cotangent(g, index, value):
    """The cotangent of `value` in ``x[index] = value``: the part of `g` it wrote.

    An integer-array index may name a place twice (``x[[0, 0]] = v``); NumPy
    keeps the last write there, so an earlier one gets zero.
    """
    part = g[index] if g is not None else None
    if type(value) is types.FunctionType or part is None or type(g) is not np.ndarray:
        # A closure's tangent is a dict by name (see tangents.captured_cotangent); an item of a list
        # or a dict (``m[0] = row``) is what was written there, with no broadcasting to undo.
        return part
    if type(g) is np.ndarray and not tangents.is_basic_index(index) and not _is_mask(index):
        shape = np.shape(part)
        order = np.arange(math.prod(shape)).reshape(shape)
        writer = np.full(g.shape, -1)
        writer[index] = order
        hidden = writer[index] != order
        if hidden.any():
            part = np.where(hidden, np.zeros((), part.dtype), part)
    return unbroadcast(part, value)


def _is_mask(index):
    return type(index) is np.ndarray and index.dtype == bool


def item_cleared(g, index):
    """The cotangent `g` with ``[index]`` set to zero: what flows to the array an assignment overwrote."""
    if isinstance(g, np.ndarray):
        out = g.copy()
        out[index] = 0
        return out
    if isinstance(g, dict):
        out = dict(g)
        if index in out:
            out[index] = _zero_like(out[index])
        return out
    out = list(g)
    if isinstance(index, slice):
        for i in range(*index.indices(len(out))):
            out[i] = _zero_like(out[i])
    else:
        out[index] = _zero_like(out[index])
    return type(g)(out) if isinstance(g, tuple) else out


# -- NumPy functions that write into their first argument, run by value in differentiated code.

def added_at(a, indices, b):
    """``np.add.at(a, indices, b)`` by value: a copy of `a` with `b` added at `indices`, a place
    named twice getting both (the scatter-add of graph networks and finite-element assembly)."""
    out = a.copy()
    np.add.at(out, indices, b)
    return out


def subtracted_at(a, indices, b):
    """``np.subtract.at(a, indices, b)`` by value (see `added_at`)."""
    out = a.copy()
    np.subtract.at(out, indices, b)
    return out


def stored_in(value, out):
    """`value` as NumPy stores it into `out` (``np.exp(v, out=y)``): with `out`'s dtype and shape.

    ``f(..., out=y)`` runs as ``y = stored_in(f(...), y)``: NumPy computes in the dtype of the
    arguments and casts into `y`, so the value is `y`'s dtype, as Python's ``y`` is afterwards.
    """
    if type(value) is np.ndarray and value.dtype == out.dtype and value.shape == out.shape:
        return value
    stored = np.empty_like(out)
    stored[...] = value
    return stored


def diagonal_index(a):
    """The index of the places ``np.fill_diagonal(a, v)`` writes: ``a[i, i, ...]`` for i up to the
    shortest axis (``np.fill_diagonal(a, v)`` runs as ``a[diagonal_index(a)] = v``)."""
    steps = np.arange(min(a.shape))
    return (steps,) * a.ndim


def got_cotangent(g, mapping, key):
    """The cotangent of `mapping` from ``mapping.get(key, default)``'s cotangent `g`: at `key`, if
    the value came from there."""
    return tangents.subscript_cotangent(g, mapping, key) if key in mapping else tangents.zeros_like(mapping)


def default_cotangent(g, mapping, key, default):
    """The cotangent of ``mapping.get(key, default)``'s `default`: `g` if the value was the default."""
    return g if key not in mapping else _zero_like(default)


def super_function(cls, obj, name):
    """What ``super().name`` finds for `obj` in a method of `cls`, as a plain function: differentiated
    code calls it with `obj` as its first argument, so the derivative reaches `obj`."""
    return getattr(super(cls, type(obj)), name)


def rebound(function, names, *values):
    """`function` (a closure) reading `values` for its free variables `names`: how differentiated
    code gives a closure the values its variables have when it is read, as Python does, after the
    function assigned them again (see `Desugar.check_closure_read`)."""
    free = getattr(getattr(function, "__code__", None), "co_freevars", ())
    if not set(names) & set(free):
        return function     # the name holds another function on this path (an `if` chose it)
    cells = list(function.__closure__)
    for name, value in zip(names, values):
        if name in free:
            cells[free.index(name)] = types.CellType(value)
    made = types.FunctionType(function.__code__, function.__globals__, function.__name__,
                              function.__defaults__, tuple(cells))
    made.__kwdefaults__ = function.__kwdefaults__
    return made


class Unassigned:
    """What a variable holds on a path that never assigned it, in differentiated code (see
    `Desugar.checked_read`): reading it is Python's UnboundLocalError, naming the variable."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"unassigned({self.name!r})"


def unassigned(name):
    """The value of variable `name` where no path assigned it."""
    return Unassigned(name)


def assigned(value):
    """`value`, read where its variable may be unassigned: Python's error if it is."""
    if type(value) is Unassigned:
        raise UnboundLocalError(f"cannot access local variable '{value.name}' where it is not associated "
                                "with a value")
    return value


def closure_rest(g, names):
    """The cotangent of the closure `rebound` started from: what is not for `names`."""
    return None if g is None else {key: part for key, part in g.items() if key not in names}


def closure_parts(g, names, values):
    """The cotangents of the values `rebound` gave the closure for `names`."""
    return tuple(tangents.captured_cotangent(g, name, value) for name, value in zip(names, values))


def starred_parts(values, before, after):
    """``a, *rest, b = values`` in differentiated code: the parts Python binds, ``rest`` a list.

    Too few values raise the ValueError Python raises for the assignment.
    """
    items = list(values)
    if len(items) < before + after:
        raise ValueError(f"not enough values to unpack (expected at least {before + after}, "
                         f"got {len(items)})")
    stop = len(items) - after
    return (*items[:before], items[before:stop], *items[stop:])


def starred_cotangent(g, values, before, after):
    """The cotangent of `values` from that of ``starred_parts(values, before, after)``."""
    items = list(values)
    if g is None:
        return _zero_like(values)
    middle = g[before]
    stop = len(items) - after
    middle = [None] * (stop - before) if middle is None else list(middle)
    parts = [*g[:before], *middle, *g[before + 1:]]
    parts = [tangents.zeros_like(x) if d is None else d for d, x in zip(parts, items)]
    if isinstance(values, (list, tuple)):
        return _same_sequence(values, parts)
    return shaped_like(parts, values)


def listed_items(mapping):
    """``d.items()`` in differentiated code: the pairs of a dict as a list, which the pullback can
    index (anything else's ``items()`` as it is)."""
    return list(mapping.items()) if isinstance(mapping, dict) else mapping.items()


def listed_values(mapping):
    """``d.values()`` in differentiated code: the values of a dict as a list."""
    return list(mapping.values()) if isinstance(mapping, dict) else mapping.values()


def listed_keys(mapping):
    """``d.keys()`` in differentiated code: the keys of a dict as a list (no derivative)."""
    return list(mapping) if isinstance(mapping, dict) else mapping.keys()


def flat_items(x):
    """``x.flat`` in differentiated code: an array's elements as ``np.ravel(x)``, which loops and the
    pullback index (a ``flatiter`` has no cotangent); anything else's ``flat`` attribute as it is."""
    return np.ravel(x) if isinstance(x, np.ndarray) else x.flat


def flat_cotangent(g, x):
    """The cotangent of `x` from that of ``flat_items(x)``."""
    if isinstance(x, np.ndarray):
        return shaped_like(g, x)
    return tangents.structures.attribute_cotangent(g, x, "flat")


def items_cotangent(g, mapping):
    """The cotangent of `mapping` from that of ``list(mapping.items())``: each pair's value part."""
    _check_dict(mapping, "items")
    return values_cotangent(None if g is None else [None if pair is None else pair[1] for pair in g], mapping)


def values_cotangent(g, mapping):
    """The cotangent of `mapping` from that of ``list(mapping.values())``."""
    _check_dict(mapping, "values")
    return {key: tangents.zeros_like(value) if g is None or g[i] is None else g[i]
            for i, (key, value) in enumerate(mapping.items())}


def _check_dict(mapping, method):
    if not isinstance(mapping, dict):
        raise TypeError(f"adtrans differentiates '.{method}()' of a dict, not of a "
                        f"{type(mapping).__qualname__}")


def merged(*mappings):
    """``{**a, "k": v, **b}`` in differentiated code: one dict of the items of `mappings` in turn."""
    out = {}
    for mapping in mappings:
        out.update(mapping)
    return out


def merged_cotangents(g, mappings):
    """The cotangent of each of `mappings` in ``merged(*mappings)``: the items it gave the result
    (a key a later mapping also has gets zero). A mapping given as (key, value) pairs
    (``dict(zip(keys, values))``) gets pairs back, each a zero for the key and the value's part."""
    last = {}
    for i, mapping in enumerate(mappings):
        for k, key in enumerate(mapping if isinstance(mapping, dict) else (pair[0] for pair in mapping)):
            last[key] = (i, k)
    out = []
    for i, mapping in enumerate(mappings):
        items = mapping.items() if isinstance(mapping, dict) else mapping
        parts = []
        for k, (key, value) in enumerate(items):
            part = g.get(key) if g is not None and last[key] == (i, k) else None
            parts.append(tangents.zeros_like(value) if part is None else part)
        if isinstance(mapping, dict):
            out.append(dict(zip(mapping, parts)))
        else:
            out.append(_same_sequence(mapping, [_same_sequence(pair, (tangents.zeros_like(pair[0]), part))
                                                for pair, part in zip(mapping, parts)]))
    return tuple(out)


# -- Lists and tuples as values: ``a + b``, ``xs * n``, ``[x, *rest]``, ``zip``, ``enumerate``.

def added(a, b):
    """``a + b``. The pullback of a ``+`` whose operands may be lists or tuples is keyed to this
    function (the forward runs ``a + b`` as written; see `adtrans.sequences`)."""
    return a + b


def multiplied(a, b):
    """``a * b``, keyed like `added` where one operand may be a list or tuple repeated."""
    return a * b


def addend_cotangent(g, a, b, which):
    """The cotangent of operand `which` (0 for `a`, 1 for `b`) of ``a + b``.

    Numbers and arrays: `g` unbroadcast to the operand. Lists or tuples,
    concatenated: the operand's own run of `g`, the first ``len(a)`` items
    for `a`, the rest for `b`.
    """
    x = b if which else a
    if not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
        return unbroadcast(g, x)
    start = len(a) if which else 0
    return _items_cotangent(None if g is None else g[start:start + len(x)], x)


def factor_cotangent(g, x, other):
    """The cotangent of `x` in ``x * other`` (or ``other * x``).

    Numbers and arrays: ``g * other`` unbroadcast to `x`. A list or tuple
    repeated `other` times: the sum of its copies' runs of `g`; the count
    gets a zero.
    """
    if _repeats(x, other):
        n = len(x)
        parts = [None] * n
        if g is not None and n:
            for start in range(0, len(g), n):
                parts = [tangents.add(p, q) for p, q in zip(parts, g[start:start + n])]
        return _items_cotangent(parts, x)
    if _repeats(other, x):
        return tangents.zeros_like(x)
    return unbroadcast(g * other, x)


def _repeats(sequence, count):
    """Does ``sequence * count`` repeat a list or tuple (rather than multiply numbers or arrays)?"""
    return (isinstance(sequence, (list, tuple)) and not isinstance(count, np.ndarray)
            and hasattr(type(count), "__index__"))


def unpacked(layout, *parts):
    """``[x, *rest]`` as a call: `parts` in turn, each marked ``'*'`` in `layout` unpacked. The
    pullback of a display with ``*`` unpacking is keyed to this function (the forward runs the
    display as written)."""
    items = []
    for star, part in zip(layout, parts):
        if star:
            items.extend(part)
        else:
            items.append(part)
    return items


def unpacked_cotangents(g, layout, parts):
    """The cotangents of the parts of a display with ``*`` unpacking (``[x, *rest]``, ``(*a, *b)``):
    an element's item of `g`, an unpacked part its run of items, in the part's own structure."""
    sizes = [_size(part) if star else 1 for star, part in zip(layout, parts)]
    unknown = [i for i, n in enumerate(sizes) if n is None]
    if unknown and g is not None:
        # Iterators (no derivative) unpacked next to each other: their runs are what the others leave.
        if any(sizes[i] is not None for i in range(unknown[0], unknown[-1])):
            raise tangents.structures._error(
                "cannot tell where the parts between iterators unpacked into this display begin", None,
                ["unpack lists or tuples there: list(iterator)"])
        rest = len(g) - sum(n for n in sizes if n is not None)
        sizes = [rest if i == unknown[0] else 0 if n is None else n for i, n in enumerate(sizes)]
    out, start = [], 0
    for star, part, n in zip(layout, parts, sizes):
        if star:
            out.append(_items_cotangent(None if g is None else g[start:start + n], part))
        else:
            item = None if g is None else g[start]
            out.append(tangents.zeros_like(part) if item is None else item)
        start += n or 0
    return tuple(out)


def zipped(*iterables, strict=False):
    """``list(zip(*iterables))``: how differentiated code runs a ``zip`` used as a value (a ``for``
    loop over a zip is lowered on its own): a list of tuples the pullback can index."""
    if strict:
        return list(zip(*iterables, strict=True))
    return list(zip(*iterables))


def zipped_cotangents(g, iterables):
    """The cotangent of each sequence in ``zipped(*iterables)``: item k of sequence j gets part j
    of `g`'s pair k (a zero past the shortest sequence, which zip never reached)."""
    out = []
    for j, sequence in enumerate(iterables):
        n = _size(sequence)
        if n is None:
            out.append(None)        # an iterator: no derivative
            continue
        pairs = [None] * n if g is None else list(g[:n]) + [None] * (n - len(g))
        out.append(_items_cotangent([None if pair is None else pair[j] for pair in pairs], sequence))
    return tuple(out)


def enumerated(iterable, start=0):
    """``list(enumerate(iterable, start))``: how differentiated code runs an ``enumerate`` used as
    a value (see `zipped`)."""
    return list(enumerate(iterable, start))


def enumerated_cotangent(g, iterable):
    """The cotangent of the sequence in ``enumerated(iterable)``: the item part of each pair of `g`."""
    return _items_cotangent(None if g is None else [None if pair is None else pair[1] for pair in g], iterable)


def _size(sequence):
    """``len(sequence)``, or None for an iterator (which holds no derivative: SPEC's values are
    floats, arrays and containers of them)."""
    return len(sequence) if hasattr(sequence, "__len__") else None


def _items_cotangent(parts, x):
    """The cotangent of the sequence `x` from one cotangent per item (`parts`, None for zeros), in
    `x`'s structure: a list, tuple or NamedTuple of them, an array for an array."""
    n = _size(x)
    if n is None:
        return None
    parts = [None] * n if parts is None else list(parts) + [None] * (n - len(parts))
    if isinstance(x, (list, tuple)):
        return _same_sequence(x, [tangents.zeros_like(xi) if p is None else p for p, xi in zip(parts, x)])
    if isinstance(x, np.ndarray):
        rows = [_zero_like(x[k]) if p is None else p for k, p in enumerate(parts)]
        return shaped_like(np.asarray(rows) if rows else np.zeros(x.shape), x)
    return tangents.zeros_like(x)     # a dict (whose keys were taken), a range or a string


# -- Growing a list (``xs.append(v)``, ``xs.extend(vs)`` in differentiated code): value semantics.

def appended(xs, value):
    """``xs + [value]``: how differentiated code runs ``xs.append(value)`` on a local list.

    A new list, as ``x[i] = v`` makes a new array (`with_item`): the pullback
    still sees each earlier list as it was. Anything but a list appends in
    place, as written.
    """
    if type(xs) is list:
        return xs + [value]
    xs.append(value)
    return xs


def extended(xs, values):
    """``xs + list(values)``: how differentiated code runs ``xs.extend(values)`` on a local list."""
    if type(xs) is list:
        return xs + list(values)
    xs.extend(values)
    return xs


def appended_head(g):
    """The cotangent of `xs` in ``appended(xs, v)``: all of `g` but its last item."""
    return None if g is None else list(g[:-1])


def extended_head(g, values):
    """The cotangent of `xs` in ``extended(xs, values)``: `g` but its last ``len(values)`` items."""
    return None if g is None else list(g[:len(g) - len(values)])


def appended_last(g, value):
    """The cotangent of `value` in ``appended(xs, value)``: `g`'s last item."""
    part = None if g is None else g[-1]
    return _zero_like(value) if part is None else part


def extended_tail(g, values):
    """The cotangent of `values` in ``extended(xs, values)``: `g`'s last ``len(values)`` items."""
    tail = [None] * len(values) if g is None else list(g[len(g) - len(values):])
    return shaped_like([_zero_like(v) if t is None else t for t, v in zip(tail, values)], values)


# -- Assignment to an attribute (``obj.name = v`` in differentiated code): value semantics.

def with_field(obj, name, value):
    """A shallow copy of `obj` with `name` set to `value`: how differentiated code runs ``obj.name = v``."""
    import copy

    if isinstance(obj, tuple) and hasattr(obj, "_replace"):
        return obj._replace(**{name: value})       # a NamedTuple
    out = copy.copy(obj)
    object.__setattr__(out, name, value)
    return out


def field_cleared(g, name):
    """The cotangent `g` of an object without its field `name`: what flows to the object overwritten."""
    import copy

    if g is None or not hasattr(g, name):
        return g
    if isinstance(g, tuple) and hasattr(g, "_replace"):
        return g._replace(**{name: tangents.zeros_like(getattr(g, name))})
    out = copy.copy(g)
    object.__setattr__(out, name, None)
    return out


def field_cotangent(g, name, value):
    """The cotangent of the value assigned to field `name`, read from the object's cotangent `g`."""
    part = getattr(g, name, None) if g is not None else None
    return tangents.like(part, value)
