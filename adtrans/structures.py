"""Tangents of structured values: dataclass instances and NamedTuples (SPEC section 2).

A NamedTuple's tangent is the same NamedTuple of its fields' tangents.  A
dataclass instance's tangent is a ``TangentVector``: a dataclass of the fields
that can carry a derivative, made once per class by `tangent_type`::

    @dataclass
    class Dense:
        weight: np.ndarray
        bias: np.ndarray
        name: str = "dense"                                   # a str: excluded
        scale: float = field(default=1.0, metadata={"no_derivative": True})

    tangent_type(Dense)      # Dense.TangentVector(weight, bias)

When every field can carry a derivative, the tangent is a ``Vector`` itself:
``tangent_type(Vector)`` is a subclass of ``Vector`` (so ``isinstance(g,
Vector)`` holds and its methods and properties work) that adds the tangent
arithmetic without touching the user's class.

Which fields are in the tangent is decided from the class: a field is left
out when its metadata says ``no_derivative`` or its annotation says it can
never hold a derivative (``int``, ``bool``, ``str``, ``bytes``, ``None``,
``Callable``).  A field in the tangent whose *value* cannot carry a
derivative (``None``, an integer array, a function) has ``None`` as its
tangent: no derivative.

Inside generated pullbacks a tangent field may also be ``None`` meaning
zero: reading ``obj.weight`` pulls back to a tangent with only ``weight``
set, so a model of many fields is not filled with zeros at every read.  The
API boundary (`like`) gives users full tangents, zeros included.
"""

import collections.abc
import dataclasses
import functools
import inspect
import linecache
import numbers
import re
import sys
import types
import typing

import numpy as np

from adtrans import tangents
from adtrans.errors import DifferentiationError, Location

NO_DERIVATIVE = "no_derivative"

# The object a sparse tangent is the tangent of: lets `field_cotangents` make zeros of the right
# shape for fields no derivative reached.  Not a field: equality, repr, pickling and copies ignore it.
_PRIMAL = "__adtrans_primal__"

_tangent_types = {}      # class -> its TangentVector class


# -- which fields carry a derivative

def is_dataclass_instance(value):
    kind = type(value)
    known = _dataclass_types.get(kind)
    if known is None:      # a failed attribute lookup on a type is slow: decide once per type
        known = _dataclass_types[kind] = hasattr(kind, "__dataclass_fields__") and not issubclass(kind, type)
    return known


_dataclass_types = {}


def is_namedtuple(value):
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def tangent_fields(cls):
    """The names of `cls`'s fields that are in its tangent, in declaration order."""
    return tangent_type(cls).__adtrans_fields__


def _static_fields(cls):
    try:
        hints = typing.get_type_hints(cls)
    except Exception:       # an annotation naming something not importable here: read it as text
        hints = {}
    names = []
    for f in dataclasses.fields(cls):
        if f.metadata.get(NO_DERIVATIVE):
            continue
        if _never_differentiable(hints.get(f.name, f.type)):
            continue
        names.append(f.name)
    return tuple(names)


_NEVER = (int, bool, str, bytes, type(None), None)
_NEVER_TEXT = re.compile(r"^(int|bool|str|bytes|None|(typing\.|collections\.abc\.)?Callable(\[.*\])?)$")


def _never_differentiable(annotation):
    """Does the annotation say the field can never hold a derivative?"""
    if isinstance(annotation, str):
        return bool(_NEVER_TEXT.match(annotation.strip()))
    if any(annotation is t for t in _NEVER):
        return True
    if annotation is collections.abc.Callable or annotation is typing.Callable:
        return True
    origin = getattr(annotation, "__origin__", None)
    if origin is collections.abc.Callable:
        return True
    if origin is typing.Union:
        return all(_never_differentiable(a) for a in annotation.__args__)
    return False


# -- the TangentVector classes

def tangent_type(cls):
    """The class of the tangents of `cls`'s instances (made once per class).

    A NamedTuple is its own tangent type.  A dataclass gets ``cls.TangentVector``
    (by name; the user's class is not modified): a dataclass of the fields that
    carry a derivative, or, when all of them do, a subclass of `cls`.  Either
    supports ``+``, ``-``, scaling by a number and ``TangentVector.zeros(model)``.
    """
    made = _tangent_types.get(cls)
    if made is not None:
        return made
    if not isinstance(cls, type):
        raise TypeError(f"tangent_type expects a class, not {cls!r}")
    if cls.__dict__.get("__adtrans_tangent__"):
        made = cls
    elif issubclass(cls, tuple) and hasattr(cls, "_fields"):
        made = cls
    elif dataclasses.is_dataclass(cls):
        made = _make_tangent_type(cls)
    else:
        raise TypeError(f"{cls.__qualname__} is not a dataclass or a NamedTuple")
    _tangent_types[cls] = made
    return made


def _make_tangent_type(cls):
    names = _static_fields(cls)
    every = tuple(f.name for f in dataclasses.fields(cls))
    namespace = dict(_ARITHMETIC)
    computed = tuple(n for n in names if not cls.__dataclass_fields__[n].init)
    namespace.update(__adtrans_tangent__=True, __adtrans_fields__=names, __adtrans_of__=cls,
                     __adtrans_computed__=computed,
                     __module__=cls.__module__, __reduce__=_reduce)
    if names == every:
        # Every field carries a derivative: the tangent is a `cls` (a subclass adding the arithmetic).
        if cls.__dataclass_params__.eq:
            namespace["__eq__"] = _eq_fields
            namespace["__hash__"] = cls.__hash__
        made = type("TangentVector", (cls, _TangentBase), namespace)
    else:
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
        made = dataclasses.make_dataclass(
            "TangentVector", [(n, hints[n]) for n in names], bases=(_TangentBase,), namespace=namespace)
    made.__qualname__ = f"{cls.__qualname__}.TangentVector"
    return made


def new_tangent(cls, values, primal=None):
    """An instance of `cls`'s tangent type holding `values` (a dict; missing fields are None)."""
    kind = tangent_type(cls)
    out = object.__new__(kind)
    for name in kind.__adtrans_fields__:
        object.__setattr__(out, name, values.get(name))
    if primal is not None:
        object.__setattr__(out, _PRIMAL, primal)
    return out


def _get(tangent, name):
    """A field of a tangent given as a TangentVector, an instance of the class, or a dict."""
    if isinstance(tangent, dict):
        return tangent.get(name)
    return getattr(tangent, name, None)


def _is_zero_scalar(x):
    return isinstance(x, numbers.Number) and not isinstance(x, bool) and x == 0


def add(a, b):
    """Field-by-field sum of two tangents of the same dataclass (None and 0 stand for zero)."""
    if a is None or _is_zero_scalar(a):
        return b
    if b is None or _is_zero_scalar(b):
        return a
    kind = tangent_type(type(a))
    if not isinstance(b, (kind.__adtrans_of__, kind)):
        raise TypeError(f"cannot add a tangent of {kind.__adtrans_of__.__qualname__} "
                        f"and {type(b).__qualname__}")
    values = {n: tangents.add(_get(a, n), _get(b, n)) for n in kind.__adtrans_fields__}
    return new_tangent(kind, values, getattr(a, _PRIMAL, None) or getattr(b, _PRIMAL, None))


def scale(t, s):
    kind = tangent_type(type(t))
    return new_tangent(kind, {n: tangents.scale(_get(t, n), s) for n in kind.__adtrans_fields__})


def _neg(self):
    return scale(self, -1.0)


def _sub(self, other):
    return add(self, tangents.scale(other, -1.0))


def _rsub(self, other):
    return add(tangents.scale(self, -1.0), other)


def _mul(self, s):
    if not _is_scalar(s):
        return NotImplemented
    return scale(self, s)


def _truediv(self, s):
    if not _is_scalar(s):
        return NotImplemented
    return scale(self, 1.0 / s)


def _is_scalar(s):
    return (isinstance(s, numbers.Number) and not isinstance(s, bool)) or (
        isinstance(s, np.ndarray) and s.shape == ())


def _add_method(self, other):
    if other is None or _is_zero_scalar(other) or isinstance(other, (type(self).__adtrans_of__, type(self))):
        return add(self, other)
    return NotImplemented


_ARITHMETIC = {
    "__add__": _add_method, "__radd__": _add_method, "__sub__": _sub, "__rsub__": _rsub,
    "__neg__": _neg, "__mul__": _mul, "__rmul__": _mul, "__truediv__": _truediv,
}


def _eq_fields(self, other):
    base = type(self).__adtrans_of__
    if not isinstance(other, base):
        return NotImplemented
    names = [f.name for f in dataclasses.fields(base) if f.compare]
    return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)


def _reduce(self):
    kind = type(self)
    return (_rebuild, (kind.__adtrans_of__, {n: getattr(self, n) for n in kind.__adtrans_fields__}))


def _rebuild(cls, values):
    return new_tangent(cls, values)


class _TangentBase:
    """What every generated TangentVector has beyond its fields."""

    __slots__ = ()

    @classmethod
    def zeros(cls, model):
        """The zero tangent of `model` (an instance of the class this is the tangent of)."""
        if not isinstance(model, (cls.__adtrans_of__, cls)):
            raise TypeError(f"{cls.__qualname__}.zeros expects a {cls.__adtrans_of__.__qualname__}, "
                            f"not {type(model).__qualname__}")
        return zeros_like(model)


# -- zeros, structure, moving

def field_zero(value):
    """The zero tangent of a field's value, or None when the value carries no derivative."""
    if type(value) is float:
        return 0.0
    if tangents.is_differentiable(value):
        return tangents.zeros_like(value)
    return None


def is_differentiable(obj):
    return any(tangents.is_differentiable(getattr(obj, n)) for n in tangent_fields(type(obj)))


def zeros_like(obj):
    kind = tangent_type(type(obj))
    return new_tangent(kind, {n: field_zero(getattr(obj, n)) for n in kind.__adtrans_fields__})


def like(tangent, obj):
    """`tangent` as a full tangent of dataclass instance `obj`: zeros where nothing reached."""
    if tangent is None or _is_zero_scalar(tangent):
        return new_tangent(type(obj), {n: field_zero(getattr(obj, n)) for n in tangent_fields(type(obj))})
    values = {}
    for name in tangent_fields(type(obj)):
        value = getattr(obj, name)
        if type(value) is float or tangents.is_differentiable(value):
            values[name] = tangents.like(_get(tangent, name), value)
    return new_tangent(type(obj), values)


def move(model, tangent, s):
    """`model` moved by ``s * tangent``: a new instance (`dataclasses.replace`), init=False fields set after."""
    changes, later = {}, {}
    params = model.__dataclass_fields__
    for name in tangent_fields(type(model)):
        t = _get(tangent, name)
        if t is None:
            continue
        value = getattr(model, name)
        if not (type(value) is float or tangents.is_differentiable(value)):
            continue
        moved = tangents.move(value, t, s)
        (changes if params[name].init else later)[name] = moved
    out = dataclasses.replace(model, **changes)
    for name, value in later.items():
        object.__setattr__(out, name, value)
    return out


# -- the pullbacks generated code calls

def attribute_cotangent(d, obj, name):
    """The cotangent of `obj` given the cotangent `d` of ``obj.name``: a field, or a property."""
    if is_dataclass_instance(obj):
        fields = obj.__dataclass_fields__
        if name in fields:
            kind = tangent_type(type(obj))
            if name in kind.__adtrans_fields__:
                return new_tangent(kind, {name: d}, obj)
            return _no_derivative(obj)      # a field without derivative
    elif is_namedtuple(obj) and name in type(obj)._fields:
        index = type(obj)._fields.index(name)
        parts = [d if i == index else tangents.zeros_like(v) for i, v in enumerate(obj)]
        return type(obj)(*parts)
    attribute = inspect.getattr_static(type(obj), name, None)
    getter = None
    if isinstance(attribute, property):
        getter = attribute.fget
    elif isinstance(attribute, functools.cached_property):
        getter = attribute.func
    if getter is not None:
        return _property_cotangent(d, obj, name, getter)
    from adtrans.api import DifferentiableFunction

    if isinstance(attribute, (types.FunctionType, DifferentiableFunction)):
        # A method read as a value (``rhs = self.rhs``): called, its tangent is `obj`'s own.
        return d if d is not None else _no_derivative(obj)
    if is_dataclass_instance(obj) or is_namedtuple(obj):
        if name in getattr(obj, "__dict__", {}):
            raise _error(f"attribute '.{name}' of {type(obj).__qualname__} is not a field: adtrans cannot "
                         "tell how it depends on the fields", name,
                         ["declare it as a field, or compute it in a @property"])
        # A class attribute (a constant, a method read as a value): no derivative reaches `obj`.
        return _no_derivative(obj)
    if isinstance(obj, (float, int, np.ndarray, np.generic)) and name in ("real", "imag"):
        if name == "real":
            return d
        return tangents.zeros_like(obj)
    raise _error(f"cannot differentiate attribute '.{name}' of a value of type {type(obj).__qualname__}",
                 name, ["adtrans differentiates the fields and properties of dataclasses and NamedTuples; "
                        "wrap the value in 'without_derivative' if no derivative should flow through it"])


def _no_derivative(obj):
    """A zero tangent of `obj`: sparse (no field set) for a dataclass."""
    if is_dataclass_instance(obj):
        return new_tangent(type(obj), {}, obj)
    return tangents.zeros_like(obj)


def _property_cotangent(d, obj, name, getter):
    from adtrans.api import value_with_pullback

    if d is None:
        return _no_derivative(obj)
    # The getter runs again here: recomputing it is cheaper than keeping its pullback from the forward.
    _, pull = value_with_pullback(getter, obj, wrt=0)
    return pull(d)


def field_cotangents(d, cls, names):
    """The tangents of constructor arguments `names` given the cotangent `d` of ``cls(...)``."""
    if issubclass(cls, tuple):
        out = []
        for name in names:
            if name not in cls._fields:
                raise _error(f"'{name}' is not a field of {cls.__qualname__}", None)
            out.append(None if d is None else d[cls._fields.index(name)])
    else:
        if d is not None:
            _check_post_init_fields(d, cls)
        out = [_constructor_argument(d, cls, name) for name in names]
    return out[0] if len(out) == 1 else tuple(out)


def _constructor_argument(d, cls, name):
    field = cls.__dataclass_fields__.get(name)
    if field is None or field._field_type is not dataclasses._FIELD:
        raise _error(
            f"cannot differentiate {cls.__qualname__}(...) with respect to its parameter '{name}': it is not "
            "a field (an InitVar or a parameter of a custom __init__), and adtrans does not differentiate "
            "__init__ or __post_init__", None,
            ["store the value in a field, or wrap the argument in 'without_derivative'"])
    kind = tangent_type(cls)
    primal = getattr(d, _PRIMAL, None)
    if name in kind.__adtrans_fields__ and d is not None and not _is_zero_scalar(d):
        t = _get(d, name)
        if t is not None:
            return t
    if primal is not None:
        return tangents.zeros_like(getattr(primal, name))
    if field.type in (float, "float"):
        return 0.0
    return None


def _check_post_init_fields(d, cls):
    """Raise when a derivative reached a field __post_init__ computes (init=False): it would be lost."""
    for name in tangent_type(cls).__adtrans_computed__:
        if not _is_zero(_get(d, name)):
            raise _error(
                f"a derivative reaches field '{name}' of {cls.__qualname__}, which __post_init__ computes "
                "(init=False): adtrans does not differentiate __post_init__", None,
                ["compute the value in a @property instead, or make it an ordinary field"])


def _is_zero(t):
    if t is None:
        return True
    if isinstance(t, (numbers.Number, np.ndarray, np.generic)):
        return not np.any(t)
    if isinstance(t, (tuple, list)):
        return all(_is_zero(x) for x in t)
    if isinstance(t, dict):
        return all(_is_zero(x) for x in t.values())
    if is_dataclass_instance(t):
        return all(_is_zero(getattr(t, n, None)) for n in tangent_fields(type(t)))
    return False


# -- errors located at the user's code

_COMMENT = re.compile(r"^\s*# (.+):(\d+): (.*)$")


def _error(message, attribute, notes=()):
    return DifferentiationError(message, _user_location(attribute), notes)


def _column(line, attribute):
    """Where ``obj.attribute`` starts in `line` (0-based), else where the statement starts."""
    at = line.find(f".{attribute}") if attribute else -1
    if at < 0:
        return len(line) - len(line.lstrip())
    while at > 0 and (line[at - 1].isalnum() or line[at - 1] in "_."):
        at -= 1
    return at


def _user_location(attribute=None):
    """The user's line the innermost generated pullback on the stack was running code for."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith("<adtrans "):
            lines = linecache.getlines(filename)
            for lineno in range(min(frame.f_lineno, len(lines)), 0, -1):
                match = _COMMENT.match(lines[lineno - 1])
                if match:
                    path, line, text = match.group(1), int(match.group(2)), match.group(3)
                    source = linecache.getline(path, line) or text
                    return Location(path, line, _column(source, attribute) + 1)
            return None
        frame = frame.f_back
    return None


# -- calls of an object's attributes

def method_call_with_pullback(obj, name, positions, *args, **kwargs):
    """Run-time dispatch of ``obj.name(*args, **kwargs)``; position -1 stands for `obj`.

    A method of `obj` is differentiated with respect to its ``self``.  An
    attribute that holds a callable (a layer in a field, ``self.layer1(x)``;
    an activation function) is called, and the derivative with respect to
    the callable itself (a layer's weights) is pulled back through the
    attribute read to `obj`.  Returns ``(value, pullback)`` like
    `adtrans.api.call_with_pullback`.
    """
    from adtrans.api import call_with_pullback

    f = getattr(obj, name)
    if -1 not in positions or (getattr(f, "__self__", None) is obj and not isinstance(obj, type)):
        return call_with_pullback(f, positions, *args, **kwargs)
    rest = tuple(p for p in positions if p != -1)
    from adtrans.api import _is_callable_object

    through_callable = _is_callable_object(f) and tangents.is_differentiable(f)
    inner = ((-1,) if through_callable else ()) + rest
    if inner:
        value, pull = call_with_pullback(f, inner, *args, **kwargs)
    else:
        value, pull = f(*args, **kwargs), None

    def pullback(d):
        out = pull(d) if pull is not None else ()
        out = (out,) if len(inner) == 1 else tuple(out)
        d_f, out = (out[0], out[1:]) if through_callable else (None, out)
        d_obj = attribute_cotangent(d_f, obj, name)
        return d_obj if not rest else (d_obj,) + out

    return value, pullback
