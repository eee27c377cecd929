"""Checking derivatives against central finite differences.

``check_gradient(f, *args)`` is the test every derivative in adtrans passes:
it pulls a random cotangent back through adtrans's pullback and compares the
result with central differences of ``f`` computed in float64, both along a
random direction (the dot-product test of autograd's ``check_grads`` and
JAX's ``check_vjp``) and, for small arguments, element by element, so a
failure can name the argument and the element that is wrong.

The helpers that walk structures of values (floats, arrays, and tuples,
lists and dicts of them) are shared with the rule tests.
"""

import inspect

import numpy as np

_ELEMENTWISE_LIMIT = 64      # arguments with at most this many numbers are also checked element by element


# -- Structures of differentiable values ---------------------------------------------

def is_float_value(x):
    """A float, a floating array or scalar, or a non-empty container whose leaves all are."""
    if isinstance(x, bool):
        return False
    if isinstance(x, float):
        return True
    if isinstance(x, (np.ndarray, np.generic)):
        return x.dtype.kind == "f"
    if isinstance(x, (tuple, list)):
        return len(x) > 0 and all(is_float_value(v) for v in x)
    if isinstance(x, dict):
        return len(x) > 0 and all(is_float_value(v) for v in x.values())
    return False


def leaves(x):
    """The numbers of a structure, as a list of floats and arrays (None for a non-float leaf)."""
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in leaves(v)]
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in leaves(v)]
    if isinstance(x, bool) or not isinstance(x, (float, int, np.ndarray, np.generic)):
        return [None]
    if isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind not in "fc":
        return [None]
    if isinstance(x, int):
        return [None]
    return [x]


def rebuild(template, new_leaves):
    """`template`'s structure with its leaves replaced, in order, by `new_leaves`."""
    items = iter(new_leaves)

    def build(x):
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            return type(x)(*[build(v) for v in x])       # a NamedTuple stays one
        if isinstance(x, (tuple, list)):
            return type(x)(build(v) for v in x)
        if isinstance(x, dict):
            return {k: build(v) for k, v in x.items()}
        return next(items)

    return build(template)


def random_like(x, rng, symmetric=False):
    """A random value of `x`'s structure, shapes and dtypes (0 for a non-float leaf)."""
    def sample(leaf):
        if leaf is None:
            return 0.0
        if isinstance(leaf, float):
            return float(rng.standard_normal())
        u = rng.standard_normal(np.shape(leaf))
        if symmetric and u.ndim >= 2:
            u = (u + np.swapaxes(u, -1, -2)) / 2
        u = u.astype(leaf.dtype)
        return u if isinstance(leaf, np.ndarray) else u[()]
    return rebuild(x, [sample(leaf) for leaf in leaves(x)])


def to_float64(x):
    """`x` with every floating leaf widened to float64 (Python floats stay floats)."""
    def widen(leaf):
        if leaf is None or isinstance(leaf, float):
            return leaf
        return np.asarray(leaf, dtype=np.float64) if isinstance(leaf, np.ndarray) else np.float64(leaf)
    return rebuild(x, [widen(leaf) if leaf is not None else original
                       for leaf, original in zip(leaves(x), _raw_leaves(x))])


def _raw_leaves(x):
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in _raw_leaves(v)]
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in _raw_leaves(v)]
    return [x]


def inner(a, b):
    """The float64 inner product of two values of the same structure (non-float leaves count 0)."""
    total = 0.0
    for x, y in zip(leaves(a), leaves(b)):
        if x is None or y is None:
            continue
        total += float(np.sum(np.asarray(x, dtype=np.float64) * np.asarray(y, dtype=np.float64)))
    return total


def moved(x, direction, t):
    """``x + t * direction``, leaf by leaf, in float64."""
    def step(leaf, d, original):
        if leaf is None:
            return original
        if isinstance(leaf, float):
            return leaf + t * d
        return np.asarray(leaf, dtype=np.float64) + t * np.asarray(d, dtype=np.float64)
    return rebuild(x, [step(leaf, d, original)
                       for leaf, d, original in zip(leaves(x), leaves(direction), _raw_leaves(x))])


def structure_problem(tangent, value):
    """Why `tangent` cannot be a tangent of `value` (structure, shape, dtype), or None."""
    if isinstance(value, (tuple, list)):
        if not isinstance(tangent, (tuple, list)) or len(tangent) != len(value):
            return f"expected a {type(value).__name__} of {len(value)} tangents, got {_describe(tangent)}"
        for i, (t, v) in enumerate(zip(tangent, value)):
            problem = structure_problem(t, v)
            if problem:
                return f"element {i}: {problem}"
        return None
    if isinstance(value, dict):
        if not isinstance(tangent, dict) or set(tangent) != set(value):
            return f"expected a dict with keys {sorted(value)}, got {_describe(tangent)}"
        for k in value:
            problem = structure_problem(tangent[k], value[k])
            if problem:
                return f"key {k!r}: {problem}"
        return None
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind == "f":
        if not isinstance(tangent, (np.ndarray, np.generic)):
            return f"expected an array of shape {value.shape} and dtype {value.dtype}, got {_describe(tangent)}"
        if tangent.shape != value.shape or tangent.dtype != value.dtype:
            return (f"expected shape {value.shape} and dtype {value.dtype}, "
                    f"got shape {tangent.shape} and dtype {tangent.dtype}")
        return None
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        if not isinstance(tangent, float):
            return f"expected a float, got {_describe(tangent)}"
    return None


def _describe(x):
    if isinstance(x, (np.ndarray, np.generic)):
        return f"{type(x).__name__} of shape {x.shape} and dtype {x.dtype}"
    return f"a {type(x).__name__}"


# -- Finite differences ------------------------------------------------------------

def directional_derivative(phi, eps):
    """Central difference of the scalar function `phi` at 0."""
    return (phi(eps) - phi(-eps)) / (2 * eps)


def compare(name, analytic, numeric, rtol, atol, what="derivative"):
    """Raise AssertionError naming `name` when `analytic` and `numeric` (arrays or floats) differ."""
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    error = np.abs(a - n)
    allowed = atol + rtol * np.maximum(np.abs(a), np.abs(n))
    bad = ~(error <= allowed)
    if np.any(bad):
        index = np.unravel_index(int(np.argmax(np.where(bad, error - allowed, -np.inf))), a.shape) if a.ndim else ()
        where = f" at index {index}" if a.ndim else ""
        raise AssertionError(
            f"{what} w.r.t. {name} does not match central finite differences: largest error "
            f"{float(np.max(np.where(bad, error, 0))):.3g}{where} (adtrans {float(a[index]):.10g}, "
            f"finite differences {float(n[index]):.10g}; rtol={rtol:g}, atol={atol:g})")


def check_against_differences(name, evaluate, x, tangent, rng, rtol, atol, eps, symmetric=False):
    """Check `tangent` (adtrans's cotangent of argument `x`, of x's structure) against central differences.

    ``evaluate(x')`` must return ``<v, f(..., x', ...)>`` for the fixed random
    cotangent v.  Runs the dot-product test along a random direction and, for
    small arguments, an element-by-element comparison (along symmetric
    directions only when `symmetric`: for functions of symmetric matrices).
    """
    u = random_like(x, rng, symmetric=symmetric)
    numeric = directional_derivative(lambda t: evaluate(moved(x, u, t)), eps)
    compare(name, inner(tangent, u), numeric, rtol, atol, what="the dot-product test <pullback(v), u> = <v, J u>")
    sizes = [np.size(leaf) for leaf in leaves(x) if leaf is not None]
    if symmetric or sum(sizes) > _ELEMENTWISE_LIMIT:
        return
    x_leaves = leaves(x)
    t_leaves = leaves(tangent)
    for k, (leaf, t_leaf) in enumerate(zip(x_leaves, t_leaves)):
        if leaf is None:
            continue
        numeric = np.zeros(np.shape(leaf))
        for j in range(numeric.size):
            basis = [None if other is None else
                     (np.zeros(np.shape(other)) if isinstance(other, (np.ndarray, np.generic)) else 0.0)
                     for other in x_leaves]
            if isinstance(leaf, float):
                basis[k] = 1.0
            else:
                basis[k].flat[j] = 1.0
                basis[k] = basis[k] if isinstance(leaf, np.ndarray) else basis[k][()]
            direction = rebuild(x, [b if b is not None else 0.0 for b in basis])
            numeric.flat[j] = directional_derivative(lambda t: evaluate(moved(x, direction, t)), eps)
        label = name if len(x_leaves) == 1 else f"{name} (element {k})"
        compare(label, t_leaf, numeric, rtol, atol)


# -- The public check ------------------------------------------------------------------

def check_gradient(f, *args, wrt=None, rtol=1e-5, atol=1e-7, eps=None, seed=0):
    """Check adtrans's derivative of `f` at `args` against central finite differences.

    Pulls a random cotangent ``v`` of the result back with
    ``value_with_pullback`` and compares, for each `wrt` argument, the result
    with central differences of ``<v, f(args)>`` (in float64) along a random
    direction and, for arguments with few elements, along each element.
    Raises ``AssertionError`` naming the argument and the largest error.
    Tolerances are widened to the precision of float32 or float16 arguments.

        def f(x, w):
            return np.sum(np.tanh(x @ w))

        adtrans.check_gradient(f, np.ones((2, 3)), np.ones((3, 4)) / 4)
    """
    from adtrans.api import value_with_pullback

    names = _parameter_names(f, len(args))
    if wrt is None:
        positions = [i for i, a in enumerate(args) if is_float_value(a) or _has_float(a)]
    else:
        value_with_pullback(f, *args, wrt=wrt)    # a `wrt` that names no argument: its located error
        requested = wrt if isinstance(wrt, (tuple, list)) else (wrt,)
        positions = [names.index(w) if isinstance(w, str) else w % len(args) for w in requested]
    if not positions:
        raise ValueError("check_gradient: no differentiable argument to check")
    args = list(args)
    for i in positions:
        if isinstance(args[i], int) and not isinstance(args[i], bool):
            args[i] = float(args[i])
    rtol, atol = _widened(args, positions, rtol, atol)
    eps = 1e-6 if eps is None else eps
    rng = np.random.default_rng(seed)

    value, pull = value_with_pullback(f, *args, wrt=tuple(positions))
    v = random_like(value, rng)
    tangents = pull(v)
    wide_args = [to_float64(a) for a in args]
    for i, tangent in zip(positions, tangents):
        label = f"argument '{names[i]}' of {_qualname(f)}" if i < len(names) else f"argument {i} of {_qualname(f)}"
        problem = structure_problem(tangent, args[i])
        if problem:
            raise AssertionError(f"the gradient w.r.t. {label} has the wrong type: {problem}")

        def evaluate(x, i=i):
            trial = list(wide_args)
            trial[i] = x
            return inner(v, f(*trial))
        check_against_differences(label, evaluate, wide_args[i], tangent, rng, rtol, atol, eps)


def _qualname(f):
    target = getattr(f, "function", f)
    return getattr(target, "__qualname__", None) or repr(f)


def _has_float(x):
    return isinstance(x, (tuple, list, dict)) and any(leaf is not None for leaf in leaves(x))


def _parameter_names(f, count):
    target = getattr(f, "function", f)
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return [str(i) for i in range(count)]
    names = []
    for p in parameters:
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            names += [f"{p.name}[{i}]" for i in range(count - len(names))]
            break
        names.append(p.name)
    return names


def _widened(args, positions, rtol, atol):
    """Tolerances no tighter than the precision of the checked arguments allows."""
    for i in positions:
        for leaf in leaves(args[i]):
            if isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.itemsize < 8:
                precision = float(np.sqrt(np.finfo(leaf.dtype).eps))
                rtol, atol = max(rtol, precision), max(atol, precision)
    return rtol, atol
