"""The derivative registry: what adtrans knows about callables it does not read.

A callable met in differentiated code is looked up here before adtrans tries
to read its source. There are four kinds of entry:

- ``Rule``: a built-in derivative written as *templates*, one Python
  expression per differentiable parameter, saying how the result's cotangent
  ``d_y`` maps back to that parameter.  The compiler substitutes the call's
  arguments into the template and inlines it into the generated pullback, so
  a rule costs no dispatch at run time.  ``vjp_from_rule`` evaluates the same
  templates eagerly, for calls only known at run time.
- a user VJP registered with ``@adtrans.derivative(of=f)``: called, not
  inlined, because it is the user's code.
- a constant function (``print``, ``len``, ``np.zeros_like``): its result
  never carries a derivative, whatever its arguments.
- an integer-valued function (``int``, ``round``): differentiating through
  it is an error the user must resolve with ``without_derivative``.
"""

import functools
import inspect
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import gast

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    name: str
    default: Any = REQUIRED
    kind: Any = inspect.Parameter.POSITIONAL_OR_KEYWORD


@dataclass
class Case:
    """One set of adjoint templates, used when the named arguments are constants equal to `when`."""

    when: Dict[str, Any]
    adjoints: Dict[str, str]


@dataclass
class Rule:
    """A built-in derivative: parameters, then one adjoint template per differentiable parameter.

    Template names: ``y`` is the call's result, ``d_y`` its cotangent, each
    parameter name stands for the argument bound to it; any other name is
    looked up in ``namespace`` (the rule module's globals). The parameter
    list is kept as text and parsed on first use: most rules are never used
    by a given program, and parsing 80 signatures would cost 8 ms at import.
    """

    fn: Callable
    name: str
    signature_text: str
    cases: List[Case]
    namespace: Dict[str, Any]

    @functools.cached_property
    def params(self) -> Tuple[Param, ...]:
        params, _ = _parse_signature(self.signature_text)
        unknown = self.differentiable_params - {p.name for p in params}
        if unknown:
            raise ValueError(f"rule for {self.name}: no parameter named {sorted(unknown)}")
        return params

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        return _parse_signature(self.signature_text)[1]

    @property
    def differentiable_params(self):
        names = set()
        for case in self.cases:
            names.update(case.adjoints)
        return names

    def case_for(self, constants):
        """The first case whose `when` matches the arguments known as constants."""
        for case in self.cases:
            if all(k in constants and _same_constant(constants[k], v) for k, v in case.when.items()):
                return case
        raise LookupError(self.name)

    def template(self, case, param):
        """The parsed adjoint template of `param` (a gast expression), or None."""
        source = case.adjoints.get(param)
        if source is None:
            return None
        return _parse_template(source)


class _Nonzero:
    """A `when` value matching any constant number but 0: ``x ** 3`` inlines ``3 * x ** (3 - 1)``,
    which the simplifier folds, where a helper must guard ``x ** 0``."""

    def __repr__(self):
        return "a nonzero number"


NONZERO = _Nonzero()


def _same_constant(a, b):
    if b is NONZERO:
        return type(a) in (int, float) and a != 0
    return type(a) is type(b) and a == b


@functools.lru_cache(maxsize=None)
def _parse_template(source):
    return gast.parse(source, mode="eval").body


@functools.lru_cache(maxsize=None)
def _parse_signature(text):
    """'x, axis=None, *, keepdims=False' -> (Param, ...), inspect.Signature."""
    namespace = {}
    exec(f"def _signature({text}): pass", {}, namespace)
    signature = inspect.signature(namespace["_signature"])
    params = tuple(Param(p.name, p.default, p.kind) for p in signature.parameters.values())
    return params, signature


@dataclass
class UserVJP:
    """A derivative registered with ``@derivative(of=f)``: called with f's arguments."""

    of: Callable
    vjp: Callable
    wrt: Optional[Tuple[str, ...]]  # parameter names, None for every parameter
    signature: Optional[inspect.Signature]
    # The VJP takes a keyword-only `needed`: the names of the parameters whose tangents will be
    # used (PyTorch's ctx.needs_input_grad); its pullback may give None for the others.
    selective: bool = False


_rules: Dict[Any, Rule] = {}
_user_vjps: Dict[Any, UserVJP] = {}
_constant_functions: Dict[Any, str] = {}
_integer_valued: Dict[Any, str] = {}
_constant_modules: Dict[str, str] = {}


class _Identity:
    """A key for an unhashable callable (a ctypes function): compared by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj


def _key(fn):
    try:
        hash(fn)
    except TypeError:
        return _Identity(fn)
    return fn


def rules_for(namespace):
    """Make the ``rule(...)`` declaration of a rule module whose templates use `namespace`.

    Usage, in a rule module::

        rule = rules_for(globals())
        rule(np.exp, "x", x="d_y * y")
        rule(np.maximum, "x1, x2", x1="unbroadcast(d_y * (x1 >= x2), x1)",
             x2="unbroadcast(d_y * (x1 < x2), x2)")
        rule(operator.pow, "a, b", when={"b": 2}, a="d_y * (2 * a)")
    """

    def rule(fn, signature, *, when=None, name=None, **adjoints):
        case = Case(dict(when or {}), dict(adjoints))
        existing = _rules.get(_key(fn))
        if existing is not None and existing.signature_text == signature:
            # A special case goes before the general one it refines.
            if case.when:
                existing.cases.insert(len([c for c in existing.cases if c.when]), case)
            else:
                existing.cases.append(case)
            return existing
        display = name or _display_name(fn)
        new = Rule(fn, display, signature, [case], namespace)
        _rules[_key(fn)] = new
        return new

    return rule


def _display_name(fn):
    import numpy as np

    if isinstance(fn, np.ufunc):
        return f"np.{fn.__name__}"      # older NumPy gives ufuncs no __module__
    module = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    if isinstance(fn, type(abs)) and module == "builtins":
        return name
    if module == "_operator":
        module = "operator"
    if module.startswith("numpy"):
        module = "np" + module[len("numpy"):].replace(".linalg._linalg", ".linalg").replace(
            ".linalg.linalg", ".linalg")
        if module.startswith("np._core") or module.startswith("np.core"):
            module = "np"
    return f"{module}.{name}" if module and module != "builtins" else name


def constant_function(*fns, reason="its result is not differentiable"):
    """Declare functions whose results carry no derivative (``print``, ``len``, ``np.shape``)."""
    for fn in fns:
        _constant_functions[_key(fn)] = reason


def constant_module(prefix, reason="its result is not a differentiable value"):
    """Declare every function of the modules named `prefix...` constant, and methods of their objects.

    ``numpy.random`` is declared this way: it covers ``rng.normal`` as well as
    ``np.random.rand``, and does not import ``numpy.random`` (8 ms) just to
    register it.
    """
    _constant_modules[prefix] = reason


def _module_of(fn):
    """The module `fn` belongs to; for a method, its class's (a C method has no __module__)."""
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, type(inspect)):
        return type(owner).__module__ or ""
    objclass = getattr(fn, "__objclass__", None)    # an unbound C method: Generator.uniform
    if objclass is not None:
        return objclass.__module__ or ""
    return getattr(fn, "__module__", None) or ""


def integer_valued(*fns):
    """Declare functions whose results are integers: differentiating through them is an error."""
    for fn in fns:
        _integer_valued[_key(fn)] = _display_name(fn)


def concrete_signature(fn):
    """fn's signature, unless it is unknown or only ``(*args, **kwargs)``.

    Cached per function (run-time dispatch asks for it on every call, and
    ``inspect.signature`` costs ~10 us).
    """
    try:
        return _signatures[fn]
    except (KeyError, TypeError):
        pass
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None
    else:
        kinds = {p.kind for p in signature.parameters.values()}
        if kinds and kinds <= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
            signature = None
    try:
        _signatures[fn] = signature
    except TypeError:       # not weakly referable, or unhashable: not cached
        pass
    return signature


_signatures = weakref.WeakKeyDictionary()


def register_vjp(of, vjp, wrt=None):
    # The VJP takes the same parameters as `of`: its own signature stands in
    # for a C function's, which Python cannot see.
    own = concrete_signature(vjp)
    needed = own.parameters.get("needed") if own is not None else None
    selective = needed is not None and needed.kind is inspect.Parameter.KEYWORD_ONLY
    if selective:
        own = own.replace(parameters=[p for p in own.parameters.values() if p.name != "needed"])
    signature = concrete_signature(of) or own
    if (wrt is None and own is not None and signature is not own
            and len(own.parameters) < len(signature.parameters)
            and all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in own.parameters.values())):
        # A VJP taking fewer parameters than `of` (``(a, b)`` for ``np.hypot(x1, x2, /, out=None,
        # *, where=True, ...)``): its pullback gives tangents for the parameters it takes.
        wrt = tuple(signature.parameters)[:len(own.parameters)]
    entry = UserVJP(of, vjp, tuple(wrt) if wrt is not None else None, signature, selective)
    _user_vjps[_key(of)] = entry
    return entry


def lookup_rule(fn) -> Optional[Rule]:
    return _rules.get(_key(fn))


def lookup_user_vjp(fn) -> Optional[UserVJP]:
    return _user_vjps.get(_key(fn))


def is_constant_function(fn) -> bool:
    if _key(fn) in _constant_functions:
        return True
    if _constant_modules:
        module = _module_of(fn)
        return any(module.startswith(prefix) for prefix in _constant_modules)
    return False


def integer_valued_name(fn) -> Optional[str]:
    return _integer_valued.get(_key(fn))


def all_rules():
    """Every built-in rule, for the docs' coverage table and the tests."""
    return list(_rules.values())


# -- Eager evaluation of a rule: for calls whose target is only known at run time.

def vjp_from_rule(rule: Rule, args, kwargs, wanted=None):
    """Call ``rule.fn(*args, **kwargs)`` and return ``(value, pullback)``.

    ``pullback(d_y)`` returns a dict from parameter name to cotangent for
    the differentiable parameters named in `wanted` (all when None); a
    parameter whose case has no template gets None (a zero).  Only
    arguments not in `wanted` count as constants when choosing a case.
    """
    if callable(rule.fn):
        y = rule.fn(*args, **kwargs)
    else:
        y = rule.fn.__get__(args[0])       # a property such as ndarray.T
    bound = rule.signature.bind(*args, **kwargs)
    bound.apply_defaults()
    values = dict(bound.arguments)
    constants = {k: v for k, v in values.items()
                 if (wanted is None or k not in wanted)
                 and isinstance(v, (int, float, bool, type(None), str))}
    case = rule.case_for(constants)
    names = list(case.adjoints) if wanted is None else list(wanted)

    def pullback(d_y):
        scope = dict(rule.namespace)
        scope.update(values)
        scope["y"] = y
        scope["d_y"] = d_y
        return {name: eval(_code(case.adjoints[name]), scope) if name in case.adjoints else None
                for name in names}

    return y, pullback


@functools.lru_cache(maxsize=None)
def _code(source):
    return compile(source, "<adtrans rule>", "eval")
