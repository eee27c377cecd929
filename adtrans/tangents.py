"""Tangent arithmetic: zeros, sums and structure for every differentiable value.

A tangent has the structure of its value (SPEC section 2): a float for a
float, an array of the same shape and dtype for an array, the same tuple,
list or dict for a container.  Generated code uses ``+`` where a value is
known to be a number or an array and these helpers elsewhere.
"""

import numbers

import numpy as np


def is_differentiable(value):
    """Can `value` carry a derivative (floats, float arrays, containers of them)?"""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return True
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        return np.issubdtype(value.dtype, np.inexact)
    if isinstance(value, (tuple, list)):
        return any(is_differentiable(v) for v in value)
    if isinstance(value, dict):
        return any(is_differentiable(v) for v in value.values())
    return False


def zeros_like(value):
    """The zero tangent of `value`."""
    if isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.inexact):
            return np.zeros_like(value)
        return np.zeros(value.shape)
    if isinstance(value, np.generic):
        return value.dtype.type(0) if np.issubdtype(value.dtype, np.inexact) else 0.0
    if isinstance(value, (bool, numbers.Number)):
        return 0.0 if not isinstance(value, complex) else 0j
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(zeros_like(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(zeros_like(v) for v in value)
    if isinstance(value, dict):
        return {k: zeros_like(v) for k, v in value.items()}
    return None


def add(a, b):
    """The sum of two tangents of the same value; None stands for zero."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        parts = [add(x, y) for x, y in zip(a, b)]
        if hasattr(a, "_fields"):
            return type(a)(*parts)
        return type(a)(parts)
    if isinstance(a, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = add(out.get(k), v)
        return out
    return a + b


def subscript_cotangent(d, value, index):
    """The cotangent of `value` given the cotangent `d` of ``value[index]``."""
    if isinstance(value, np.ndarray):
        out = np.zeros_like(value) if np.issubdtype(value.dtype, np.inexact) else np.zeros(value.shape)
        if _is_basic_index(index):
            out[index] += d
        else:
            np.add.at(out, index, d)
        return out
    if isinstance(value, (tuple, list)):
        parts = [zeros_like(v) for v in value]
        if isinstance(index, slice):
            for i, part in zip(range(*index.indices(len(value))), d):
                parts[i] = add(parts[i], part)
        else:
            parts[index] = add(parts[index], d)
        if hasattr(value, "_fields"):
            return type(value)(*parts)
        return type(value)(parts)
    if isinstance(value, dict):
        out = zeros_like(value)
        out[index] = add(out[index], d)
        return out
    raise TypeError(f"cannot take the cotangent of a subscript of {type(value).__name__}")


def _is_basic_index(index):
    if isinstance(index, tuple):
        return all(_is_basic_index(i) for i in index)
    return index is None or index is Ellipsis or isinstance(index, (int, np.integer, slice))


def like(tangent, value):
    """`tangent` given the structure, shape and dtype of `value` (at the API boundary)."""
    if tangent is None:
        return zeros_like(value)
    if isinstance(value, np.ndarray):
        tangent = np.asarray(tangent)
        if np.issubdtype(value.dtype, np.inexact) and tangent.dtype != value.dtype:
            tangent = tangent.astype(value.dtype)
        if tangent.shape != value.shape:
            tangent = np.broadcast_to(tangent, value.shape).copy()
        return tangent
    if isinstance(value, np.generic) and np.issubdtype(value.dtype, np.inexact):
        return value.dtype.type(tangent)
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        if isinstance(tangent, np.ndarray) and tangent.shape == ():
            return float(tangent)
        if isinstance(tangent, (np.floating, np.integer, int)):
            return float(tangent)
        return tangent
    if isinstance(value, (tuple, list)) and isinstance(tangent, (tuple, list)):
        parts = [like(t, v) for t, v in zip(tangent, value)]
        if hasattr(value, "_fields"):
            return type(value)(*parts)
        return type(value)(parts)
    if isinstance(value, dict) and isinstance(tangent, dict):
        return {k: like(tangent.get(k), v) for k, v in value.items()}
    return tangent


def call_hook(hook, d):
    """Run a `with_derivative` hook: a non-None return replaces the cotangent."""
    replaced = hook(d)
    return d if replaced is None else replaced


# -- Structured values: dataclasses and NamedTuples (SPEC section 2).

def is_structure_type(cls):
    """Is `cls` a dataclass or a NamedTuple, whose instances have tangents field by field?"""
    import dataclasses

    return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))


def attribute_cotangent(d, obj, name):
    """The cotangent of `obj` given the cotangent `d` of ``obj.name`` (a field or a property)."""
    raise NotImplementedError("attribute_cotangent")


def field_cotangents(d, cls, names):
    """The tangents of the constructor arguments `names` given the cotangent `d` of ``cls(...)``."""
    raise NotImplementedError("field_cotangents")
