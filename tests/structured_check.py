"""Checking a gradient against finite differences, for arguments of any structure.

``assert_gradient(f, *args, wrt=positions)`` compares adtrans's gradient of
`f` with central differences in float64 through the three entry points a user
reaches for (``gradient``, ``value_with_gradient``, ``value_with_pullback``),
checks each value equals ``f(*args)`` and each tangent keeps its argument's
structure, shape and dtype. Arguments may be floats, arrays, lists, tuples,
dicts, NamedTuples and dataclasses (fields declared ``no_derivative`` left
out). Used by the realistic-program tests.
"""

import dataclasses

import numpy as np

import adtrans


def _fields(x):
    """The fields of dataclass `x` that can carry a derivative (not declared no_derivative)."""
    return [f for f in dataclasses.fields(x) if not f.metadata.get("no_derivative")]


def _flat(x):
    """The float numbers of `x` (float, array, list/tuple/dict, dataclass) as a float64 vector."""
    if isinstance(x, bool) or x is None:
        return np.zeros(0)
    if isinstance(x, (float, np.floating)):
        return np.array([float(x)])
    if isinstance(x, np.ndarray):
        return x.astype(np.float64).ravel() if x.dtype.kind == "f" else np.zeros(0)
    if isinstance(x, (list, tuple)):
        return np.concatenate([np.zeros(0)] + [_flat(v) for v in x])
    if isinstance(x, dict):
        return np.concatenate([np.zeros(0)] + [_flat(x[k]) for k in x])
    if dataclasses.is_dataclass(x):
        return np.concatenate([np.zeros(0)] + [_flat(getattr(x, f.name)) for f in _fields(x)])
    return np.zeros(0)


def _flat_tangent(t, like):
    """The tangent `t` of the value `like`, flattened in `_flat(like)`'s order."""
    if isinstance(like, bool) or like is None:
        return np.zeros(0)
    if isinstance(like, (float, np.floating)):
        return np.array([float(t)])
    if isinstance(like, np.ndarray):
        if like.dtype.kind != "f":
            return np.zeros(0)
        t = np.asarray(t)
        assert t.shape == like.shape, f"tangent of shape {t.shape} for a value of shape {like.shape}"
        assert t.dtype == like.dtype, f"tangent of dtype {t.dtype} for a value of dtype {like.dtype}"
        return t.astype(np.float64).ravel()
    if isinstance(like, (list, tuple)):
        assert len(t) == len(like)
        return np.concatenate([np.zeros(0)] + [_flat_tangent(a, b) for a, b in zip(t, like)])
    if isinstance(like, dict):
        return np.concatenate([np.zeros(0)] + [_flat_tangent(t[k], like[k]) for k in like])
    if dataclasses.is_dataclass(like):
        parts = [np.zeros(0)]
        for f in _fields(like):
            value = getattr(like, f.name)
            n = _flat(value).size
            if n:
                parts.append(_flat_tangent(getattr(t, f.name), value))
        return np.concatenate(parts)
    return np.zeros(0)


def _replaced(x, numbers):
    """`x` with its float numbers replaced, in `_flat` order, by the iterator `numbers`."""
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, (float, np.floating)):
        return float(next(numbers))
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            return x
        return np.array([next(numbers) for _ in range(x.size)], dtype=np.float64).reshape(x.shape)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*[_replaced(v, numbers) for v in x])
    if isinstance(x, (list, tuple)):
        return type(x)(_replaced(v, numbers) for v in x)
    if isinstance(x, dict):
        return {k: _replaced(v, numbers) for k, v in x.items()}
    if dataclasses.is_dataclass(x):
        return dataclasses.replace(x, **{f.name: _replaced(getattr(x, f.name), numbers)
                                         for f in _fields(x) if f.init})
    return x


def finite_differences(f, args, kwargs, position, eps=1e-6):
    """Central differences of scalar `f` w.r.t. every float number of ``args[position]``."""
    base = _flat(args[position])
    grad = np.zeros_like(base)
    for k in range(base.size):
        values = []
        for sign in (1.0, -1.0):
            trial = base.copy()
            trial[k] += sign * eps
            new = list(args)
            new[position] = _replaced(args[position], iter(trial))
            values.append(float(f(*new, **kwargs)))
        grad[k] = (values[0] - values[1]) / (2 * eps)
    return grad


def assert_gradient(f, *args, wrt=None, rtol=1e-5, atol=1e-7, eps=1e-6, **kwargs):
    """adtrans's gradient of `f` at `args` equals central differences, through three entry points.

    `wrt` is a tuple of positions (default: every argument holding floats).
    Returns the gradients `gradient` gave, one per position.
    """
    positions = tuple(i for i, a in enumerate(args) if _flat(a).size) if wrt is None else wrt
    expected = f(*args, **kwargs)

    grads = adtrans.gradient(f, *args, wrt=positions, **kwargs)
    value, grads_v = adtrans.value_with_gradient(f, *args, wrt=positions, **kwargs)
    value_p, pull = adtrans.value_with_pullback(f, *args, wrt=positions, **kwargs)
    grads_p = pull(1.0)
    for v in (value, value_p):
        assert np.array_equal(np.asarray(v), np.asarray(expected)), f"value {v!r}, f gives {expected!r}"
    for name, got in (("gradient", grads), ("value_with_gradient", grads_v), ("value_with_pullback", grads_p)):
        assert len(got) == len(positions), f"{name}: {len(got)} tangents for {len(positions)} arguments"
        for i, tangent in zip(positions, got):
            numeric = finite_differences(f, args, kwargs, i, eps)
            mine = _flat_tangent(tangent, args[i])
            scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
            np.testing.assert_allclose(mine, numeric, rtol=rtol, atol=atol * scale,
                                       err_msg=f"{name}: gradient w.r.t. argument {i}")
    return grads

