"""Random numbers drawn again: a recomputed function draws what its first run drew.

A checkpointed function that draws random numbers (a dropout mask) would
draw new ones when its pullback runs it again, and pull back through another
mask than the one its forward used. PyTorch's checkpoint restores the random
state for this by default; so does adtrans. Where differentiated code calls
such a function, the forward keeps the state a generator argument has before
the call (``rng_state = random_state(rng)``; the call itself draws from `rng`
as plain Python would), and the pullback runs the function again with a copy
of that state (``replayed(rng_state)``, a copy each time, so the pullback can
be called again). A function that draws from NumPy's or Python's global
generator runs again with their states as they were before its first run
(`with_random_state`), and the states are put back afterwards.

Which generators a function draws from is read from its source and from the
sources of the functions it calls by name: a parameter whose methods draw
(``rng.random(...)``, ``rng.normal(...)``), or that it passes to such a
function; calls of ``np.random.<f>`` or ``random.<f>``. (Called at run time,
through `api`, a checkpointed function's generator arguments are known by
their type.)
"""

import copy
import inspect
import random
import types

import gast
import numpy as np

from adtrans.errors import DifferentiationError
from adtrans.source import own_signature, parse_function

# The methods of numpy.random.Generator, numpy.random.RandomState and random.Random that draw.
_DRAWING = frozenset({
    "beta", "binomial", "bytes", "chisquare", "choice", "dirichlet", "exponential", "f", "gamma",
    "geometric", "gumbel", "hypergeometric", "integers", "laplace", "logistic", "lognormal",
    "logseries", "multinomial", "multivariate_hypergeometric", "multivariate_normal",
    "negative_binomial", "noncentral_chisquare", "noncentral_f", "normal", "pareto", "permutation",
    "permuted", "poisson", "power", "rand", "randint", "randn", "random", "random_integers",
    "random_sample", "rayleigh", "shuffle", "standard_cauchy", "standard_exponential",
    "standard_gamma", "standard_normal", "standard_t", "tomaxint", "triangular", "uniform",
    "vonmises", "wald", "weibull", "zipf",
    # random.Random
    "betavariate", "choices", "expovariate", "gammavariate", "gauss", "getrandbits",
    "lognormvariate", "normalvariate", "paretovariate", "randbytes", "randrange", "sample",
    "vonmisesvariate", "weibullvariate", "binomialvariate"})


def draws(fn):
    """(the parameters of Python function `fn` it draws random numbers from, does it draw from
    the global generators): read from its source and from the functions it calls by name."""
    return _draws(fn, set())


def _draws(fn, seen):
    code = getattr(fn, "__code__", None)
    if code is None or code in seen:
        return [], False
    if code in _cache:
        return _cache[code]
    seen.add(code)
    try:
        function = parse_function(fn).node
    except DifferentiationError:
        return [], False
    args = function.args
    params = [a.id for a in args.posonlyargs + args.args + args.kwonlyargs]
    namespace = _namespace(fn)
    drawing, everywhere = [], False
    for stmt in function.body:
        for node in gast.walk(stmt):
            if not isinstance(node, gast.Call):
                continue
            func = node.func
            if (isinstance(func, gast.Attribute) and func.attr in _DRAWING and isinstance(func.value, gast.Name)
                    and func.value.id in params):
                drawing.append(func.value.id)
            elif _is_global_draw(func, namespace):
                everywhere = True
            else:
                callee = _static(func, namespace)
                callee = getattr(callee, "function", callee)     # a DifferentiableFunction's
                if isinstance(callee, types.FunctionType):
                    passed, inner = _draws(callee, seen)
                    everywhere = everywhere or inner
                    drawing.extend(_arguments_for(callee, node, passed, params))
    found = [p for p in params if p in drawing], everywhere
    _cache[code] = found
    return found


_cache = {}


def _namespace(fn):
    names = dict(fn.__globals__)
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            names[name] = cell.cell_contents
        except ValueError:      # not bound yet
            pass
    return names


def _static(func, namespace):
    if isinstance(func, gast.Name):
        return namespace.get(func.id)
    if isinstance(func, gast.Attribute):
        return getattr(_static(func.value, namespace), func.attr, None)
    return None


def _arguments_for(callee, call, parameters, names):
    """The names among `names` that `call` passes to `callee`'s `parameters`."""
    if not parameters or any(isinstance(a, gast.Starred) for a in call.args):
        return []
    try:
        bound = own_signature(callee).bind_partial(
            *call.args, **{k.arg: k.value for k in call.keywords if k.arg is not None}).arguments
    except (TypeError, ValueError):
        return []
    return [bound[p].id for p in parameters
            if isinstance(bound.get(p), gast.Name) and bound[p].id in names]


def _is_global_draw(func, namespace):
    """``np.random.normal``, ``random.random``, or ``rand`` imported from either."""
    if isinstance(func, gast.Name):
        return _is_global_drawing_function(namespace.get(func.id))
    if not (isinstance(func, gast.Attribute) and func.attr in _DRAWING):
        return False
    module = _static(func.value, namespace)
    return module is np.random or module is random


def _is_global_drawing_function(value):
    name = getattr(value, "__name__", None)
    if name not in _DRAWING:
        return False
    owner = getattr(value, "__self__", None)
    return owner is random._inst or owner is getattr(np.random.mtrand, "_rand", None)


def random_state(generator):
    """What `generator`'s next draws depend on: a copy of it as it is now."""
    return copy.deepcopy(generator)


def replayed(state):
    """A generator that draws what `state`'s generator drew (a copy: the state stays as it is)."""
    return copy.deepcopy(state)


def global_random_state():
    """The states of NumPy's and Python's global generators."""
    return np.random.get_state(), random.getstate()


def with_random_state(state, function, *args, **kwargs):
    """``function(*args, **kwargs)`` with the global generators in `state`; put back afterwards."""
    now = global_random_state()
    np.random.set_state(state[0])
    random.setstate(state[1])
    try:
        return function(*args, **kwargs)
    finally:
        np.random.set_state(now[0])
        random.setstate(now[1])
