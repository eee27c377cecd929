"""Which parameters a function changes in place: what a checkpointed call hands a copy.

A checkpointed function's forward runs as plain Python, and its pullback runs
it again from the arguments the forward kept. Had the plain run changed an
argument in place (``z += b``, ``u[1:-1] = v``, ``s.pos = p``, ``np.add(z, b,
out=z)``), the second run would start from the changed value and pull back a
different computation. So the forward hands such a parameter a copy: a
shallow one when the function changes the argument itself, a deep one when it
changes something the argument holds (``s.pos += v`` adds into the array of
`s`'s field, ``xs[0][1] = v``). Differentiated code never changes a caller's
value either (there ``z += b`` makes a new ``z``), so the forward's value is
the one the transform computes.

The reading is syntactic. A local bound to a parameter or to part of it
(``v = u``, ``v = u[1:]``, ``for row in u``) counts as the parameter (a view
changes what it views); a change made by another function the parameter is
passed to is not seen.
"""

import copy

import gast

from adtrans.errors import DifferentiationError
from adtrans.source import parse_function

# Methods that change their object (lists, dicts, sets, arrays); the transform refuses them on
# differentiated values too (`ReverseTransform.check_mutations`).
CHANGING_METHODS = frozenset({
    "append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear", "update",
    "setdefault", "popitem", "add", "discard", "fill", "put", "itemset", "resize", "partition",
    "setflags", "__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__"})
# Functions that change their first argument (``np.copyto(dst, src)``, ``np.add.at(a, i, v)``,
# ``rng.shuffle(x)``).
CHANGING_FIRST_ARGUMENT = frozenset({"copyto", "put", "place", "putmask", "fill_diagonal", "at",
                                      "shuffle"})

SHALLOW, DEEP = "shallow", "deep"


def changed_in(fn):
    """`parameters_changed` of Python function `fn`'s source, once per code object."""
    code = fn.__code__
    if code not in _changed:
        try:
            _changed[code] = parameters_changed(parse_function(fn).node)
        except DifferentiationError:
            return {}       # no source: differentiating it says so
    return _changed[code]


_changed = {}


def copied(value, kind):
    """`value` as a function that changes it (`kind` SHALLOW or DEEP) should be given it."""
    return copy.copy(value) if kind == SHALLOW else copy.deepcopy(value)


def parameters_changed(function):
    """``{parameter: SHALLOW or DEEP}`` for the parameters `function` (a gast FunctionDef) may
    change in place, and how deep a copy keeps the caller's value whole."""
    args = function.args
    params = [a.id for a in args.posonlyargs + args.args + args.kwonlyargs]
    params += [a.id for a in (args.vararg, args.kwarg) if a is not None]
    body = [node for stmt in function.body for node in gast.walk(stmt)]
    # local -> (parameter, deep): a name bound to the parameter itself, or to part of it.
    holds = {p: (p, False) for p in params}
    changed = True
    while changed:
        changed = False
        for node in body:
            for target, value in _bindings(node):
                found = _root(value)
                if found is None or found[0] not in holds or target in holds:
                    continue
                param, deep = holds[found[0]]
                holds[target] = (param, deep or found[1] > 0 or isinstance(node, (gast.For, gast.comprehension)))
                changed = True
    found = {}

    def change(path, depth_of_change):
        root = _root(path)
        if root is None or root[0] not in holds:
            return
        param, deep = holds[root[0]]
        kind = DEEP if deep or root[1] + depth_of_change > 1 else SHALLOW
        if found.get(param) != DEEP:
            found[param] = kind

    for node in body:
        if isinstance(node, (gast.Assign, gast.AnnAssign, gast.Delete)):
            for target in getattr(node, "targets", None) or [node.target]:
                for part in _unpacked(target):
                    if isinstance(part, (gast.Subscript, gast.Attribute)):
                        change(part.value, 1)        # x[i] = v, x.f = v: changes x
        elif isinstance(node, gast.AugAssign):
            target = node.target
            if isinstance(target, gast.Name):
                change(target, 1)                    # z += b adds into an array z
            else:
                change(target.value, 2)              # x[i] += v may add into the array x[i]
        elif isinstance(node, gast.Call):
            func = node.func
            if isinstance(func, gast.Attribute) and func.attr in CHANGING_METHODS:
                change(func.value, 1)
            name = func.attr if isinstance(func, gast.Attribute) else getattr(func, "id", None)
            if name in CHANGING_FIRST_ARGUMENT and node.args:
                change(node.args[0], 1)
            for keyword in node.keywords:
                if keyword.arg == "out":
                    for part in _unpacked(keyword.value):
                        change(part, 1)
    return found


def _bindings(node):
    """(local, value) pairs `node` binds by name: ``v = u[1:]``, ``for row in u``."""
    if isinstance(node, gast.Assign):
        return [(t.id, node.value) for t in node.targets if isinstance(t, gast.Name)]
    if isinstance(node, (gast.For, gast.comprehension)) and isinstance(node.target, gast.Name):
        return [(node.target.id, node.iter)]
    return []


def _root(node):
    """(name, depth) of ``name``, ``name[i]``, ``name.f[i]``...; None for anything else."""
    depth = 0
    while isinstance(node, (gast.Subscript, gast.Attribute)):
        node = node.value
        depth += 1
    return (node.id, depth) if isinstance(node, gast.Name) else None


def _unpacked(target):
    if isinstance(target, (gast.Tuple, gast.List)):
        return [p for element in target.elts for p in _unpacked(element)]
    if isinstance(target, gast.Starred):
        return _unpacked(target.value)
    return [target]
