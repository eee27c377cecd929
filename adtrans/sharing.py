"""Changes in place seen through another name: where value semantics and Python part ways.

Differentiated code runs ``z += b``, ``z[i] = v``, ``np.add(z, b, out=z)`` and
``xs.append(v)`` by value: the statement makes a new version of `z`. Python
changes z's memory instead, and every name sharing that memory sees the
change: ``w = z``, a view (``p = y[n:]``, ``row = P[i]``, ``for row in P``,
``z.T``, ``z.reshape(...)``), a list or dict holding it (``traj.append(z)``,
``{"w": z}``). Where such a name is read after the change, differentiated
code would read the value from before it: a wrong value and a wrong
gradient, silently.

`shared_changes` finds those places: a forward pass over the desugared
statements keeps, for each version, the changes made through another name
since it was computed (views and copies of it inherit them), and a read of
such a version by an operation is a read Python would see changed. Whether
the memory is really shared is a question about run-time values (``h = x;
h += 1.0`` changes nothing when `x` is a float; a row of a 1-D array is a
number; a slice of a list is a copy), so each change found gets a check in
the generated forward, ``refuse_shared_change(p, y, error)``, which raises
the `DifferentiationError` prepared for that line when `p` is a mutable value
(an array, a list, an object) that `y` is, views or holds. Changes of values
known to be floats get none; a function with no change in place is not analysed.
"""

import dataclasses
import numbers

import gast
import numpy as np

from adtrans.activity import targets
from adtrans.desugar import Assign, Effect, If, Loop, Return, Unpack, flatten
from adtrans.resolve import METADATA_ATTRIBUTES

# Array methods, attributes and NumPy functions whose result may be a view of the array.
_VIEW_METHODS = frozenset({"reshape", "ravel", "view", "transpose", "swapaxes", "squeeze", "get"})
_VIEW_ATTRIBUTES = frozenset({"T", "mT", "real", "imag", "flat"})
_VIEW_FUNCTIONS = frozenset({np.asarray, np.asanyarray, np.reshape, np.ravel, np.transpose, np.squeeze,
                             np.swapaxes, np.moveaxis, np.expand_dims, np.atleast_1d, np.atleast_2d,
                             np.atleast_3d})


def shared_changes(statements, params, ops, floats):
    """``{id(statement): [names]}``: the changes in place (statements with `Assign.changes`) that
    may change what each of `names` holds, read afterwards as if unchanged.

    `ops` maps ``id(statement)`` to its `resolve.Operation`; `floats` are the locals known to hold
    Python floats, which no statement changes in place.
    """
    flat = list(flatten(statements))
    if not any(isinstance(s, Assign) and s.changes for s in flat):
        return {}
    own, reach = _regions(flat, params, ops)
    flow = _Flow(own, reach, ops, floats)
    state = _State({}, set(params))
    flow.block(statements, state)
    return {key: sorted(names) for key, names in flow.found.items()}


def refuse_shared_change(changed, other, error):
    """Raise `error` where changing `changed` in place would change `other` too (an array, a view
    of one, a list or dict holding it): differentiated code would go on reading `other` unchanged."""
    if not isinstance(changed, _IMMUTABLE) and _shares(changed, other):
        raise error.with_traceback(None)


# What ``x += 1`` makes anew rather than changes (and what no item or field assignment changes).
_IMMUTABLE = (numbers.Number, np.generic, str, bytes, tuple, type(None))


def _shares(changed, other):
    if changed is other:
        return True
    if type(other) is np.ndarray:
        return type(changed) is np.ndarray and np.shares_memory(changed, other)
    if isinstance(other, (list, tuple)):
        return any(_shares(changed, item) for item in other)
    if isinstance(other, dict):
        return any(_shares(changed, item) for item in other.values())
    if dataclasses.is_dataclass(other) and not isinstance(other, type):
        return any(_shares(changed, getattr(other, f.name)) for f in dataclasses.fields(other))
    return False


@dataclasses.dataclass
class _State:
    stale: dict         # version -> {(id of a change, name it was seen through)} made since it was computed
    defined: set        # versions bound on every path to here

    def copy(self):
        return _State(dict(self.stale), set(self.defined))

    def join(self, other):
        stale = dict(self.stale)
        for name, changes in other.stale.items():
            stale[name] = stale.get(name, frozenset()) | changes
        return _State(stale, self.defined & other.defined)


class _Flow:
    def __init__(self, own, reach, ops, floats):
        self.own = own
        self.reach = reach
        self.ops = ops
        self.floats = floats
        self.found = {}

    def block(self, statements, state):
        for stmt in statements:
            if isinstance(stmt, If):
                self.read(_loads(stmt.test), state)
                body, orelse = state.copy(), state.copy()
                self.block(stmt.body, body)
                self.block(stmt.orelse, orelse)
                joined = body.join(orelse)
                state.stale, state.defined = joined.stale, joined.defined
            elif isinstance(stmt, Loop):
                self.loop(stmt, state)
            else:
                self.simple(stmt, state)

    def loop(self, loop, state):
        if loop.kind == "range":
            self.read(_loads(loop.header), state)
        entry = state.copy()
        while True:
            after = entry.copy()
            self.block(loop.condition, after)
            if loop.test is not None:
                self.read(_loads(loop.test), after)
            self.block(loop.body, after)
            if loop.break_test is not None:
                self.read(_loads(loop.break_test), after)
            joined = entry.join(after)
            if joined.stale == entry.stale:
                break
            entry = joined
        if loop.condition:
            self.block(loop.condition, entry)   # a while loop leaves after its test
        state.stale, state.defined = entry.stale, entry.defined

    def read(self, names, state):
        for name in names:
            for key, seen_through in state.stale.get(name, ()):
                self.found.setdefault(key, set()).add(seen_through)

    def simple(self, stmt, state):
        sources = set().union(*_sources(stmt, self.ops))
        changed = stmt.changes if isinstance(stmt, Assign) else None
        # Python's result is (or views, or holds) these: it sees their changes, where a read would not.
        self.read(_statement_loads(stmt) - ({changed} if changed else sources), state)
        carried = frozenset().union(*(state.stale.get(s, frozenset()) for s in sources))
        bound = targets(stmt)
        for target in bound:
            if carried:
                state.stale[target] = carried
            else:
                state.stale.pop(target, None)
        if changed and changed not in self.floats:
            memory = self.own.get(changed, frozenset())
            for name in state.defined:
                if name not in bound and self.reach.get(name, frozenset()) & memory:
                    state.stale[name] = state.stale.get(name, frozenset()) | {(id(stmt), name)}
        state.defined.update(bound)


def _regions(flat, params, ops):
    """(own, reach): for each version, the values it may *be* (itself, or the array it views), and
    those it may be or hold (a list's items too). A value is named by the version that made it (a
    parameter, or a statement making a new value), and what a value made elsewhere holds by
    ``(name, "items")``. Changing `z` in place changes what holds or views ``own[z]``. To a fixed
    point: loop headers and branch merges have several sources."""
    own, reach, links = {}, {}, []
    for name in params:
        own[name], reach[name] = {name}, {name, (name, "items")}
    for stmt in flat:
        same, part, item, held = _sources(stmt, ops)
        for target in targets(stmt):
            own.setdefault(target, set())
            reach.setdefault(target, set())
            if not (same or part or item):
                own[target].add(target)
                display = isinstance(stmt, Assign) and isinstance(stmt.value, _DISPLAYS)
                reach[target].update({target} if display else {target, (target, "items")})
            links.append((target, same, part, item, held))
    changed = True
    while changed:
        changed = False
        for target, same, part, item, held in links:
            owned = set().union(*(own.get(s, ()) for s in same), *(reach.get(s, ()) for s in part),
                                *(reach.get(s, set()) - own.get(s, set()) for s in item))
            reached = owned.union(*(reach.get(s, ()) for s in same | part | held))
            if not (owned <= own[target] and reached <= reach[target]):
                own[target] |= owned
                reach[target] |= reached
                changed = True
    return ({name: frozenset(found) for name, found in own.items()},
            {name: frozenset(found) for name, found in reach.items()})


_DISPLAYS = (gast.Tuple, gast.List, gast.Dict)


def _sources(stmt, ops):
    """The locals `stmt`'s result may share memory with: (those it is, those it views or is an item
    of, those it is an item of (a field), those it holds); all empty for a new value."""
    none = set()
    if isinstance(stmt, Unpack):
        return none, {stmt.source}, none, none
    if not isinstance(stmt, Assign):
        return none, none, none, none
    value = stmt.value
    if stmt.changes:
        # z[i] = v, xs.append(v): the same object as z, and a list holds v afterwards.
        return {stmt.changes}, none, none, (_names(value.args[1:]) if isinstance(value, gast.Call) else none)
    if isinstance(value, gast.Name):
        return {value.id}, none, none, none
    if isinstance(value, (gast.Tuple, gast.List)):
        return none, none, none, _names(value.elts)
    if isinstance(value, gast.Dict):
        return none, none, none, _names(value.values)
    if isinstance(value, gast.Subscript):
        return none, _names([value.value]), none, none
    if isinstance(value, gast.Attribute):
        if value.attr in METADATA_ATTRIBUTES:
            return none, none, none, none
        if value.attr in _VIEW_ATTRIBUTES:
            return none, _names([value.value]), none, none
        return none, none, _names([value.value]), none       # obj.field: what obj holds
    if isinstance(value, gast.Call):
        func = value.func
        callee = getattr(ops.get(id(stmt)), "callee", None)
        # np.reshape(P, ...) before P.reshape(...): a module's function is no method of the module.
        if value.args and any(callee is f for f in _VIEW_FUNCTIONS):
            return none, _names(value.args[:1]), none, none
        if isinstance(func, gast.Attribute) and func.attr in _VIEW_METHODS:
            return none, _names([func.value]), none, none
        if hasattr(func, "synthetic_callee"):
            return none, none, none, _names(value.args)    # appended, merged, zipped...: lists holding their arguments
    return none, none, none, none


def _names(nodes):
    return {n.id for n in nodes if isinstance(n, gast.Name)}


def _loads(node):
    return {n.id for n in gast.walk(node) if isinstance(n, gast.Name) and isinstance(n.ctx, gast.Load)} \
        if node is not None else set()


def _statement_loads(stmt):
    if isinstance(stmt, Assign):
        value = stmt.value
        if isinstance(value, gast.Attribute) and value.attr in METADATA_ATTRIBUTES:
            return set()      # x.shape: no change in place alters it
        return _loads(value)
    if isinstance(stmt, Unpack):
        return {stmt.source}
    if isinstance(stmt, Effect):
        return _loads(stmt.stmt)
    if isinstance(stmt, Return):
        return _loads(stmt.value)
    return set()


