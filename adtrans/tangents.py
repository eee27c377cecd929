"""Tangent arithmetic: zeros, sums and structure for every differentiable value.

A tangent has the structure of its value (SPEC section 2): a float for a
float, an array of the same shape and dtype for an array, the same tuple,
list, dict or NamedTuple for a container, and a ``TangentVector`` for a
dataclass instance (see `adtrans.structures`).  Generated code uses ``+``
where a value is known to be a number or an array and these helpers
elsewhere.  ``None`` stands for a zero tangent wherever one is accepted.
"""

import copy
import numbers

import numpy as np

from adtrans import structures


def is_differentiable(value):
    """Can `value` carry a derivative (floats, float arrays, containers of them)?"""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return True
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        return value.dtype.kind in "fc"
    if isinstance(value, (tuple, list)):
        return any(is_differentiable(v) for v in value)
    if isinstance(value, dict):
        return any(is_differentiable(v) for v in value.values())
    if structures.is_dataclass_instance(value):
        return structures.is_differentiable(value)
    return False


def zeros_like(value):
    """The zero tangent of `value`."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc":
            return np.zeros_like(value)
        return np.zeros(value.shape)
    if isinstance(value, np.generic):
        return value.dtype.type(0) if value.dtype.kind in "fc" else 0.0
    if isinstance(value, (bool, numbers.Number)):
        return 0.0 if not isinstance(value, complex) else 0j
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(zeros_like(v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(zeros_like(v) for v in value)
    if isinstance(value, dict):
        return {k: zeros_like(v) for k, v in value.items()}
    if structures.is_dataclass_instance(value):
        return structures.zeros_like(value)
    return None


def add(a, b):
    """The sum of two tangents of the same value; None stands for zero."""
    if a is None:
        return b
    if b is None:
        return a
    if isinstance(a, (float, np.ndarray)):
        return a + b
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
    if structures.is_dataclass_instance(a) or structures.is_dataclass_instance(b):
        return structures.add(a, b)
    return a + b


def add_into(d, part):
    """``d + part``, where `d` is a cotangent the pullback made itself (a zero before a loop): an
    array is added into in place, as generated code writes ``d += part`` for a number or an array;
    anything else (a list, added item by item) as `add` does."""
    if type(d) is np.ndarray and isinstance(part, (np.ndarray, np.generic, float)):
        d += part
        return d
    return add(d, part)


def scale(t, s):
    """The tangent `t` scaled by the number `s` (None stays None: zero)."""
    if t is None:
        return None
    if isinstance(t, (tuple, list)):
        parts = [scale(x, s) for x in t]
        if hasattr(t, "_fields"):
            return type(t)(*parts)
        return type(t)(parts)
    if isinstance(t, dict):
        return {k: scale(v, s) for k, v in t.items()}
    if structures.is_dataclass_instance(t):
        return structures.scale(t, s)
    if isinstance(t, np.ndarray) and isinstance(s, (int, float)):
        return t * t.dtype.type(s) if t.dtype.kind in "fc" else t * s
    return t * s


def move(model, tangent, scale=1.0):
    """`model` moved along `tangent`: ``model + scale * tangent``, field by field, as a new value.

    ::

        gradient = adtrans.gradient(loss, model)
        model = adtrans.move(model, gradient, scale=-0.01)     # a step of gradient descent

    Works on a dataclass instance (a new instance made with
    ``dataclasses.replace``; fields without a derivative are kept), a
    NamedTuple, tuple, list or dict of values, an array (same dtype) or a
    float. A ``None`` in the tangent leaves that part unchanged.
    """
    if tangent is None:
        return model
    if structures.is_dataclass_instance(model):
        return structures.move(model, tangent, scale)
    if isinstance(model, tuple) and hasattr(model, "_fields"):
        return type(model)(*(move(v, t, scale) for v, t in zip(model, tangent)))
    if isinstance(model, (tuple, list)):
        return type(model)(move(v, t, scale) for v, t in zip(model, tangent))
    if isinstance(model, dict):
        return {k: move(v, tangent.get(k), scale) for k, v in model.items()}
    if isinstance(model, bool) or not (isinstance(model, (int, float)) or is_differentiable(model)):
        return model    # a constant: ints, strings, integer arrays
    if isinstance(model, np.ndarray):
        return (model + scale * np.asarray(tangent)).astype(model.dtype, copy=False)
    if isinstance(model, np.generic):
        return model.dtype.type(model + scale * tangent)
    return float(model + scale * tangent)


def subscript_cotangent(d, value, index):
    """The cotangent of `value` given the cotangent `d` of ``value[index]``."""
    if isinstance(value, np.ndarray):
        out = np.zeros_like(value) if value.dtype.kind in "fc" else np.zeros(value.shape)
        if d is None:
            return out          # a zero cotangent not made (an item nobody pulled back to)
        if is_basic_index(index):
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
    raise structures._error(
        f"cannot differentiate a subscript of a value of type {type(value).__qualname__}", None,
        ["adtrans differentiates subscripts of arrays, tuples, lists, dicts and NamedTuples; wrap the "
         "value in 'without_derivative' if no derivative should flow through it"])


def captured_cotangent(d, name, value):
    """The cotangent of the local `name` (holding `value`) that a closure read, from the closure's
    cotangent `d`: a dict by the names of its free variables (see `api.call_with_pullback`)."""
    part = d.get(name) if d is not None else None
    return zeros_like(value) if part is None else part


def lazy_zeros(value):
    """A zero cotangent whose containers hold None (a zero not yet made) for each element.

    A loop that adds into a list's cotangent item by item then keeps the
    items' own cotangents instead of adding them to freshly made zeros.
    """
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return [None] * len(value)
    return zeros_like(value)


def filled(d, value):
    """`d` with the zeros `lazy_zeros` left as None made, once the loop that filled it is done."""
    if isinstance(d, list) and isinstance(value, (list, tuple)) and any(part is None for part in d):
        return [zeros_like(v) if part is None else part for part, v in zip(d, value)]
    return d


def owned_copy(d):
    """A copy of a cotangent that the pullback may then add into in place."""
    if isinstance(d, np.ndarray):
        return d.copy()
    if isinstance(d, list):
        return list(d)
    if isinstance(d, dict):
        return dict(d)
    return d


def add_item(d, index, part):
    """Add `part` into ``d[index]``: in place for an array or list the pullback owns."""
    if isinstance(d, np.ndarray):
        if is_basic_index(index):
            d[index] += part
        else:
            np.add.at(d, index, part)
        return d
    if isinstance(d, list):
        d[index] = add(d[index], part)
        return d
    if isinstance(d, tuple):
        parts = list(d)
        parts[index] = add(parts[index], part)
        return type(d)(*parts) if hasattr(d, "_fields") else tuple(parts)
    if isinstance(d, dict):
        d[index] = add(d.get(index), part)
        return d
    return subscript_cotangent(part, d, index)


def is_basic_index(index):
    if isinstance(index, tuple):
        return all(is_basic_index(i) for i in index)
    return index is None or index is Ellipsis or isinstance(index, (int, np.integer, slice))


def like(tangent, value):
    """`tangent` given the structure, shape and dtype of `value` (at the API boundary)."""
    if tangent is None:
        return zeros_like(value)
    if isinstance(value, np.ndarray):
        tangent = np.asarray(tangent)
        if value.dtype.kind in "fc" and tangent.dtype != value.dtype:
            tangent = tangent.astype(value.dtype)
        if tangent.shape != value.shape:
            tangent = np.broadcast_to(tangent, value.shape).copy()
        return tangent
    if isinstance(value, np.generic) and value.dtype.kind in "fc":
        return value.dtype.type(tangent)
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        if isinstance(tangent, np.ndarray) and tangent.shape == ():
            return float(tangent)
        if isinstance(tangent, (np.floating, np.integer, int)):
            return float(tangent)
        return tangent
    if isinstance(value, (tuple, list)) and isinstance(tangent, (tuple, list, np.ndarray)):
        # An ndarray: a NumPy function took the list as an array (np.sin(xs)); the tangent is the list's.
        if len(tangent) != len(value):
            # Cotangents of a list joined with + (concatenated) would get here: never cut them.
            raise RuntimeError(f"adtrans internal error: a tangent of {len(tangent)} items for a "
                               f"{type(value).__name__} of {len(value)}; please report it")
        parts = [like(t, v) for t, v in zip(tangent, value)]
        if hasattr(value, "_fields"):
            return type(value)(*parts)
        return type(value)(parts)
    if isinstance(value, dict) and isinstance(tangent, dict):
        return {k: like(tangent.get(k), v) for k, v in value.items()}
    if structures.is_dataclass_instance(value):
        return structures.like(tangent, value)
    return tangent


def call_hook(hook, d):
    """Run a `with_derivative` hook: a non-None return replaces the cotangent.

    The hook gets its own copy: it may change the cotangent in place (SPEC section 4), and the
    array it was given may be another path's cotangent too, or the one the user passed in.
    """
    if type(d) is np.ndarray:
        d = d.copy()
    elif d is not None and not isinstance(d, numbers.Number):
        d = copy.deepcopy(d)
    replaced = hook(d)
    return d if replaced is None else replaced


# -- Structured values: dataclasses and NamedTuples (SPEC section 2); see adtrans.structures.

def is_structure_type(cls):
    """Is `cls` a dataclass or a NamedTuple, whose instances have tangents field by field?"""
    import dataclasses

    return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))


tangent_type = structures.tangent_type
attribute_cotangent = structures.attribute_cotangent
field_cotangents = structures.field_cotangents


# -- Handing a cotangent over from one generated pullback to another.

class HandedOver:
    """A cotangent in transit: its caller kept no other reference (see `hand_over`)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


_TAKEN = object()


def hand_over(d):
    """`d` boxed for a generated pullback that takes it over, where the caller reads it no more.

    A caller's local holds its argument while the callee runs, so a
    cotangent the caller is done with would live through the whole call::

        d_h_1 = hand_over(d_h_1)
        d_h_2_arguments = segment_value_with_pullback(h_1, Ws_item, bs_item)[1](d_h_1)

    Now the caller holds the box; the callee's `take_over` empties it, and
    the callee's ``del`` frees the array where it dies. Generated code hands
    over only to generated pullbacks that take over (`Generated.takes_over`),
    never to a user's derivative or a rule, and only names no later
    statement reads (`release.release_dead`).
    """
    return HandedOver(d)


def take_over(d):
    """The cotangent a pullback was called with, out of its `hand_over` box if it came in one."""
    if type(d) is not HandedOver:
        return d
    value = d.value
    if value is _TAKEN:
        raise RuntimeError("adtrans internal error: a handed-over cotangent was read twice")
    d.value = _TAKEN
    return value


# -- Replaying a loop's tape in the pullback.

import threading

class NotScalar(Exception):
    """Raised by `gradient_seed`; the API turns it into an error that names the function."""


def gradient_seed(value):
    """The cotangent 1 of a scalar result, in its type (a float32 result gets float32 1)."""
    if isinstance(value, float):
        return 1.0
    if getattr(value, "shape", None) == () and hasattr(value, "dtype"):
        return value.dtype.type(1) if value.dtype.kind in "fc" else 1.0
    if isinstance(value, int) and not isinstance(value, bool):
        return 1.0
    raise NotScalar(value)


class _SingleUse(threading.local):
    depth = 0


_single_use = _SingleUse()


def replay(tape):
    """A loop tape's entries, last first.

    Normally ``reversed(tape)``, so a pullback can be called again. While a
    pullback runs that nobody can call twice (inside `gradient`), a tape of
    arrays is popped as it is replayed, so what each pass kept is freed as
    soon as its pullback has run.
    """
    if _single_use.depth and tape and _holds_arrays(tape[-1]):
        return _popping(tape)
    return reversed(tape)


def _popping(tape):
    # Not iter(tape.pop, sentinel): that compares each entry with the sentinel, and an entry
    # that is a bare array has no truth value.
    while tape:
        yield tape.pop()


def _holds_arrays(entry):
    """Is freeing this tape's entries early worth it (they hold arrays, not a few floats)?"""
    parts = entry if isinstance(entry, tuple) else (entry,)
    return any(isinstance(part, np.ndarray) for part in parts)


class single_use:
    """Within this context, pullbacks free their tapes as they replay them."""

    def __enter__(self):
        _single_use.depth += 1

    def __exit__(self, *exc):
        _single_use.depth -= 1
        return False
