"""Resolution: what each desugared operation is, for differentiation.

For every `Assign` this pass decides its *kind* and which locals a
derivative may flow through.  Calls whose target is known when the function
is transformed (a global, ``np.exp``, a builtin) are looked up in the
registry now; calls whose target is a local value (a function passed as an
argument, ``self.layer``) are left to run-time dispatch.

Kinds: ``copy``, ``rule`` (a built-in template), ``vjp`` (a user
derivative, called), ``transform`` (a Python function adtrans reads and
transforms), ``dynamic`` (dispatched at run time), ``literal`` (tuple, list,
dict), ``subscript``, ``unpack``, ``attribute`` (a field or property of a dataclass), ``construct``
(a dataclass or NamedTuple built from its fields), ``checkpoint`` (a
transformed callee whose forward pass the pullback runs again),
``constant`` (no derivative: comparisons,
``len``, ``x.shape``, ``without_derivative``) and three that are errors
when active: ``integer`` (``int``, ``round``), ``opaque`` (constructs adtrans
does not look inside) and ``unknown`` (callees with no source and no rule), and ``unresolved`` (a
name not defined yet: an error when active, once the function is
differentiated).
"""

import builtins
import inspect
import operator
import types
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import gast
import numpy as np

from adtrans import registry, tangents
from adtrans.errors import DifferentiationError
from adtrans.desugar import Assign, Effect, Return, Unpack, free_names
from adtrans.rules.support import concatenated_by, unpacked

BINARY_OPERATORS = {
    gast.Add: operator.add, gast.Sub: operator.sub, gast.Mult: operator.mul,
    gast.Div: operator.truediv, gast.Pow: operator.pow, gast.MatMult: operator.matmul,
    gast.FloorDiv: operator.floordiv, gast.Mod: operator.mod,
}
UNARY_OPERATORS = {gast.USub: operator.neg, gast.UAdd: operator.pos}

# Attributes of arrays that describe them rather than hold their values.
METADATA_ATTRIBUTES = {"shape", "ndim", "size", "dtype", "itemsize", "nbytes", "strides", "flags"}

_NOT_RESOLVED = object()


class Unresolved(Exception):
    """A name a call needs is not defined yet: try again at first differentiation."""

    def __init__(self, name, node):
        super().__init__(name)
        self.name = name
        self.node = node


@dataclass
class Operation:
    kind: str
    inputs: List[str]                       # locals read
    diff_inputs: List[str]                  # locals a derivative may flow through
    callee: Any = None                      # the resolved callable, if any
    rule: Optional[registry.Rule] = None
    binding: Dict[str, Any] = field(default_factory=dict)   # rule parameter -> argument node
    description: str = ""                   # how errors name the operation


def captured_names(function, locals_):
    """The enclosing function's locals a nested ``def`` or ``lambda`` reads: its closure.

    A derivative flows through them into the function value, whose tangent
    is a dict of theirs by name (see `api.call_with_pullback`).
    """
    return [name for name in free_names(function) if name in locals_]


def local_names(node, locals_):
    """The locals an expression reads."""
    return [n.id for n in gast.walk(node)
            if isinstance(n, gast.Name) and isinstance(n.ctx, gast.Load) and n.id in locals_]


class Resolver:
    def __init__(self, source, ssa_names, strict=True):
        self.source = source
        self.fn = source.fn
        self.locals = ssa_names
        self.strict = strict
        code = self.fn.__code__
        self.freevars = set(code.co_freevars)
        self.globals = self.fn.__globals__

    def statement(self, stmt):
        if isinstance(stmt, Assign):
            return self.assign(stmt)
        if isinstance(stmt, Unpack):
            return Operation("unpack", [stmt.source], [stmt.source])
        if isinstance(stmt, Return):
            names = local_names(stmt.value, self.locals)
            return Operation("copy", names, names)
        if isinstance(stmt, Effect):
            if isinstance(stmt.stmt, gast.FunctionDef):
                return self.closure(stmt.stmt)
            return Operation("constant", local_names(stmt.stmt, self.locals), [])
        raise TypeError(stmt)

    def closure(self, function):
        """A nested ``def`` or a ``lambda``: a value made of the locals it reads (see `captured_names`)
        and of those its defaults hold (``lambda v, s=s: ...``).

        `binding` maps the key of each in the closure's tangent to the local: a free variable's
        name, or ``"s="`` for parameter `s`'s default.
        """
        binding = {name: name for name in captured_names(function, self.locals)}
        args = function.args
        positional = args.posonlyargs + args.args
        pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        for param, default in pairs:
            if isinstance(default, gast.Name) and default.id in self.locals:
                binding[f"{param.id}="] = default.id
        if not binding:
            return Operation("constant", [], [])
        inputs = list(dict.fromkeys(binding.values()))
        return Operation("closure", inputs, inputs, binding=binding, description="closure")

    def assign(self, stmt):
        value = stmt.value
        inputs = local_names(value, self.locals)
        if isinstance(value, gast.Name):
            if value.id in self.locals:
                return Operation("copy", inputs, inputs)
            return Operation("constant", [], [])
        if isinstance(value, gast.BinOp):
            fn = BINARY_OPERATORS.get(type(value.op))
            return self.rule_call(fn, [value.left, value.right], [], inputs, value)
        if isinstance(value, gast.UnaryOp) and type(value.op) in UNARY_OPERATORS:
            return self.rule_call(UNARY_OPERATORS[type(value.op)], [value.operand], [], inputs, value)
        if isinstance(value, gast.Call):
            return self.call(value, inputs)
        if isinstance(value, gast.Attribute):
            if value.attr in METADATA_ATTRIBUTES:
                return Operation("constant", inputs, [])
            if value.attr == "T":
                return self.rule_call(np.ndarray.T, [value.value], [], inputs, value)
            return Operation("attribute", inputs, inputs, description=f"attribute '.{value.attr}'")
        if isinstance(value, gast.Subscript):
            base = local_names(value.value, self.locals)
            if not base and inputs:
                return self.static_subscript(value, inputs)
            return Operation("subscript", inputs, base)
        if isinstance(value, (gast.Tuple, gast.List)) and any(isinstance(e, gast.Starred) for e in value.elts):
            # [x, *rest]: the display runs as written; its pullback is keyed to unpacked(layout, x, rest).
            layout = gast.Tuple([gast.Constant("*" if isinstance(e, gast.Starred) else "", None)
                                 for e in value.elts], gast.Load())
            parts = [e.value if isinstance(e, gast.Starred) else e for e in value.elts]
            return self.rule_call(unpacked, [layout] + parts, [], inputs, value)
        if isinstance(value, (gast.Tuple, gast.List, gast.Dict)):
            return Operation("literal", inputs, inputs)
        if isinstance(value, (gast.Compare, gast.Constant)):
            return Operation("constant", inputs, [])
        if isinstance(value, gast.UnaryOp) and isinstance(value.op, gast.Not):
            return Operation("constant", inputs, [])
        if isinstance(value, gast.Lambda):
            return self.closure(value)
        return Operation("opaque", inputs, inputs, description=_describe(value))

    def static_subscript(self, value, inputs):
        """A global or module attribute indexed with locals: ``TABLE[i]``, ``np.r_[a, x, b]``.

        A container's item is a constant; ``np.r_`` and ``np.c_`` join their parts (the subscript
        runs as written, its pullback is keyed to `concatenated_by`); anything else that computes
        from its index (``np.mgrid[a:b:5j]``) is opaque: an error if a derivative reaches it.
        """
        try:
            target = self.static_value(value.value)
        except Unresolved as e:
            return Operation("unresolved", inputs, inputs, callee=e, description=f"'{e.name}'")
        if target is _NOT_RESOLVED or isinstance(target, _CONTAINERS):
            return Operation("subscript", inputs, [])
        name = f"'{_dotted(value.value)}[...]'"
        if isinstance(target, _INDEX_TRICKS):
            index = value.slice
            parts = index.elts if isinstance(index, gast.Tuple) else [index]
            if not any(isinstance(p, gast.Starred) for p in parts):
                parts = [_slice_value(p) if isinstance(p, gast.Slice) else p for p in parts]
                return self.rule_call(concatenated_by, [value.value] + parts, [], inputs, value)
        return Operation("opaque", inputs, inputs, description=name)

    def call(self, call, inputs):
        func = call.func
        arg_inputs = [n for a in call.args + [k.value for k in call.keywords]
                      for n in local_names(a, self.locals)]
        if isinstance(func, gast.Attribute) and isinstance(func.value, gast.Name) \
                and func.value.id in self.locals:
            # A method of a local value: NumPy's methods are rules, the rest run-time dispatch.
            method = getattr(np.ndarray, func.attr, None)
            rule = registry.lookup_rule(method) if method is not None else None
            if rule is not None and not is_spread(call):
                return self.rule_call(method, [func.value] + list(call.args), call.keywords, inputs, call)
            # The object is an input too: a method is differentiated with respect to `self`.
            return Operation("dynamic", inputs, arg_inputs + [func.value.id],
                             description=f"method '.{func.attr}'")
        if isinstance(func, gast.Name) and func.id in self.locals:
            return Operation("dynamic", inputs, arg_inputs + [func.id], description=f"'{func.id}'")
        synthetic = getattr(func, "synthetic_callee", None)
        if synthetic is not None:
            return self.resolved_call(synthetic, call, inputs, arg_inputs, func.id)
        try:
            target = self.static_value(func)
        except Unresolved as e:
            return Operation("unresolved", inputs, arg_inputs, callee=e, description=f"'{e.name}'")
        if target is _NOT_RESOLVED:
            return Operation("dynamic", inputs, arg_inputs, description=f"'{_dotted(func)}'")
        return self.resolved_call(target, call, inputs, arg_inputs, _dotted(func))

    def resolved_call(self, target, call, inputs, arg_inputs, name):
        from adtrans.api import DifferentiableFunction  # the API module builds on this one

        if is_spread(call) and (registry.lookup_user_vjp(target) is not None
                                or isinstance(target, (DifferentiableFunction, types.FunctionType))
                                or registry.lookup_rule(target) is not None
                                or isinstance(target, type) and tangents.is_structure_type(target)):
            # 'f(*xs, **options)': which parameters the values fill is known only at run time.
            return Operation("dynamic", inputs, arg_inputs, callee=target, description=name)
        entry = registry.lookup_user_vjp(target)
        if entry is not None:
            # Every argument: one carrying a derivative into a parameter the derivative gives no
            # tangent for is an error (`ReverseTransform.check_differentiable`), not a silent zero.
            return Operation("vjp", inputs, arg_inputs, callee=target, description=name)
        if isinstance(target, DifferentiableFunction):
            kind = "vjp" if target.vjp is not None else "checkpoint" if target.checkpoint else "transform"
            if kind != "vjp" and target.function.__code__.co_flags & _COLLECTS:
                kind = "dynamic"    # the run-time dispatch counts what *args and **kwargs collect
            return Operation(kind, inputs, arg_inputs, callee=target, description=name)
        rule = registry.lookup_rule(target)
        if rule is not None:
            return self.rule_call(target, call.args, call.keywords, inputs, call)
        if registry.is_constant_function(target):
            # diff_inputs matter only to the "explicit without_derivative" check of activity.py
            return Operation("constant", inputs, arg_inputs, callee=target, description=name)
        if registry.integer_valued_name(target) is not None:
            return Operation("integer", inputs, arg_inputs, callee=target, description=name)
        if isinstance(target, types.FunctionType) and target.__code__.co_filename == _NUMPY_DISPATCHER:
            # NumPy < 1.25 wraps its functions in Python made without source: one with no rule
            # is a C function to us.
            return Operation("unknown", inputs, arg_inputs, callee=target, description=name)
        if isinstance(target, types.FunctionType):
            if target.__code__.co_flags & _COLLECTS:
                return Operation("dynamic", inputs, arg_inputs, callee=target, description=name)
            return Operation("transform", inputs, arg_inputs, callee=target, description=name)
        if isinstance(target, type) and tangents.is_structure_type(target):
            return Operation("construct", inputs, arg_inputs, callee=target, description=name)
        if isinstance(target, types.MethodType) and isinstance(target.__func__, (types.FunctionType,
                                                                                DifferentiableFunction)):
            return Operation("dynamic", inputs, arg_inputs, callee=target, description=name)
        if not isinstance(target, type) and isinstance(getattr(type(target), "__call__", None), (
                types.FunctionType, DifferentiableFunction)):
            # A layer held by a global: its class's __call__, dispatched when the call runs.
            return Operation("dynamic", inputs, arg_inputs, callee=target, description=name)
        return Operation("unknown", inputs, arg_inputs, callee=target, description=name)

    def rule_call(self, fn, args, keywords, inputs, node):
        rule = registry.lookup_rule(fn)
        if rule is None:
            return Operation("unknown", inputs, inputs, callee=fn, description=_callable_name(fn))
        try:
            bound = rule.signature.bind(*args, **{k.arg: k.value for k in keywords})
        except TypeError as e:
            raise self.source.error(node, f"this call does not match {rule.name}({_signature_text(rule)})",
                                    f"{e}") from None
        binding = {}
        for param in rule.params:
            if param.name in bound.arguments:
                value = bound.arguments[param.name]
                if param.kind is inspect.Parameter.VAR_POSITIONAL:
                    value = gast.Tuple(list(value), gast.Load())
                binding[param.name] = value
            elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                binding[param.name] = gast.Tuple([], gast.Load())
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                binding[param.name] = gast.Dict([], [])
            elif param.default is not registry.REQUIRED:
                binding[param.name] = gast.Constant(param.default, None) if _is_literal(param.default) \
                    else param.default
        return Operation("rule", inputs, inputs, callee=fn, rule=rule, binding=binding,
                         description=rule.name)

    def known_value(self, expr):
        """`static_value`, or None where it is not known now (a closure variable, a local, a
        name not defined yet)."""
        try:
            value = self.static_value(expr)
        except (Unresolved, DifferentiationError):
            return None
        return None if value is _NOT_RESOLVED else value

    def static_value(self, expr):
        """The value of a global/builtin/module-attribute expression now, or _NOT_RESOLVED."""
        if isinstance(expr, gast.Name):
            if expr.id in self.freevars:
                return _NOT_RESOLVED   # a closure variable: read when the generated code runs
            if expr.id in self.globals:
                return self.globals[expr.id]
            if hasattr(builtins, expr.id):
                return getattr(builtins, expr.id)
            raise Unresolved(expr.id, expr)
        if isinstance(expr, gast.Attribute):
            base = self.static_value(expr.value)
            if base is _NOT_RESOLVED:
                return base
            try:
                return getattr(base, expr.attr)
            except AttributeError:
                raise self.source.error(
                    expr, f"'{_dotted(expr.value)}' has no attribute '{expr.attr}'") from None
        return _NOT_RESOLVED


# Objects whose items do not depend on the index's value but only select: constants.
_CONTAINERS = (list, tuple, dict, str, range, np.ndarray, type(np.s_))
_INDEX_TRICKS = (type(np.r_), type(np.c_))


def _slice_value(index):
    """``0:3`` as the value ``slice(0, 3, None)``, an argument a call can take."""
    parts = [p if p is not None else gast.Constant(None, None) for p in (index.lower, index.upper, index.step)]
    return gast.Call(gast.Name("slice", gast.Load(), None, None), parts, [])


_NUMPY_DISPATCHER = "<__array_function__ internals>"
_COLLECTS = inspect.CO_VARARGS | inspect.CO_VARKEYWORDS     # a *args or **kwargs parameter


def is_spread(call):
    """Does `call` unpack a sequence or a mapping into its arguments (``f(*xs)``, ``f(**options)``)?"""
    return (any(isinstance(a, gast.Starred) for a in call.args)
            or any(k.arg is None for k in call.keywords))


def _is_literal(value):
    if isinstance(value, tuple):
        return all(_is_literal(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, complex, str, bytes))


def _dotted(expr):
    if isinstance(expr, gast.Name):
        return expr.id
    if isinstance(expr, gast.Attribute):
        return f"{_dotted(expr.value)}.{expr.attr}"
    return "expression"


def _callable_name(fn):
    return registry._display_name(fn)


def _signature_text(rule):
    return str(rule.signature)[1:-1]


def _describe(node):
    from adtrans.desugar import construct_name
    names = {
        gast.BoolOp: "'and'/'or' expression", gast.IfExp: "conditional expression",
        gast.ListComp: "list comprehension", gast.SetComp: "set comprehension",
        gast.DictComp: "dict comprehension", gast.GeneratorExp: "generator expression",
        gast.JoinedStr: "f-string", gast.Set: "set", gast.Lambda: "lambda",
    }
    return names.get(type(node)) or construct_name(node)
