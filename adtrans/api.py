"""The public differentiation API (SPEC section 4) and the cache behind it.

Every entry point comes down to `_value_with_pullback`: find how `f` is
differentiated (a user derivative, a built-in rule, or its transformed
source), call that, and wrap the pullback so it returns tangents shaped like
the arguments.  Transformed code is cached per (code object, wrt, mode); a
second request for the same function costs a dictionary lookup.
"""

import functools
import inspect
import math
import numbers
import operator
import random
import sys
import types
import warnings
import weakref

import numpy as np

from adtrans import mutation, randomness, registry, tangents
from adtrans.errors import DifferentiationError, ZeroDerivativeWarning
from adtrans.rules.support import listed_items, listed_keys, listed_values
from adtrans.source import function_location, own_signature, parse_function

__all__ = [
    "DifferentiableFunction", "differentiable", "derivative", "differentiable_function",
    "value_with_pullback", "pullback", "gradient", "value_with_gradient", "gradient_of",
    "value_with_gradient_of", "without_derivative", "with_derivative", "generated_source",
    "checkpointed", "recomputed", "segmented",
]


# -- declaring differentiability

class DifferentiableFunction:
    """A function adtrans knows how to differentiate; calling it calls the original.

    Made by ``@differentiable`` (from source) or ``differentiable_function``
    (from a VJP alone).
    """

    def __init__(self, function=None, wrt=None, vjp=None, checkpoint=False):
        self.function = function
        self.wrt = wrt
        self.vjp = vjp
        self.checkpoint = checkpoint
        target = function if function is not None else vjp
        functools.update_wrapper(self, target)

    def __call__(self, *args, **kwargs):
        if self.function is not None:
            return self.function(*args, **kwargs)
        return self.vjp(*args, **kwargs)[0]

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __repr__(self):
        return f"<differentiable {getattr(self, '__qualname__', self.function)!r}>"


def differentiable(function=None, *, wrt=None, checkpoint=False):
    """Declare a function differentiable, and check it now.

    ::

        @adtrans.differentiable
        def f(x, y):
            return x * math.sin(y)

        @adtrans.differentiable(wrt=("x",))
        def g(x, n):
            return x ** n

    Calling the result calls the original. Its source is transformed now for
    everything that can be resolved now (so a mistake is reported at the
    definition, like a compiler would); names defined later in the module
    are resolved when it is first differentiated.
    """
    if function is None:
        return lambda f: differentiable(f, wrt=wrt, checkpoint=checkpoint)
    if isinstance(function, property):
        return property(differentiable(function.fget, wrt=wrt, checkpoint=checkpoint),
                        function.fset, function.fdel, function.__doc__)
    result = DifferentiableFunction(function, wrt, checkpoint=checkpoint)
    names = _default_wrt_names(function) if wrt is None else _wrt_names(function, wrt)
    if names:
        _derive(function, names, strict=False)
    return result


def derivative(of, wrt=None):
    """Register a derivative (a VJP) for any callable: Python, NumPy, or C.

    ::

        @adtrans.derivative(of=math.exp)
        def exp_vjp(x):
            y = math.exp(x)
            return y, lambda v: v * y

    The VJP takes the same parameters as `of` and returns ``(value,
    pullback)``; the pullback maps the result's cotangent to one tangent
    (one parameter in `wrt`) or a tuple. It replaces any built-in rule and
    the automatic derivative of `of`.
    """

    def register(vjp):
        target = of.function if isinstance(of, DifferentiableFunction) and of.function is not None else of
        registry.register_vjp(target, vjp, _as_tuple(wrt) if wrt is not None else None)
        if target is not of:
            registry.register_vjp(of, vjp, _as_tuple(wrt) if wrt is not None else None)
        _forget_derivatives()
        return vjp

    return register


def checkpointed(function):
    """`function` as a differentiable function whose intermediates are recomputed, not kept.

    ::

        layer = adtrans.checkpointed(lambda h, W: np.tanh(h @ W))

    Where differentiated code calls it, the forward pass calls plain
    `function` and keeps only its arguments; the pullback runs its forward
    pass again, with pullback, and pulls the cotangent through that.  Memory
    for `function`'s intermediates is spent in the pullback, one call at a
    time, instead of for the whole forward pass.
    """
    if isinstance(function, DifferentiableFunction):
        if function.function is None:
            return function      # a VJP decides for itself what it keeps
        return DifferentiableFunction(function.function, function.wrt, checkpoint=True)
    if isinstance(function, types.MethodType):
        # obj.method: the method checkpointed, bound to obj (its fields get derivatives).
        return types.MethodType(checkpointed(function.__func__), function.__self__)
    if _is_callable_object(function):
        return checkpointed(function.__call__)      # a layer: its __call__
    if not isinstance(function, types.FunctionType):
        # NumPy's or Python's own function (np.tanh, math.exp): its derivative rule keeps what it
        # needs, there is nothing of it to recompute.
        return function
    return DifferentiableFunction(function, checkpoint=True)


class recomputed:
    """A block whose intermediates the pullback recomputes instead of keeping.

    ::

        def model(x, W1, W2):
            with adtrans.recomputed():
                h = np.tanh(x @ W1)
                h = np.tanh(h @ W2)
            return np.sum(h)

    In differentiated code the block's statements become a checkpointed
    function of the variables they read, returning the variables they
    assign; run normally it does nothing.
    """

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def segmented(iterable, length):
    """Iterate over `iterable`; differentiated, each run of `length` passes is recomputed.

    ::

        for W in adtrans.segmented(weights, 8):
            h = np.tanh(h @ W)

    The forward keeps what each run of `length` passes reads, not every
    pass's intermediates: memory grows with the number of runs, and the
    pullback runs each run again. A fractional `length` is rounded up
    (``len(xs) / 2`` makes two runs). The body may ``continue`` and
    ``break``, not ``return``.
    """
    run_length(length)
    return iter(iterable)


def run_length(length):
    """The number of passes in a run of ``segmented(xs, length)``: `length` rounded up, at least 1."""
    if not length >= 1:
        raise ValueError(f"segments need a length of at least 1, not {length!r}")
    return sys.maxsize if length == math.inf else math.ceil(length)


def differentiable_function(vjp):
    """A differentiable function made from a VJP alone (Swift's ``differentiableFunction(from:)``).

    ::

        square = adtrans.differentiable_function(lambda x: (x * x, lambda v: 2 * x * v))
    """
    return DifferentiableFunction(vjp=vjp)


def without_derivative(x):
    """`x`, with no derivative flowing through it (a stop-gradient)."""
    return x


def with_derivative(x, hook):
    """`x`; in the pullback, ``hook(cotangent)`` runs, and a non-None return replaces the cotangent."""
    del hook
    return x


registry.constant_function(without_derivative, reason="'without_derivative' stops derivatives")
# checkpointed(f) made in differentiated code carries f's derivative: a closure's captured
# values, a layer's fields (its calls are then dispatched at run time, recomputed).
registry.rules_for(globals())(checkpointed, "function", function="d_y")
# What a recomputed function's generators were before its first run (see `randomness`).
registry.constant_function(randomness.random_state, reason="a generator's state carries no derivative")
registry.constant_function(randomness.global_random_state, reason="a generator's state carries no derivative")
registry.constant_function(run_length, reason="a run's length is a whole number")
# They make a function from functions (a closure given to them is called later, differentiated then).
registry.constant_function(differentiable_function, reason="its result is a function")
_support_rule = registry.rules_for({"call_hook": tangents.call_hook})
_support_rule(with_derivative, "x, hook", x="call_hook(hook, d_y)")


# -- the cache of transformed code

_cache = {}          # (code, wrt, mode, floats) -> (generated, code object)
_sources = {}        # code -> FunctionSource: a function is parsed once, whatever is asked of it
_instances = weakref.WeakKeyDictionary()   # function -> {(wrt, mode): generated function}
_in_progress = set()


# entry point -> (what made it, "gradient_of(f)"; its generated functions by types)
_entry_points = weakref.WeakKeyDictionary()


def _forget_derivatives():
    """Empty every cache of generated code and of what calls found in it: a derivative registered
    now changes the code of every function that calls what it is registered for."""
    for cache in (_cache, _instances, _plans, _by_type, _array_entries,
                  *(table for _, table in _entry_points.values())):
        cache.clear()


def _derive(fn, wrt, mode="reverse", strict=True, floats=frozenset(), lifted=()):
    """The value-with-pullback function of Python function `fn` for parameters `wrt`.

    `floats` names parameters known to hold Python floats in this call: the
    code generated for them needs no unbroadcasting (a scalar loop runs as
    plain float arithmetic). `generated_source` shows the general version.
    `lifted` names free variables the generated function takes as
    keyword-only parameters instead (see `_closure_call_with_pullback`).
    """
    per_function = _instances.get(fn)
    key = (wrt, mode, floats, lifted)
    if per_function is not None and key in per_function:
        return per_function[key]
    generated, code = _generated(fn, wrt, mode, strict, floats, lifted)
    if generated is None:
        return None
    from adtrans.codegen import instantiate

    function = instantiate(code, generated, fn)
    function.takes_over = generated.takes_over      # see reverse.ReverseTransform.hand_to
    function.lazy_params = generated.lazy_params    # see reverse.Generated.lazy_params
    _instances.setdefault(fn, {})[key] = function
    return function


def _derive_gradient(fn, wrt, floats, only=False):
    """`_derive`'s fused value-and-gradient function (compiled the first time `gradient` needs it).

    With `only`, the function returning the gradient alone, or None when there is none (the
    result is not known to be a float); either way, whether it returns only floats.
    """
    per_function = _instances.setdefault(fn, {})
    key = (wrt, "gradient only" if only else "gradient", floats)
    found = per_function.get(key)
    if found is None:
        from adtrans.codegen import compile_generated, instantiate

        generated, code = _generated(fn, wrt, "reverse", True, floats)
        name = generated.gradient_only_name if only else generated.gradient_name
        if not name:
            found = (None, False)
        else:
            filename = code.co_filename.replace(f" {generated.name} ", f" {name} ")
            function = instantiate(compile_generated(generated, filename, name), generated, fn)
            found = (function, generated.returns_floats(name))
        per_function[key] = found
    return found


def _generated(fn, wrt, mode="reverse", strict=True, floats=frozenset(), lifted=()):
    if mode != "reverse":
        raise DifferentiationError(f"mode {mode!r} is not supported yet (only 'reverse')",
                                   function_location(fn),
                                   ["forward mode is planned; use mode='reverse'"])
    key = (_code_key(fn), wrt, mode, floats) + ((lifted,) if lifted else ())
    cached = _cache.get(key)
    if cached is not None:
        return cached
    if fn in _entry_points:
        raise _higher_order_error(fn, function_location(_user_function(fn)))
    from adtrans import rules  # noqa: F401  (registers the built-in rules)
    from adtrans.codegen import compile_generated
    from adtrans.resolve import Unresolved
    from adtrans.reverse import ReverseTransform

    source = _sources.get(_code_key(fn))
    if source is None:
        source = _sources[_code_key(fn)] = parse_function(fn)
    _in_progress.add(key)
    try:
        generated = ReverseTransform(source, wrt, _derive_callee, strict=strict, floats=floats,
                                     lifted=lifted).run()
    except Unresolved:
        return None, None   # decoration time: a name defined later; try again when differentiated
    finally:
        _in_progress.discard(key)
    named = sorted(f for f in floats if isinstance(f, str))
    specialised = f" floats={','.join(named)}" if named else ""
    filename = (f"<adtrans {source.filename}:{source.node.lineno} {generated.name} "
                f"wrt={','.join(wrt)}{specialised}>")
    code = compile_generated(generated, filename)
    for param in generated.warnings:
        warnings.warn_explicit(
            f"the result of '{_qualname(fn)}' does not depend on '{param}': its derivative is zero "
            f"(wrap the use in 'without_derivative' to say that is intended)",
            ZeroDerivativeWarning, source.filename, source.node.lineno)
    _cache[key] = (generated, code)
    return generated, code


def _code_key(fn):
    """What the caches know a function by: its code, and its file (code objects compare equal
    across files when their text and line numbers are, but their names may mean other things)."""
    return fn.__code__, fn.__code__.co_filename


def _higher_order_error(entry, location):
    """The error for differentiating `entry`, a function `gradient_of` or `value_with_gradient_of`
    made: its code is the API's, not a derivative adtrans could differentiate again."""
    return DifferentiationError(
        f"cannot differentiate '{_entry_points[entry][0]}': derivatives of derivatives are not "
        "supported yet", location,
        ["differentiate the function itself; for a second derivative, take central differences of "
         "the gradient for now: (g(x + h) - g(x - h)) / (2 * h)"])


def _user_function(entry):
    """The user's function under `entry`, an entry point (of an entry point ...)."""
    while entry in _entry_points:
        entry = entry.__wrapped__
    return entry


def _derive_callee(callee, wrt, facts=frozenset()):
    """A transformed callee for generated code; recursion goes through a late-bound call.

    `facts` is `_derive`'s `floats`: what the caller knows of the arguments (see `_kind`)."""
    fn = getattr(callee, "function", callee)
    if fn in _entry_points:
        raise _higher_order_error(fn, None)     # located at the call (`derived_callee`)
    if (_code_key(fn), wrt, "reverse", facts) in _in_progress:
        return lambda *args, **kwargs: _derive(fn, wrt, floats=facts)(*args, **kwargs)
    return _derive(fn, wrt, floats=facts)


def check_nested_functions(f):
    """Transform the nested ``def``s and ``lambda``s of `f` with respect to their parameters, as
    `adtrans check` does `f` itself: their errors show before they first run (located at the user's
    line, see `source._user_location`). Their free variables are taken as parameters."""
    fn = _python_function(f)
    generated, code = _generated(fn, _default_wrt_names(fn))
    if generated is None:
        return
    for nested in _nested_codes(code):
        function = types.FunctionType(nested, fn.__globals__, nested.co_name, None,
                                      tuple(types.CellType() for _ in nested.co_freevars))
        names = _default_wrt_names(function)
        if names:
            _derive(function, names, lifted=nested.co_freevars)


def _nested_codes(code):
    """The code objects of the user's nested functions in a generated function's code."""
    for const in code.co_consts:
        if inspect.iscode(const):
            if const.co_name == "pullback" or const.co_name.startswith("<") and const.co_name != "<lambda>":
                continue        # the generated pullback, a comprehension
            yield const


def generated_source(f, wrt=None, mode="reverse", *, gradient=False, floats=()):
    """The code adtrans generates for `f`, as a string.

    With `gradient`, the functions `gradient` and `value_with_gradient` run
    instead of the value-with-pullback function: ``f_value_with_gradient``,
    and ``f_gradient`` when the result is known to be a float; `floats`
    names the parameters to take as Python floats (the code for a call with
    float arguments).

    ::

        print(adtrans.generated_source(f, wrt=("x",)))
        print(adtrans.generated_source(f, gradient=True, floats=("x", "y")))
    """
    if isinstance(f, types.MethodType):
        # obj.method: the code `gradient(obj.method, x)` runs, for the arguments after `self`.
        f, wrt = f.__func__, _bound_method_wrt(f.__func__, wrt)
    fn = _python_function(f)
    if fn is None:
        vjp = getattr(f, "vjp", None)
        raise DifferentiationError(
            f"adtrans generates no code for '{_qualname(f)}': "
            + ("it is defined by its VJP" if vjp is not None else "it is not a Python function"),
            function_location(vjp or f), ["its derivative is the VJP it was given"] if vjp else [])
    if wrt is None and isinstance(f, DifferentiableFunction) and f.wrt is not None:
        wrt = f.wrt
    names = _default_wrt_names(fn) if wrt is None else _wrt_names(fn, wrt)
    floats = frozenset(_wrt_names(fn, floats)) if floats else frozenset()
    generated, _ = _generated(fn, names, mode, floats=floats)
    if not gradient:
        return generated.text
    fused = [generated.gradient_name] + ([generated.gradient_only_name] if generated.gradient_only_name else [])
    return "\n".join(generated.fused_text(name) for name in fused)


# -- differentiation

def value_with_pullback(f, *args, wrt=None, **kwargs):
    """``(f(*args), pullback)``; ``pullback(cotangent)`` gives the tangent(s) of the `wrt` arguments.

    ::

        y, back = adtrans.value_with_pullback(lambda x: (x + x) * (x + x), 3.0)
        back(1.0)   # 24.0
    """
    value, pull, single = _value_with_pullback(f, args, kwargs, wrt)
    if single:
        return value, lambda d: _apart(pull(d), d)[0]
    return value, lambda d: _apart(pull(d), d)


def _apart(grads, d):
    """`grads` with none of them the caller's cotangent `d` (the pullback of ``x + y`` or of
    ``x`` itself hands it on) and no array given twice: changing a gradient in place must leave
    the cotangent, which the pullback may be given again, and the other gradients alone."""
    if type(d) is np.ndarray and any(g is d for g in grads):
        grads = tuple([g.copy() if g is d else g for g in grads])
    return _distinct(grads)


def pullback(f, *args, wrt=None, **kwargs):
    """The pullback of `f` at `args` (see `value_with_pullback`)."""
    return value_with_pullback(f, *args, wrt=wrt, **kwargs)[1]


def value_with_gradient(f, *args, wrt=None, **kwargs):
    """``(f(*args), gradient)`` for a scalar-valued `f`."""
    if not kwargs:
        try:
            entry = _array_entries.get((f, wrt))
        except TypeError:   # unhashable: a list wrt, a callable object
            entry = None
        if entry is not None and entry[0] == len(args):
            return entry[1](*args)      # it checks the arguments' types and dtypes itself
        try:
            # `_type_key` spelled out for three or more arguments: a call less on the arrays' path.
            typed = _by_type.get(_type_key(f, wrt, args) if len(args) < 3 else (f, wrt, *map(type, args)))
        except TypeError:   # unhashable: a list wrt, a callable object
            typed = None
        if typed is not None:
            if typed.value_with_gradient is not None:
                return typed.value_with_gradient(*args)
            if typed.accepts(args):
                return typed.plan.value_with_gradient(args, kwargs)
    return _value_with_gradient(f, args, kwargs, wrt)


def gradient(f, *args, wrt=None, **kwargs):
    """The gradient of scalar-valued `f` at `args`: one array/float, or a tuple for several `wrt`.

    ::

        adtrans.gradient(lambda x, y: x * y, 2.0, 3.0)   # (3.0, 2.0)
    """
    # The lookup is spelled out here as in `value_with_gradient`: a shared helper would cost a
    # call on every scalar gradient, which is a third of its whole overhead.
    if not kwargs:
        try:
            typed = _by_type.get(_type_key(f, wrt, args))
        except TypeError:
            typed = None
        if typed is not None:
            if typed.gradient is not None:
                return typed.gradient(*args)
            if typed.accepts(args):
                return typed.plan.gradient(args, kwargs)
    return _gradient(f, args, kwargs, wrt)


def gradient_of(f, wrt=None):
    """A function of `f`'s arguments that returns `f`'s gradient."""
    return _entry_point(f, wrt, "gradient")


def value_with_gradient_of(f, wrt=None):
    """A function of `f`'s arguments that returns ``(value, gradient)``."""
    return _entry_point(f, wrt, "value")


_ENTRY_POINT = """\
def {name}({parameters}):
    fast = by_types.get(({types}))
    if fast is not None:
        return fast({parameters})
    return general({parameters})
"""


def _entry_point(f, wrt, kind):
    """`gradient_of(f)` (`kind` "gradient") or `value_with_gradient_of(f)` ("value").

    For a Python function of positional parameters without defaults, a
    function with `f`'s parameters, written for it, that finds the generated
    function for its arguments' types in a dictionary of its own and calls it
    (about 0.2 us); any other call goes the general way, which fills the
    dictionary when the generated function can be returned from as it is.
    """
    body = _value_with_gradient if kind == "value" else _gradient
    fn = _python_function(f)
    by_types = {}

    def general(*args, **kwargs):
        result = body(f, args, kwargs, wrt)
        if not kwargs:
            try:
                typed = _by_type.get(_type_key(f, wrt, args))
            except TypeError:
                typed = None
            fast = None if typed is None else getattr(typed, "value_with_gradient" if kind == "value" else "gradient")
            if fast is not None:
                by_types[tuple(map(type, args))] = fast
        return result

    entry = general
    parameters = _simple_parameters(fn) if fn is not None else None
    if parameters:
        name = f"{kind}_of_{fn.__name__}" if fn.__name__.isidentifier() else f"{kind}_of_function"
        text = _ENTRY_POINT.format(name=name, parameters=", ".join(parameters),
                                   types="".join(f"type({p}), " for p in parameters))
        namespace = {"by_types": by_types, "general": general, "type": type}
        entry = _compiled_entry(text, name, namespace, f"<adtrans {kind}_of {_qualname(f)}>")
    inner = _entry_points[f][0] if isinstance(f, types.FunctionType) and f in _entry_points else _qualname(f)
    made_by = f"{'value_with_gradient' if kind == 'value' else 'gradient'}_of({inner})"
    _entry_points[entry] = (made_by, by_types)
    return functools.wraps(fn or f)(entry)


def _compiled_entry(text, name, namespace, filename):
    """The function `name` that `text` defines, reading `namespace`; its text in linecache, so
    tracebacks and debuggers show it as they show the other generated code."""
    import linecache

    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    exec(compile(text, filename, "exec"), namespace)
    return namespace[name]


def _simple_parameters(fn):
    """`fn`'s parameter names if all are positional-or-keyword without defaults, else None."""
    code = fn.__code__
    if (code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) or code.co_kwonlyargcount
            or code.co_posonlyargcount or fn.__defaults__ or not code.co_argcount):
        return None
    names = code.co_varnames[:code.co_argcount]
    if {"by_types", "general", "type", "fast"} & set(names):
        return None
    return names


def _gradient(f, args, kwargs, wrt):
    plan = _plan_for(f, args, kwargs, wrt)
    if plan is not None:
        return plan.gradient(args, kwargs)
    return _value_with_gradient(f, args, kwargs, wrt)[1]


def _value_with_gradient(f, args, kwargs, wrt):
    plan = _plan_for(f, args, kwargs, wrt)
    if plan is not None:
        return plan.value_with_gradient(args, kwargs)
    value, pull, single = _value_with_pullback_slow(f, args, kwargs, wrt)
    seed = _scalar_seed(f, value)
    with tangents.single_use():     # the pullback runs once: tapes are freed as they replay
        grads = pull(seed)
    return value, grads[0] if single else grads


def _scalar_seed(f, value):
    try:
        return tangents.gradient_seed(value)
    except tangents.NotScalar:
        pass
    shape = getattr(value, "shape", None)
    what = f"an array of shape {shape}" if shape is not None else f"a value of type {type(value).__name__}"
    raise DifferentiationError(
        f"gradient needs a scalar result, but '{_qualname(f)}' returned {what}",
        function_location(_python_function(f) or f),
        ["use value_with_pullback and pass a cotangent of the result's shape, or reduce the result "
         "to a scalar (for example with np.sum)"])


def _value_with_pullback(f, args, kwargs, wrt):
    """(value, pullback returning a tuple of tangents, whether one tangent was asked for)."""
    plan = _plan_for(f, args, kwargs, wrt)
    if plan is None:
        return _value_with_pullback_slow(f, args, kwargs, wrt)
    return plan.run(args, kwargs)


def _plan_for(f, args, kwargs, wrt):
    """The cached `_Plan` for this call's function and argument layout, made on first use; None
    when `f` is not differentiated from source (a method, a registered VJP, a rule)."""
    if not kwargs:
        try:
            typed = _by_type.get(_type_key(f, wrt, args))
        except TypeError:       # unhashable: a list wrt, a callable object
            typed = None
        if typed is not None and typed.accepts(args):
            return typed.plan
    if wrt is None:
        key = (f, None, tuple(map(_kind, args)),
               tuple((k, _kind(v)) for k, v in kwargs.items()) if kwargs else ())
    else:
        key = (f, wrt if not isinstance(wrt, list) else tuple(wrt), tuple(map(_kind, args)),
               tuple(kwargs))
    try:
        plan = _plans.get(key)
    except TypeError:       # an unhashable callable: no plan cache
        plan, key = None, None
    if plan is None:
        plan = _make_plan(f, args, kwargs, wrt)
        if plan is not None and key is not None:
            _plans[key] = plan
    if plan is not None and key is not None and not kwargs:
        arrays = tuple(i for i, a in enumerate(args) if type(a) is np.ndarray)
        if (all(type(a) in _TYPE_DECIDES_KIND for i, a in enumerate(args) if i not in arrays)
                and all(args[i].dtype.kind in "fc" for i in arrays)):
            try:
                typed = _by_type[_type_key(f, wrt, args)] = _Typed(plan, args, arrays, f, wrt)
                if arrays and typed.value_with_gradient is not None:
                    _array_entries[(f, wrt)] = (len(args), typed.value_with_gradient)
            except TypeError:   # wrt given as a list
                pass
    return plan


def _type_key(f, wrt, args):
    # Spelled out for one and two arguments: the generic form costs more than the plan's work.
    n = len(args)
    if n == 1:
        return (f, wrt, type(args[0]))
    if n == 2:
        return (f, wrt, type(args[0]), type(args[1]))
    return (f, wrt, *map(type, args))


# Types whose `_kind` their type alone decides: calls with only these (and float arrays, whose
# dtypes are checked) find their plan by the arguments' types.
_TYPE_DECIDES_KIND = {float, int, bool, type(None), str, complex}


class _Typed:
    """What a call finds by (`f`, `wrt`, its arguments' types): the plan, and for scalar code the
    generated functions it can return from as they are (see `_Plan.fast`)."""

    __slots__ = ("plan", "arrays", "dtypes", "gradient", "value_with_gradient")

    def __init__(self, plan, args, arrays, f=None, wrt=None):
        self.plan = plan
        self.arrays = arrays                            # positions of the arrays among the arguments
        self.dtypes = tuple(args[i].dtype for i in arrays)
        self.gradient, self.value_with_gradient = plan.fast() if not arrays else (None, None)
        if arrays and plan.checks_arrays():
            self.value_with_gradient = _array_entry(plan, args, arrays, f, wrt)

    def accepts(self, args):
        """Is the plan right for `args`? An array's kind is its dtype's, not its type's."""
        for i, dtype in zip(self.arrays, self.dtypes):
            found = args[i].dtype
            if found is not dtype and found.kind not in "fc":
                return False
        return True


_by_type = {}       # (f, wrt, *argument types) -> _Typed
# (f, wrt) -> (number of arguments, the array entry of the last layout of arrays seen): a call
# with arrays finds it without building a key of types (see `_array_entry`).
_array_entries = {}

_ARRAY_ENTRY = """\
def {name}({params}):
    if {type_checks}:
        try:
            value, grads = fused({params})
        except NotScalar as error:
            not_scalar(error)
        {unpack} = grads
        if {shape_checks}:
            return value, grads
        return shaped(value, grads, ({params},), {{}})
    return general(({params},))
"""


def _array_entry(plan, args, arrays, f, wrt):
    """`value_with_gradient(f, *args, wrt=wrt)` for arguments of these types and dtypes, its checks
    written out: the fused function's result is returned as it is when every gradient has its
    argument's shape and dtype; arguments of other types or dtypes take the general path."""
    namespace = {"fused": plan.fused_function(), "NotScalar": tangents.NotScalar,
                 "not_scalar": plan.not_scalar, "shaped": plan._shaped, "ndarray": np.ndarray,
                 "general": lambda args: _value_with_gradient(f, args, {}, wrt)}
    # The function's own parameter names where they are free to use, so the text reads as its call.
    names = _parameter_names(plan.fn)[:len(args)]
    taken = set(namespace) | {"value", "grads", "error", "entry"}
    if len(names) < len(args) or any(n in taken or n.startswith(("d_", "dtype_", "type_")) for n in names):
        names = [f"a{i}" for i in range(len(args))]
    grads = [f"d_{names[i]}" for i in plan.positions]
    checks = []
    for i, argument in enumerate(args):
        if i in arrays:
            namespace[f"dtype_{names[i]}"] = argument.dtype
            checks.append(f"type({names[i]}) is ndarray and {names[i]}.dtype is dtype_{names[i]}")
        else:
            namespace[f"type_{names[i]}"] = type(argument)
            checks.append(f"type({names[i]}) is type_{names[i]}")
    shape_checks = [f"type({g}) is ndarray and {g}.dtype is {names[i]}.dtype and {g}.shape == {names[i]}.shape"
                    for g, i in zip(grads, plan.positions)]
    shape_checks += [f"{a} is not {b}" for k, a in enumerate(grads) for b in grads[k + 1:]]
    name = f"{plan.fn.__name__}_entry" if plan.fn.__name__.isidentifier() else "entry"
    if name in names:
        name = "entry"
    text = _ARRAY_ENTRY.format(name=name, params=", ".join(names),
                               type_checks=" and\\\n            ".join(checks),
                               unpack=", ".join(grads),
                               shape_checks=" and\\\n                ".join(shape_checks))
    return _compiled_entry(text, name, namespace, f"<adtrans value_with_gradient entry {_qualname(plan.fn)}>")


def _distinct(grads):
    """`grads` with no array given twice: the pullback of ``x + y`` hands both the one cotangent,
    and a caller clipping or scaling one gradient in place must not change the other."""
    seen = set()
    out = None
    for i, g in enumerate(grads):
        if type(g) is np.ndarray:
            if id(g) in seen:
                out = out or list(grads)
                out[i] = g.copy()
            seen.add(id(g))
    return grads if out is None else tuple(out)


def _kind(value):
    """What a plan depends on in an argument: a Python float, another differentiable value, neither."""
    if type(value) is float:
        return 2
    if type(value) is np.ndarray:
        return 1 if value.dtype.kind in "fc" else 0
    if tangents.structures.is_dataclass_instance(value):
        return type(value)      # the transform reads its class's fields without derivative
    return 1 if tangents.is_differentiable(value) else 0


class _Plan:
    """How to differentiate one Python function for one layout of arguments: decided once."""

    __slots__ = ("fn", "derived", "names", "order", "single", "positions", "wrt", "checkpoint",
                 "promotes", "replays", "floats", "fused", "floats_only", "gradient_only",
                 "gradient_floats", "value_floats")

    def __init__(self, fn, derived, names, order, single, positions, wrt, checkpoint=False,
                 promotes=False, replays=True, floats=frozenset()):
        self.floats = floats
        self.fused = None           # the value-and-gradient function, made on first use
        # Every argument differentiated is a Python float, and nothing needs the general path:
        # `value_with_gradient` calls the fused function at once (made here, not on first use).
        self.floats_only = (set(names) <= floats and positions is not None and order is None
                            and not promotes and not checkpoint and not replays)
        self.gradient_only = None   # the function returning the gradient alone, if any
        self.gradient_floats = self.value_floats = False    # do they return only floats?
        if self.floats_only:
            self.fused, self.value_floats = _derive_gradient(fn, names, floats)
            self.gradient_only, self.gradient_floats = _derive_gradient(fn, names, floats, only=True)
        self.replays = replays      # the pullback replays tapes (see reverse.Generated.replays)
        self.checkpoint = checkpoint
        self.promotes = promotes      # the plan's key says which arguments are floats or arrays
        self.fn = fn
        self.derived = derived
        self.names = names          # wrt parameters in the function's order
        self.order = order          # permutation to the caller's order, or None
        self.single = single
        self.positions = positions  # where each wrt argument is in args, or None (use binding)
        self.wrt = wrt

    def run(self, args, kwargs):
        if self.promotes:
            # An int named in wrt becomes a float (and a wrong kind of argument an error).
            _, _, args, kwargs = _resolve_wrt(self.fn, args, kwargs, self.wrt)
        if self.checkpoint:
            value, again = _checkpointed_run(self.fn, args, kwargs)
            derived = self.derived

            def back(d):
                return again(derived)[1](d)
        else:
            value, back = self.derived(*args, **kwargs)
        if self.positions is not None:
            arguments = [args[i] for i in self.positions]
        else:
            arguments = _bound_values(self.fn, args, kwargs, self.names)
        order = self.order
        if len(arguments) == 1:
            (argument,) = arguments

            def pull(d):
                return (_like(back(d), argument),)
        else:
            def pull(d):
                out = _distinct(tuple([_like(t, a) for t, a in zip(back(d), arguments)]))
                return out if order is None else tuple([out[i] for i in order])

        return value, pull, self.single

    def checks_arrays(self):
        """Can `_array_entry` stand for `value_with_gradient` (arrays in the caller's order, several
        gradients, a fused function that needs no single-use scope)?"""
        return (self.positions is not None and self.order is None and len(self.positions) > 1
                and not (self.single or self.promotes or self.checkpoint or self.floats_only
                         or self.replays))

    def fused_function(self):
        """The fused value-and-gradient function, compiled the first time it is needed."""
        if self.fused is None:
            self.fused = _derive_gradient(self.fn, self.names, self.floats)[0]
        return self.fused

    def not_scalar(self, error):
        """`error`, a `tangents.NotScalar` from the fused function, as the error naming `fn`."""
        _scalar_seed(self.fn, error.args[0])     # raises the error that names the function
        raise error

    def fast(self):
        """(gradient, value-with-gradient) functions a call can return from as they are, or None.

        Scalar code whose generated functions return only floats, with the
        gradients in the caller's layout (one, or a tuple in the function's
        parameter order): `gradient` and the entry points of `gradient_of`
        call them directly.
        """
        if not self.floats_only or self.order is not None or self.single != (len(self.names) == 1):
            return None, None
        return (self.gradient_only if self.gradient_floats else None,
                self.fused if self.value_floats else None)

    def gradient(self, args, kwargs):
        """`value_with_gradient`'s gradient, without computing what only the value needs."""
        if self.gradient_only is None or kwargs:
            return self.value_with_gradient(args, kwargs)[1]
        grads = self.gradient_only(*args)
        if self.gradient_floats and self.single == (len(self.names) == 1) and self.order is None:
            return grads
        return self._shaped(None, grads, args, kwargs)[1]

    def value_with_gradient(self, args, kwargs):
        """`run`, seeded with 1 and pulled once, without making closures."""
        if self.floats_only and not kwargs:
            # Scalar code: one fused call and a type check; anything unusual takes the long way.
            value, grads = self._fused(self.fused, args, kwargs)
            if type(grads) is float:
                return value, grads if self.single else (grads,)
            if type(grads) is tuple and len(self.names) > 1:
                for tangent in grads:
                    if type(tangent) is not float:
                        break
                else:
                    return value, grads
            return self._shaped(value, grads, args, kwargs)
        if self.promotes or self.checkpoint:
            value, pull, single = self.run(args, kwargs)
            seed = _scalar_seed(self.fn, value)
            with tangents.single_use():
                grads = pull(seed)
            return value, grads[0] if single else grads
        fused = self.fused_function()
        if self.replays:
            with tangents.single_use():
                value, grads = self._fused(fused, args, kwargs)
        else:
            value, grads = self._fused(fused, args, kwargs)
        positions = self.positions
        if positions is not None and self.order is None and len(positions) > 1:
            # Arrays in, arrays of their shapes and dtypes out (the usual case): as they are.
            for tangent, i in zip(grads, positions):
                argument = args[i]
                if (type(tangent) is not np.ndarray or type(argument) is not np.ndarray
                        or tangent.dtype is not argument.dtype or tangent.shape != argument.shape):
                    break
            else:
                if len(set(map(id, grads))) == len(grads):
                    return value, grads
        return self._shaped(value, grads, args, kwargs)

    def _fused(self, fused, args, kwargs):
        """``fused(*args, **kwargs)``; a result that is not a scalar is an error naming `fn`."""
        try:
            return fused(*args, **kwargs) if kwargs else fused(*args)
        except tangents.NotScalar as error:
            self.not_scalar(error)

    def _shaped(self, value, grads, args, kwargs):
        """The fused function's result, tangents given their arguments' types, in the caller's order."""
        if self.positions is not None:
            arguments = list(map(args.__getitem__, self.positions))
        else:
            arguments = _bound_values(self.fn, args, kwargs, self.names)
        if len(arguments) == 1:
            grads = (_like(grads, arguments[0]),)
        else:
            grads = _distinct(tuple(map(_like, grads, arguments)))
            if self.order is not None:
                grads = tuple([grads[i] for i in self.order])
        return value, grads[0] if self.single else grads


def _make_plan(f, args, kwargs, wrt):
    if isinstance(f, types.MethodType):
        return None
    fn = _python_function(f)
    if fn is not None and fn.__code__.co_flags & _COLLECTS:
        return None     # see `_with_collected`
    if isinstance(f, DifferentiableFunction) and f.vjp is not None:
        return None
    if registry.lookup_user_vjp(f) is not None or registry.lookup_rule(f) is not None:
        return None     # a Python function with a rule (`listed_items`): the rule, not its source
    fn = _python_function(f)
    if fn is None or registry.lookup_user_vjp(fn) is not None:
        return None
    if wrt is None and isinstance(f, DifferentiableFunction):
        wrt = f.wrt
    chosen, single, new_args, new_kwargs = _resolve_wrt(fn, args, kwargs, wrt)
    parameters = _parameter_names(fn)
    names = tuple(n for n in parameters if n in chosen)    # the generated pullback's order
    values = _bound_values_all(fn, new_args, new_kwargs)
    passed = set(parameters[:len(new_args)]) | set(new_kwargs)
    floats = frozenset(n for n in passed if type(values.get(n)) is float)
    # Dataclass arguments: the fields their class declares without derivative are constants.
    floats |= {(n, type(values[n])) for n in passed
               if tangents.structures.is_dataclass_instance(values.get(n))}
    derived = _derive(fn, names, floats=floats)
    order = None if names == chosen else [names.index(n) for n in chosen]
    positional = fn.__code__.co_argcount
    indices = [parameters.index(n) for n in names]
    positions = indices if not kwargs and all(i < min(len(args), positional) for i in indices) else None
    checkpoint = isinstance(f, DifferentiableFunction) and f.checkpoint
    promotes = wrt is not None and (
        any(a is not b for a, b in zip(args, new_args))
        or any(kwargs[k] is not new_kwargs[k] for k in kwargs))
    generated, _ = _cache[(_code_key(fn), names, "reverse", floats)]
    return _Plan(fn, derived, names, order, single, positions, wrt, checkpoint, promotes,
                 generated.replays, floats)


_plans = {}


def _value_with_pullback_slow(f, args, kwargs, wrt):
    if isinstance(f, types.MethodType):
        wrt = _method_wrt(f, args, kwargs, wrt)
        args = (f.__self__,) + tuple(args)
        f = f.__func__
        return _value_with_pullback(f, args, kwargs, wrt)
    if isinstance(f, DifferentiableFunction) and f.vjp is not None:
        return _from_vjp(f.vjp, _signature(f.vjp), None, f, args, kwargs, wrt)
    entry = registry.lookup_user_vjp(f)
    if entry is None and isinstance(f, DifferentiableFunction):
        entry = registry.lookup_user_vjp(f.function)
    if entry is not None:
        return _from_vjp(entry.vjp, entry.signature, entry.wrt, f, args, kwargs, wrt, entry.selective)
    rule = registry.lookup_rule(f)
    if rule is not None:
        return _from_rule(rule, args, kwargs, wrt)
    fn = _python_function(f)
    if fn is not None and fn.__code__.co_flags & _COLLECTS:
        checkpoint = isinstance(f, DifferentiableFunction) and f.checkpoint
        return _with_collected(fn, args, kwargs, wrt, checkpoint)
    if isinstance(getattr(type(f), "__call__", None), (types.FunctionType, DifferentiableFunction)):
        # A layer, or any object whose class defines __call__ in Python: that method, bound.
        return _value_with_pullback(f.__call__, args, kwargs, wrt)
    raise DifferentiationError(
        f"cannot differentiate {f!r}: it is not a Python function and has no registered derivative",
        None, ["register one with @adtrans.derivative(of=...)"])


_COLLECTS = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS


def _checkpointed_run(fn, args, kwargs, lifted=None):
    """Run checkpointed `fn` as it is: (its value, ``again(derived)``, which calls `derived` as
    `fn` was called, and with `lifted`, a closure's free variables by name, as keywords). Arguments
    `fn` changes in place are copies in this run (`mutation`); a generator among the arguments
    and `lifted`, and the global generators if `fn` draws from them, are given to `derived` as
    they were before it (`randomness`)."""
    lifted = lifted or {}
    changed = mutation.changed_in(fn)
    call_args, call_kwargs = args, kwargs
    if changed:
        bound = own_signature(fn).bind(*args, **kwargs)
        for name, kind in changed.items():
            if name in bound.arguments:
                bound.arguments[name] = mutation.copied(bound.arguments[name], kind)
        call_args, call_kwargs = bound.args, bound.kwargs
    states = {key: randomness.random_state(value)
              for key, value in list(enumerate(args)) + list(kwargs.items()) + list(lifted.items())
              if isinstance(value, _GENERATORS)}
    everywhere = randomness.global_random_state() if randomness.draws(fn)[1] else None
    value = fn(*call_args, **call_kwargs)

    def again(derived):
        again_args = [randomness.replayed(states[i]) if i in states else a for i, a in enumerate(args)]
        again_kwargs = {k: randomness.replayed(states[k]) if k in states else v
                        for k, v in list(kwargs.items()) + list(lifted.items())}
        if everywhere is not None:
            return randomness.with_random_state(everywhere, derived, *again_args, **again_kwargs)
        return derived(*again_args, **again_kwargs)

    return value, again


_GENERATORS = (np.random.Generator, np.random.RandomState, random.Random)


def _with_collected(fn, args, kwargs, wrt, checkpoint=False):
    """`_value_with_pullback` of a function with a ``*args`` or a ``**kwargs`` parameter.

    Each argument the ``*args`` tuple collects is an argument of its own, as
    in JAX's ``argnums``: ``gradient(f, x, a, b)`` of ``def f(x, *layers)``
    is ``(d_x, d_a, d_b)``, and positions in `wrt` count them; the name of
    the ``*args`` parameter itself stands for the whole tuple (one tangent,
    a tuple). So for ``**options``: each keyword it collects is an argument
    named by its keyword (``wrt="scale"``), and ``wrt="options"`` asks for
    the whole dict. The generated code differentiates with respect to the
    tuple and the dict.
    """
    code = fn.__code__
    names, star, collected = _collecting_parameters(fn)
    slots, single, args, kwargs, values = _argument_slots(
        fn, names, star, code.co_argcount, args, kwargs, wrt, _bound_values_all, collected)
    generated = _differentiated(names + [collected] if collected else names, slots, star, collected)
    if checkpoint:
        # Checkpointed: the forward runs `fn` as it is; the pullback runs its forward again.
        (value, again), back = _checkpointed_run(fn, args, kwargs), None
    else:
        value, back = _derive(fn, generated)(*args, **kwargs)

    def pull(d):
        out = (back or again(_derive(fn, generated))[1])(d)
        return _slot_tangents(slots, dict(zip(generated, (out,) if len(generated) == 1 else out)),
                              values, star, collected)

    return value, pull, single


def _argument_slots(fn, names, star, named, args, kwargs, wrt, bind, collected=None):
    """What `wrt` asks for of a function with a ``*args`` parameter `star` after `named` positional
    ones, and a ``**kwargs`` parameter `collected`.

    Returns (slots, single, args, kwargs, values): a slot is a parameter
    name or, for an argument ``*args`` collects, its index in the tuple, or
    for a keyword ``**kwargs`` collects, ``("**", keyword)`` (ints named in
    `wrt` promoted to floats in args/kwargs; `values` by parameter, from
    `bind(fn, args, kwargs)`).
    """
    values = bind(fn, args, kwargs)
    args, kwargs = list(args), dict(kwargs)
    extra = [k for k in kwargs if k not in names] if collected else []

    def slot_of_position(i):
        if not -len(args) <= i < len(args):
            raise DifferentiationError(
                f"wrt position {i} is out of range: '{_qualname(fn)}' was passed {len(args)} "
                "positional arguments", function_location(fn))
        i %= len(args)
        return names[i] if i < named else i - named

    if wrt is None:
        slots = [names[i] for i in range(min(named, len(args)))]
        slots += list(range(len(args) - named))
        slots += [n for n in names if n in kwargs]
        slots += [("**", k) for k in extra]
        slots = [s_ for s_ in slots
                 if tangents.is_differentiable(_slot_value(s_, values, star, collected))]
        if not slots:
            raise DifferentiationError(
                f"'{_qualname(fn)}' has no differentiable arguments (floats or float arrays)",
                function_location(fn), ["pass floats, or name the parameters with wrt="])
        return slots, len(slots) == 1, args, kwargs, values
    slots = []
    for w in _as_tuple(wrt):
        if isinstance(w, int) and not isinstance(w, bool):
            slots.append(slot_of_position(w))
        elif w in extra:
            slots.append(("**", w))
        else:
            slots.extend(_names_from((w,), names + [collected] if collected else names, fn, named))
    for slot in slots:
        value = _slot_value(slot, values, star, collected)
        if isinstance(value, bool) or not _can_differentiate(value):
            raise DifferentiationError(
                f"cannot differentiate with respect to argument {_slot_name(slot, star, collected)}: "
                f"{_describe_value(value)} is not differentiable", function_location(fn),
                ["pass a float or a float array (for example x.astype(np.float64))"])
        if isinstance(value, int):
            if isinstance(slot, int):
                args[named + slot] = float(value)
            elif isinstance(slot, tuple):
                kwargs[slot[1]] = float(value)
            else:
                index = names.index(slot)
                if index < len(args) and index < named:
                    args[index] = float(value)
                else:
                    kwargs[slot] = float(value)
    return slots, not isinstance(wrt, (tuple, list)), args, kwargs, bind(fn, args, kwargs)


def _differentiated(names, slots, star, collected=None):
    """The parameters `slots` ask tangents of, in order: ``*args`` for any argument it collects,
    ``**kwargs`` for any keyword."""
    return tuple(n for n in names if n in slots
                 or (n == star and any(isinstance(s, int) for s in slots))
                 or (n == collected and any(isinstance(s, tuple) for s in slots)))


def _slot_tangents(slots, by_name, values, star, collected=None):
    out = []
    for slot in slots:
        if isinstance(slot, (int, tuple)):
            whole = by_name[star if isinstance(slot, int) else collected]
            key = slot if isinstance(slot, int) else slot[1]
            out.append(_like(None if whole is None else whole[key],
                             _slot_value(slot, values, star, collected)))
        else:
            out.append(_like(by_name[slot], values[slot]))
    return tuple(out)


def _slot_value(slot, values, star, collected=None):
    if isinstance(slot, int):
        return values[star][slot]
    if isinstance(slot, tuple):
        return values[collected][slot[1]]
    return values[slot]


def _slot_name(slot, star, collected=None):
    if isinstance(slot, int):
        return f"{slot} of '*{star}'"
    if isinstance(slot, tuple):
        return f"'{slot[1]}' of '**{collected}'"
    return f"'{slot}'"


def _like(tangent, value):
    if type(tangent) is float and type(value) is float:
        return tangent
    if (type(tangent) is np.ndarray and type(value) is np.ndarray and tangent.shape == value.shape
            and (tangent.dtype is value.dtype or tangent.dtype == value.dtype)):
        return tangent
    return tangents.like(tangent, value)


def _from_vjp(vjp, signature, registered_wrt, f, args, kwargs, wrt, selective=False):
    star = None if signature is None else next(
        (n for n, p in signature.parameters.items() if p.kind is p.VAR_POSITIONAL), None)
    if star is not None and registered_wrt is None:
        return _from_varargs_vjp(vjp, signature, star, f, args, kwargs, wrt, selective)
    names = list(signature.parameters) if signature is not None else [str(i) for i in range(len(args))]
    returned = list(registered_wrt) if registered_wrt is not None else names
    if signature is not None:
        bound = signature.bind(*args, **kwargs)
        passed = set(bound.arguments)
        bound.apply_defaults()
        values = bound.arguments
    else:
        values = dict(zip(names, args))
        passed = set(values)
    if wrt is None:
        # Every argument passed whose value is differentiable; defaults are constants.
        wanted = [n for n in returned if n in passed and tangents.is_differentiable(values.get(n))]
        single = len(wanted) == 1
    else:
        positional = len(names) if signature is None else sum(
            1 for p in signature.parameters.values() if p.kind in _POSITIONAL)
        wanted = _names_from(wrt, names, f, positional, len(args))
        single = not isinstance(wrt, (tuple, list))
        missing = [n for n in wanted if n not in returned]
        if missing:
            raise DifferentiationError(
                f"the registered derivative of '{_qualname(f)}' gives no tangent for '{missing[0]}'",
                function_location(vjp), ["register it with wrt= naming that parameter"])
    value, back = _call_vjp(vjp, args, kwargs, tuple(wanted) if selective else None)

    def pull(d):
        by_name = _tangents_by_name(vjp, back(d), returned)
        return tuple(_like(by_name[n], values.get(n)) for n in wanted)

    return value, pull, single


def _call_vjp(vjp, args, kwargs, needed):
    """``vjp(*args, **kwargs)``, told which tangents are `needed` when it asks (not None)."""
    if needed is not None:
        return vjp(*args, needed=needed, **kwargs)
    return vjp(*args, **kwargs)


def _tangents_by_name(vjp, out, returned, star=None):
    """A user pullback's result `out`, one tangent for each name in `returned`, by name."""
    return dict(zip(returned, (out,) if len(returned) == 1 else checked_tangents(out, vjp, returned, star)))


def checked_tangents(out, vjp, returned, star=None):
    """`out`, what the pullback of user derivative `vjp` returned, if it holds one tangent for each
    name in `returned` (several); an error naming `vjp` if not, rather than indexing an array."""
    if not isinstance(out, (tuple, list)) or len(out) != len(returned):
        tuple_note = f"; a tuple for '*{star}'" if star else ""
        raise DifferentiationError(
            f"the pullback of '{_qualname(vjp)}' must return {len(returned)} tangents "
            f"(one for each of {', '.join(returned)}{tuple_note}), but returned {out!r}",
            function_location(vjp))
    return out


def _from_varargs_vjp(vjp, signature, star, f, args, kwargs, wrt, selective):
    """`_from_vjp` for a VJP with a ``*args`` parameter: its pullback gives one tangent per
    parameter, a tuple for ``*args``; the caller gets one per argument (see `_with_collected`)."""
    names = list(signature.parameters)
    named = sum(1 for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))

    def bind(_, args, kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    slots, single, args, kwargs, values = _argument_slots(
        f, names, star, named, args, kwargs, wrt, bind)
    wanted = _differentiated(names, slots, star)
    value, back = _call_vjp(vjp, args, kwargs, wanted if selective else None)

    def pull(d):
        return _slot_tangents(slots, _tangents_by_name(vjp, back(d), names, star), values, star)

    return value, pull, single


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _from_rule(rule, args, kwargs, wrt):
    bound = rule.signature.bind(*args, **kwargs)
    names = list(bound.arguments)
    star = next((p.name for p in rule.params if p.kind is inspect.Parameter.VAR_POSITIONAL), None)
    if wrt is None:
        wanted = [n for n in names if n in rule.differentiable_params
                  and tangents.is_differentiable(bound.arguments[n])]
        slots = wanted
        single = len(wanted) == 1
    else:
        params = [p.name for p in rule.params]
        named = params.index(star) if star is not None else len(params)
        positional = sum(1 for p in rule.params if p.kind in _POSITIONAL)
        # Negative positions count back from the last argument passed (JAX's argnums); those
        # past the named parameters are arguments '*args' collects (math.hypot(*xs)).
        given = [w + len(args) if isinstance(w, int) and not isinstance(w, bool) and -len(args) <= w < 0
                 else w for w in _as_tuple(wrt)]
        slots = [w - named if star is not None and isinstance(w, int) and not isinstance(w, bool)
                 and w >= named else _names_from((w,), params, rule.fn, positional, len(args))[0]
                 for w in given]
        wanted = list(dict.fromkeys(star if isinstance(s_, int) else s_ for s_ in slots))
        single = not isinstance(wrt, (tuple, list))
    value, back = registry.vjp_from_rule(rule, args, kwargs, wanted)

    def pull(d):
        out = back(d)
        return tuple(_like(None if out[star] is None else out[star][s_], bound.arguments[star][s_])
                     if isinstance(s_, int) else _like(out[s_], bound.arguments[s_]) for s_ in slots)

    return value, pull, single


def spread_call_with_pullback(f, positions, layout, *pieces):
    """`call_with_pullback` of ``f(x, *xs, k=v, **options)``, whose arguments the compiler sees as
    written: `layout` gives each piece's kind ('' positional, '*', '**', or its keyword) and
    `positions` the pieces (or -1, the object) to differentiate. The tangent of ``*xs`` is a
    tuple (a list for a list), of ``**options`` a dict, one entry for each value it spread.
    """
    args, kwargs, spread = [], {}, []    # spread[i]: where piece i went
    for kind, piece in zip(layout, pieces):
        if kind == "":
            spread.append(len(args))
            args.append(piece)
        elif kind == "*":
            start = len(args)
            args.extend(piece)
            spread.append(range(start, len(args)))
        else:
            items = dict(piece) if kind == "**" else {kind: piece}
            twice = next((k for k in items if k in kwargs), None)
            if twice is not None:
                raise TypeError(f"{getattr(f, '__name__', f)!r} got multiple values for keyword argument "
                                f"{twice!r}")
            kwargs.update(items)
            spread.append(list(items) if kind == "**" else kind)
    at = {key: len(args) + i for i, key in enumerate(kwargs)}    # a keyword's position
    expanded = []                       # the positions `call_with_pullback` counts
    for p in positions:
        where = -1 if p == -1 else spread[p]
        if isinstance(where, int):
            expanded.append(where)
        elif isinstance(where, str):
            expanded.append(at[where])
        elif isinstance(where, range):
            expanded.extend(where)
        else:
            expanded.extend(at[k] for k in where)
    value, pull = call_with_pullback(f, tuple(expanded), *args, **kwargs)

    def pullback(d):
        out = pull(d)
        found = dict(zip(expanded, (out,) if len(expanded) == 1 else out))
        tangents_ = []
        for p in positions:
            where = -1 if p == -1 else spread[p]
            if isinstance(where, (int, str)):
                tangents_.append(found[where if isinstance(where, int) else at[where]])
            elif isinstance(where, range):
                sequence = [found[i] for i in where]
                tangents_.append(sequence if isinstance(pieces[p], list) else tuple(sequence))
            else:
                tangents_.append({k: found[at[k]] for k in where})
        return tangents_[0] if len(positions) == 1 else tuple(tangents_)

    return value, pullback


def call_with_pullback(f, positions, *args, **kwargs):
    """Run-time dispatch for generated code: `f` is only known now.

    Returns ``(value, pullback)``; the pullback gives the tangents of the
    arguments at `positions` (indices into the positional then keyword
    arguments, as written at the call site): one tangent, or a tuple. A
    position may be None: that slot's tangent is None (a zero).
    """
    count = len(args)
    keys = list(kwargs)
    if isinstance(f, type) and tangents.is_structure_type(f):
        return _construct_with_pullback(f, positions, args, kwargs)
    if _is_callable_object(f):
        f = f.__call__      # an object whose class defines __call__ in Python: that method, bound
    if isinstance(f, DifferentiableFunction) and f.vjp is not None and -1 in positions and _captured(f.vjp):
        # JAX refuses a custom_vjp closing over traced values for the same reason.
        raise DifferentiationError(
            "a function made by differentiable_function(...) reads differentiated values: its VJP "
            "gives no derivative for them", function_location(f.vjp),
            ["make it outside the differentiated code, taking those values as arguments; or use "
             "adtrans.checkpointed(f) to recompute f in the pullback"])
    if isinstance(f, types.MethodType):
        target, call_args = f.__func__, (f.__self__,) + args
        offset = 1      # position -1, the object, is the function's first parameter
    else:
        target, call_args, offset = f, args, 0
        if (type(f) is types.FunctionType
                and (f.__closure__ or (-1 in positions and _can_differentiate(f)))
                and registry.lookup_user_vjp(f) is None):
            return _closure_call_with_pullback(f, positions, args, kwargs)
        if (isinstance(f, DifferentiableFunction) and f.checkpoint and f.function.__closure__
                and -1 in positions and registry.lookup_user_vjp(f.function) is None):
            # checkpointed(lambda t: ...) made in differentiated code: a closure, recomputed.
            return _closure_call_with_pullback(f.function, positions, args, kwargs, checkpoint=True)
        if -1 in positions:
            owner = getattr(f, "__self__", None)
            method = getattr(type(owner), getattr(f, "__name__", ""), None)
            if type(owner) is dict and method in _DICT_VIEWS:
                # 'self.heads.items()': as the compiler lowers 'heads.items()' of a local.
                return call_with_pullback(_DICT_VIEWS[method], (0,), owner)
            if method is not None and registry.lookup_rule(method) is not None:
                # 'x.reshape(*shape)', 'options.get(key, 1.0)': a rule of the unbound method.
                return call_with_pullback(method, tuple(p + 1 for p in positions), owner, *args, **kwargs)
            if method is not None and registry.is_constant_function(method):
                # 'x.argsort()', 'x.argmax(axis=1)': its result carries no derivative; `x` gets a
                # zero, not None, as it may be a part of a value (`x[0].argmax()`).
                def no_derivative(d):
                    zeros = tuple(tangents.zeros_like(owner) if p == -1 else None for p in positions)
                    return zeros[0] if len(zeros) == 1 else zeros
                return f(*args, **kwargs), no_derivative
            if owner is not None and not isinstance(owner, types.ModuleType):
                name = getattr(f, "__name__", "")
                kind = type(owner).__name__
                spelled = f"np.{kind}.{name}" if isinstance(owner, np.ndarray) else f"{kind}.{name}"
                raise tangents.structures._error(
                    f"cannot differentiate '{spelled}' with respect to the {kind} it is called on", name,
                    [f"'{spelled}' has no derivative rule: call a function that has one, or register a "
                     f"derivative with @adtrans.derivative(of={spelled})"])
            # A function held by the object (a field such as `activation`): no derivative reaches it.
            return _with_constant_object(f, positions, args, kwargs)
    entry = registry.lookup_user_vjp(target)
    rule = registry.lookup_rule(target) if entry is None else None
    signature = entry.signature if entry is not None else rule.signature if rule is not None else \
        registry.concrete_signature(getattr(target, "function", None) or target)
    # Arguments the compiler saw as active may hold nothing differentiable at run time
    # (a layer without parameters): they get no tangent (None, a zero).
    # A position of None: the compiler knows that argument carries no derivative on this pass.
    values = [None if p is None else call_args[p + offset] if p < count else kwargs[keys[p - count]]
              for p in positions]
    kept = [i for i, v in enumerate(values) if _can_differentiate(v) and not isinstance(v, bool)]
    if not kept:
        return f(*args, **kwargs), _no_tangents(positions)
    if signature is None or any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
        # By position (`_with_collected` counts the arguments a '*args' parameter collects).
        wrt = tuple(positions[i] + offset if positions[i] < count else keys[positions[i] - count]
                    for i in kept)
    else:
        params = list(signature.parameters)
        wrt = tuple(params[positions[i] + offset] if positions[i] < count else keys[positions[i] - count]
                    for i in kept)
    value, pull, _ = _value_with_pullback(target, call_args, kwargs, wrt)
    if len(kept) < len(positions):
        inner = pull

        def pull(d):
            out = [None] * len(positions)
            for i, t in zip(kept, inner(d)):
                out[i] = t
            return tuple(out)
    if len(positions) == 1:
        return value, lambda d: pull(d)[0]
    return value, pull


def _construct_with_pullback(cls, positions, args, kwargs):
    """`call_with_pullback` of a dataclass or NamedTuple constructor (a class only known at run time)."""
    params = list(inspect.signature(cls).parameters)
    keys = list(kwargs)
    names = tuple(params[p] if p < len(args) else keys[p - len(args)] for p in positions)
    value = cls(*args, **kwargs)
    return value, lambda d: tangents.field_cotangents(d, cls, names)


def _captured(f, path=()):
    """The free variables of Python function `f` a derivative can flow through: its closure cells
    holding differentiable values, or closures holding them (a nested def calling another)."""
    if type(f) is not types.FunctionType or not f.__closure__:
        return ()
    path = path + (f,)
    found = []
    for name, cell in zip(f.__code__.co_freevars, f.__closure__):
        if not _filled(cell):
            continue
        value = cell.cell_contents
        if type(value) is types.FunctionType:
            if any(value is g for g in path):
                if _captured_values(f):
                    raise DifferentiationError(
                        f"'{f.__name__}' calls itself and reads differentiated values of the function "
                        "that defines it: such recursive closures are not supported yet", function_location(f),
                        ["define it at module level and pass those values as arguments"])
                continue
            if _captured(value, path):
                found.append(name)
        elif tangents.is_differentiable(value) and not isinstance(value, bool):
            found.append(name)
    return tuple(found)


def _differentiable_defaults(f, names, args, kwargs):
    """The parameters of `f` this call leaves at defaults holding differentiable values."""
    passed = set(names[:len(args)]) | set(kwargs)
    return tuple(n for n, value in _defaults(f).items() if n not in passed and _differentiable_default(f, value))


def _defaults(f):
    """`f`'s parameters with defaults, and their defaults."""
    code = f.__code__
    positional = f.__defaults__ or ()
    found = dict(zip(code.co_varnames[code.co_argcount - len(positional):code.co_argcount], positional))
    found.update(f.__kwdefaults__ or {})
    return found


def _differentiable_default(f, value):
    """Does the default `value` of closure `f` carry a derivative (``lambda v, s=s: ...``)?"""
    return not isinstance(value, (bool, int)) and value is not f and _can_differentiate(value)


def _captured_values(f):
    return any(tangents.is_differentiable(c.cell_contents) for c in f.__closure__ if _filled(c))


def _filled(cell):
    """Has the closure cell a value (a variable assigned after the function was made has not)?"""
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _closure_call_with_pullback(f, positions, args, kwargs, checkpoint=False):
    """`call_with_pullback` of a nested ``def`` or ``lambda`` (a function with closure cells).

    Its generated code takes its free variables as keyword-only parameters,
    given their values now: a closure made in a loop reads a variable the loop
    then changes, and its pullback, run later, must see what its forward saw.
    Differentiated with respect to itself (position -1), the free variables
    holding differentiable values (`_captured`) are differentiated too, and
    its tangent is a dict of theirs by name (`tangents.captured_cotangent`
    reads it where the closure was made).
    """
    code = f.__code__
    cells = {name: cell for name, cell in zip(code.co_freevars, f.__closure__ or ()) if _filled(cell)}
    lifted = tuple(cells)
    captured = _captured(f) if -1 in positions else ()
    names, star, collected = _collecting_parameters(f)
    keys = list(kwargs)
    asked = {}      # index in `positions` -> what `_argument_slots` takes: a position or a keyword
    for i, p in enumerate(positions):
        if p is None or p == -1:
            continue
        value = args[p] if p < len(args) else kwargs[keys[p - len(args)]]
        if _can_differentiate(value) and not isinstance(value, bool):
            asked[i] = p if p < len(args) else keys[p - len(args)]
    slots = []
    if asked:
        slots = _argument_slots(f, names, star, code.co_argcount, args, kwargs, tuple(asked.values()),
                                _bound_values_all, collected)[0]
    every = names + [collected] if collected else names
    defaulted = _differentiable_defaults(f, names, args, kwargs) if -1 in positions else ()
    parameters = _differentiated(every, slots, star, collected)
    wrt = tuple(n for n in every if n in parameters or n in defaulted) + captured
    values = {n: cell.cell_contents for n, cell in cells.items()}
    if not wrt:
        return f(*args, **kwargs), _no_tangents(positions)
    if checkpoint:
        # The forward runs `f` as it is; the pullback runs its forward again (see `checkpointed`).
        value, again = _checkpointed_run(f, args, kwargs, values)
        back = None
    else:
        value, back = _derive(f, wrt, lifted=lifted)(*args, **kwargs, **values)
    bound = _bound_values_all(f, args, kwargs) if slots else None

    def pullback(d):
        out = back(d) if back is not None else again(_derive(f, wrt, lifted=lifted))[1](d)
        found = dict(zip(wrt, (out,) if len(wrt) == 1 else out))
        tangents_ = [None] * len(positions)
        for i, tangent in zip(asked, _slot_tangents(slots, found, bound, star, collected) if slots else ()):
            tangents_[i] = tangent
        if -1 in positions:
            closure = {n: found[n] for n in captured}
            closure.update((f"{n}=", found[n]) for n in defaulted)      # `lambda v, s=s: ...`
            tangents_[positions.index(-1)] = closure
        return tangents_[0] if len(positions) == 1 else tuple(tangents_)

    return value, pullback


# A dict's views run as lists, which a pullback can index (see `Desugar`'s lowering of locals').
_DICT_VIEWS = {dict.items: listed_items, dict.values: listed_values, dict.keys: listed_keys}


def _no_tangents(positions):
    """A pullback giving None (a zero) for each of `positions`."""
    return (lambda d: None) if len(positions) == 1 else (lambda d: (None,) * len(positions))


def _with_constant_object(f, positions, args, kwargs):
    """`call_with_pullback` where position -1 (the object `f` was read from) gets no derivative."""
    rest = tuple(p for p in positions if p != -1)
    if not rest:
        return f(*args, **kwargs), lambda d: None
    value, pull = call_with_pullback(f, rest, *args, **kwargs)
    if len(rest) == 1:
        return value, lambda d: (None, pull(d))
    return value, lambda d: (None,) + tuple(pull(d))


def _is_callable_object(f):
    """An instance (a layer) whose class defines ``__call__`` in Python, without a derivative of its own."""
    if isinstance(f, (types.FunctionType, types.MethodType, DifferentiableFunction, type)):
        return False
    call = getattr(type(f), "__call__", None)
    return (isinstance(call, (types.FunctionType, DifferentiableFunction))
            and registry.lookup_user_vjp(f) is None and registry.lookup_rule(f) is None)


# -- wrt: which arguments

def _python_function(f):
    if isinstance(f, DifferentiableFunction):
        return f.function
    if isinstance(f, types.FunctionType):
        return f
    return None


def _qualname(f):
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)


def _signature(f):
    try:
        return inspect.signature(f)
    except (TypeError, ValueError):
        return None


def _as_tuple(wrt):
    """`wrt` as a tuple; a position may be any integer (``np.int64`` from ``np.arange``), as JAX's
    argnums may."""
    if isinstance(wrt, (str, numbers.Integral)):
        wrt = (wrt,)
    return tuple(_position(w) if isinstance(w, numbers.Integral) else w for w in wrt)


def _position(w):
    return w if isinstance(w, (int, bool)) else operator.index(w)


def _method_wrt(method, args, kwargs, wrt):
    """`wrt` for ``gradient(obj.method, *args)``, as for ``method(obj, *args)``.

    Positions count from the first argument after ``self``, as the caller
    sees them. With no `wrt`, the differentiable arguments the caller passed,
    not ``self`` (what ``jax.grad(obj.method)`` and Swift's
    ``gradient(at: x, of: obj.method)`` do); ``self`` only when nothing else
    is differentiable (``gradient(obj.energy)``), or when named, here or by
    ``@differentiable(wrt=...)`` on the method.
    """
    if wrt is not None:
        return _shift_positions(wrt)
    if isinstance(method.__func__, DifferentiableFunction) and method.__func__.wrt is not None:
        return None         # @differentiable(wrt=...) on the method says
    fn = _python_function(method.__func__)
    if fn is None:
        return None
    names = _parameter_names(fn)[1:]
    passed = set(names[:len(args)]) | set(kwargs)
    try:
        values = _bound_values_all(fn, (method.__self__,) + tuple(args), kwargs)
    except TypeError:
        return None         # the call's own error, raised where it is made
    chosen = tuple(n for n in names if n in passed and tangents.is_differentiable(values.get(n)))
    if not chosen:
        return None
    return chosen[0] if len(chosen) == 1 else chosen


def _bound_method_wrt(method, wrt):
    """`_method_wrt` without the call's arguments: every parameter after ``self`` not declared a
    non-float, ``self`` when there is none (or by `wrt`, or ``@differentiable(wrt=...)``)."""
    if wrt is not None or isinstance(method, DifferentiableFunction) and method.wrt is not None:
        return _shift_positions(wrt)
    fn = _python_function(method)
    if fn is None:
        return None
    explicit = tuple(n for n in _default_wrt_names(fn) if n != _parameter_names(fn)[0])
    return explicit or None


def _shift_positions(wrt):
    if wrt is None or isinstance(wrt, str):
        return wrt
    if isinstance(wrt, numbers.Integral) and not isinstance(wrt, bool):
        wrt = _position(wrt)
        return wrt + 1 if wrt >= 0 else wrt        # -1 is still the last
    return type(wrt)(_shift_positions(w) if isinstance(w, numbers.Integral) else w for w in wrt)


def _collecting_parameters(fn):
    """(`_parameter_names(fn)`, the ``*args`` parameter's name, the ``**kwargs`` one's), None for
    a parameter `fn` does not have."""
    names = _parameter_names(fn)
    code = fn.__code__
    star = names[code.co_argcount] if code.co_flags & inspect.CO_VARARGS else None
    collected = code.co_varnames[len(names)] if code.co_flags & inspect.CO_VARKEYWORDS else None
    return names, star, collected


def _parameter_names(fn):
    """`fn`'s parameters in signature order: positional, ``*args`` (one name), keyword-only."""
    code = fn.__code__
    names = list(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    if code.co_flags & inspect.CO_VARARGS:
        names.insert(code.co_argcount, code.co_varnames[len(names)])
    return names


def _names_from(wrt, names, f, positional, passed=None):
    """The parameters `wrt` asks for: names among `names`, positions among the first `positional`.

    As JAX's ``argnums``, positions count positional arguments (a keyword-only
    parameter has none), and a negative one counts back from the last of the
    `passed` positional arguments, when the call is known.
    """
    out = []
    for w in _as_tuple(wrt):
        if isinstance(w, int) and not isinstance(w, bool):
            index = w + (positional if passed is None else passed) if w < 0 else w
            if not 0 <= index < positional:
                raise DifferentiationError(
                    f"wrt position {w} is out of range: '{_qualname(f)}' has {positional} positional "
                    + ("parameters" if passed is None else f"parameters and was passed {passed}"),
                    function_location(f), [f"its parameters are: {', '.join(names)}"])
            out.append(names[index])
        elif isinstance(w, str):
            if w not in names:
                raise DifferentiationError(
                    f"'{w}' is not a parameter of '{_qualname(f)}'", function_location(f),
                    [f"its parameters are: {', '.join(names) or '(none)'}"])
            out.append(w)
        else:
            raise DifferentiationError(f"wrt must name parameters or give positions, not {w!r}",
                                       function_location(f))
    return out


def _wrt_names(fn, wrt):
    names, star, collected = _collecting_parameters(fn)
    if collected:
        names = names + [collected]     # `**options` asks for the whole dict
    # A position may name the ``*args`` parameter, which follows the positional ones.
    return tuple(_names_from(wrt, names, fn, fn.__code__.co_argcount + bool(star)))


def _default_wrt_names(fn):
    """Without argument values: every parameter not declared (or defaulted) as a non-float,
    ``*args`` included.

    A method's ``self`` is left out too; with argument values, `_resolve_wrt`
    decides from what each argument holds.
    """
    signature = own_signature(fn)
    names = []
    for index, (name, param) in enumerate(signature.parameters.items()):
        if param.kind is param.VAR_KEYWORD:
            continue    # options by name; '*args' stands for its whole tuple (docs/index.md)
        if index == 0 and name in ("self", "cls") and "." in fn.__qualname__ \
                and not _of_structure_type(fn):
            continue    # a method's object: differentiable only when its value says so
        if param.annotation in (int, bool, str, "int", "bool", "str"):
            continue
        if param.default is not param.empty and not tangents.is_differentiable(param.default):
            continue    # a default that is not a float (a flag, a hook, a count) marks a constant
        names.append(name)
    return tuple(names)


def _of_structure_type(fn):
    """Is `fn` a method of a dataclass or NamedTuple (found once the class exists), whose `self` has a tangent?"""
    parts = fn.__qualname__.split(".")[:-1]
    if not parts or "<locals>" in parts:
        return False
    owner = fn.__globals__.get(parts[0])
    for part in parts[1:]:
        owner = getattr(owner, part, None)
    return isinstance(owner, type) and tangents.is_structure_type(owner)


def _resolve_wrt(fn, args, kwargs, wrt):
    """(wrt names in parameter order, whether one tangent is returned, args, kwargs)."""
    names = _parameter_names(fn)
    if fn.__code__.co_flags & inspect.CO_VARKEYWORDS:
        raise DifferentiationError(
            f"'{_qualname(fn)}' takes '**kwargs': such functions are not supported yet",
            function_location(fn), ["give the function named parameters, or register its derivative "
                                    "with @adtrans.derivative(of=...)"])
    values = _bound_values_all(fn, args, kwargs)
    if wrt is None:
        # Every argument the caller passed whose value is differentiable; defaults are constants.
        passed = set(names[:len(args)]) | set(kwargs)
        chosen = [n for n in names if n in passed and tangents.is_differentiable(values[n])]
        if not chosen:
            raise DifferentiationError(
                f"'{_qualname(fn)}' has no differentiable arguments (floats or float arrays)",
                function_location(fn), ["pass floats, or name the parameters with wrt="])
        single = len(chosen) == 1
    else:
        chosen = _names_from(wrt, names, fn, fn.__code__.co_argcount, len(args))
        single = not isinstance(wrt, (tuple, list))
        args, kwargs = list(args), dict(kwargs)
        for name in chosen:
            value = values.get(name)
            if isinstance(value, bool) or not _can_differentiate(value):
                raise DifferentiationError(
                    f"cannot differentiate with respect to '{name}': {_describe_value(value)} is not "
                    "differentiable", function_location(fn),
                    ["pass a float or a float array (for example x.astype(np.float64))"])
            if isinstance(value, int):
                _replace_argument(fn, args, kwargs, name, float(value))
    return tuple(chosen), single, tuple(args), kwargs


def _can_differentiate(value):
    if isinstance(value, int):
        return True    # promoted to float when named in wrt
    if type(value) is types.FunctionType:
        # A closure over differentiated values (or holding them as defaults), passed on.
        return bool(_captured(value)) or any(_differentiable_default(value, d) for d in _defaults(value).values())
    return tangents.is_differentiable(value)


def _describe_value(value):
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return f"a value of type {type(value).__name__}"


def _replace_argument(fn, args, kwargs, name, value):
    names = _parameter_names(fn)
    index = names.index(name)
    if index < len(args):
        args[index] = value
    else:
        kwargs[name] = value


def _bound_values_all(fn, args, kwargs):
    signature = own_signature(fn)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        raise DifferentiationError(f"arguments do not match '{_qualname(fn)}{signature}': {e}",
                                   function_location(fn)) from None
    bound.apply_defaults()
    return bound.arguments


def _bound_values(fn, args, kwargs, names):
    values = _bound_values_all(fn, args, kwargs)
    return [values[n] for n in names]
