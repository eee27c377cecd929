"""Which ``+`` and ``*`` may concatenate or repeat lists and tuples.

``a + b`` adds numbers and arrays but concatenates lists and tuples, and
``xs * n`` repeats a list. The pullbacks differ (unbroadcast the cotangent,
or cut it back into runs), and which one a ``+`` is can depend on the
arguments (``def f(xs, ys): return xs + ys``), so it cannot always be
decided here. This pass proves, where it can, that an operand is *not* a
list or tuple, and leaves those operations to the operator's rule
(``unbroadcast(d_y, a)``, which the transform inlines, and drops for
floats). Every other active ``+`` or ``*`` is keyed to `support.added` or
`support.multiplied`: the forward still runs the operator as written, and
the pullback chooses by the operands' types when it runs
(`support.addend_cotangent`, `support.factor_cotangent`).

Guarantees to the transform: no active statement left with ``operator.add``
or ``operator.mul`` concatenates or repeats a sequence, but one whose
pullback sees a list's cotangent and raises a located error (below); and
`Sequences.numbers` holds only locals proved to hold numbers or arrays, whose
cotangents may be added with ``+`` (a list's cotangents are lists, which
``+`` would concatenate).

What proves a value is no list: how it was made (arithmetic other than
``+`` and ``*``, ``math`` and NumPy functions, an item of an array, a ``+``
with such an operand, a ``*`` that cannot repeat), or how it is used (an
operand of unary minus, of ``x + 1.0``, of ``math.sin``, or of a ``*``
whose other operand is no integer, since only an integer repeats a list).
A value carrying a derivative counts as no integer (an int named in ``wrt``
is promoted): an int that came in a container with floats (``i`` of
``for i, w in pairs``) is the exception, and were it to repeat a list, the
operator's pullback, which runs because the statement is active, would meet
the list's cotangent in ``unbroadcast`` and raise. Loop-carried values are
proved by induction over the passes, as `ReverseTransform.float_names` does.
"""

import builtins
import math

import gast
import numpy as np

from adtrans import registry
from adtrans.activity import targets
from adtrans.desugar import Assign, Effect, If, Loop, Unpack, loops
from adtrans.naming import is_number
from adtrans.resolve import Operation
from adtrans.rules import support

_KEYED = {gast.Add: support.added, gast.Mult: support.multiplied}
# NumPy and math functions whose result may be a list or tuple.
_SEQUENCE_RESULTS = {np.split, np.array_split, np.ndarray.tolist, np.linalg.slogdet, math.frexp, math.modf,
                     getattr(np, "unstack", np.split)}
# math functions of sequences (the others take numbers: a list there is Python's TypeError).
_MATH_OF_SEQUENCES = {math.fsum, math.prod, math.dist, math.hypot, getattr(math, "sumprod", math.fsum)}


class Sequences:
    """The analysis over a function's desugared statements and their operations.

    `counters` are the names loop headers bind that no statement assigns
    (``range`` and ``enumerate`` counters, integers); `floats` the locals
    known to hold Python floats.
    """

    def __init__(self, statements, ops, params, counters, activity, floats, blocks=()):
        self.statements = [s for s in statements if isinstance(s, (Assign, Unpack, Effect))]
        self.guards = dict(_guards(blocks))
        self.carrying = {}      # a loop header's name: the body of the loop it is the header of
        for loop in loops(blocks):
            for name in loop.headers:
                self.carrying.setdefault(name, set()).add((id(loop), "body"))
        self.ops = ops
        self.params = set(params)
        self.counters = set(counters)
        self.varied = activity.varied
        self.active = activity.active
        self.floats = set(floats)
        self.assigned = {}
        for stmt in self.statements:
            for target in targets(stmt):
                self.assigned.setdefault(target, []).append(stmt)
        self.locals = set(self.assigned) | self.params | self.counters
        no_ints = set(self.assigned) | {p for p in self.params if p in self.varied} | self.floats
        self.not_ints = _largest(no_ints, self.assigned, (), self._makes_no_int)
        self.numbers = self._numbers() | self.floats
        self.keyed = self._keyed()

    def _keyed(self):
        """{id(statement): operation} for each active ``+`` or ``*`` that may concatenate or repeat."""
        out = {}
        for stmt in self.statements:
            value = getattr(stmt, "value", None)
            op = self.ops[id(stmt)]
            if (isinstance(value, gast.BinOp) and type(value.op) in _KEYED and op.kind == "rule"
                    and stmt.target not in self.numbers and self.active(stmt.target)):
                callee = _KEYED[type(value.op)]
                out[id(stmt)] = Operation("rule", op.inputs, op.diff_inputs, callee=callee,
                                          rule=registry.lookup_rule(callee),
                                          binding={"a": value.left, "b": value.right},
                                          description=op.description)
        return out

    # -- no integer: a list times it is no repetition

    def _makes_no_int(self, stmt, found):
        if isinstance(stmt, Effect) or any(t in self.varied for t in targets(stmt)):
            return True                         # a function; a value carrying a derivative
        if isinstance(stmt, Unpack):
            return False
        value = stmt.value
        if isinstance(value, gast.BinOp):
            # An int results only from ints: one operand that is none makes none.
            return _no_int(value.left, found) or _no_int(value.right, found)
        if isinstance(value, gast.UnaryOp):
            return isinstance(value.op, (gast.USub, gast.UAdd)) and _no_int(value.operand, found)
        if isinstance(value, (gast.Tuple, gast.List, gast.Dict, gast.Lambda)):
            return True
        return _no_int(value, found) or self.ops[id(stmt)].callee is builtins.float

    # -- no list or tuple

    def _numbers(self):
        """Proved by how values are made (the largest such set), then by how they are used (seeds,
        which may prove more made from them), until no use proves more."""
        seeds = set()
        while True:
            numbers = _largest(set(self.assigned) | self.floats | self.counters | seeds, self.assigned, seeds,
                               self._makes_number)
            more = self._used_as_numbers(numbers) - seeds
            if not more:
                return numbers
            seeds |= more

    def _makes_number(self, stmt, found):
        if isinstance(stmt, Effect):
            return True
        if isinstance(stmt, Unpack):
            return False
        value = stmt.value
        op = self.ops[id(stmt)]
        if isinstance(value, gast.BinOp):
            left, right = value.left, value.right
            if isinstance(value.op, gast.Add):
                return _number(left, found) or _number(right, found)
            if isinstance(value.op, gast.Mult):
                return not (self._may_repeat(left, right, found) or self._may_repeat(right, left, found))
            return True                         # -, /, **, @: no list results
        if isinstance(value, (gast.UnaryOp, gast.Compare)):
            return True
        if isinstance(value, gast.Subscript):
            return _number(value.value, found)  # an item of an array
        if op.kind == "rule" and isinstance(value, gast.Attribute):
            return True                         # .T, .mT
        if op.kind == "rule" and isinstance(value, gast.Call):
            if op.callee is builtins.sum:
                return _number(op.binding["start"], found)
            return (_of_numbers(op.callee) and op.callee not in _SEQUENCE_RESULTS) or op.callee in (
                builtins.float, builtins.abs, builtins.pow)
        return _number(value, found)

    def _alike(self, a, b):
        """Are `a` and `b` the same local, or made by the same ``+`` of the same locals (``(x + x) *
        (x + x)``)? Then were one a list, so would the other be, and a list times a list is
        Python's TypeError."""
        if _same_name(a, b):
            return True
        if not (isinstance(a, gast.Name) and isinstance(b, gast.Name)):
            return False
        made = [self.assigned.get(n.id, ()) for n in (a, b)]
        if not all(len(m) == 1 and isinstance(m[0], Assign) and isinstance(m[0].value, gast.BinOp)
                   and isinstance(m[0].value.op, gast.Add) for m in made):
            return False
        (x,), (y,) = made
        return all(_same_name(p, q) for p, q in ((x.value.left, y.value.left), (x.value.right, y.value.right)))

    def _python_number(self, node):
        """Is `node` a Python number (a constant, a local known to be a float), not an array?"""
        return _numeric_constant(node) or isinstance(node, gast.Name) and node.id in self.floats

    def _may_repeat(self, sequence, count, found):
        return not _number(sequence, found) and not _no_int(count, self.not_ints)

    def _used_as_numbers(self, found):
        """Locals an operation needs to be numbers (a list there would be Python's TypeError),
        where it runs whenever they have their value: a use in a branch, or in a loop that may
        run no pass, proves nothing of a value made outside it (``-v`` where ``v`` is a number,
        beside ``v[0]`` on the other branch)."""
        proved = set()
        for stmt in self.statements:
            if isinstance(stmt, Assign):
                proved.update(n for n in self._used_in(stmt, found) if self._runs_with(stmt, n))
        return proved

    def _runs_with(self, stmt, name):
        """Does `stmt` run whenever `name` has been given a value (inside every block that
        assigns it)?"""
        # A loop's body runs for each pass of it that ran; the pullback's own passes are the same
        # ones, so a use in every pass proves the value its header carries into that pass.
        inside = set(self.guards.get(id(stmt), ())) - self.carrying.get(name, set())
        made = self.assigned.get(name, ())
        if not made:
            return not inside       # a parameter, a loop counter: from the start
        return all(inside <= set(self.guards.get(id(d), ())) for d in made)

    def _used_in(self, stmt, found):
        """The locals `stmt` needs to be numbers."""
        used = []
        value = stmt.value
        op = self.ops[id(stmt)]
        if isinstance(value, gast.UnaryOp) and isinstance(value.op, (gast.USub, gast.UAdd)):
            used.append(value.operand)
        elif isinstance(value, gast.BinOp) and isinstance(value.op, gast.Mult):
            # Only an integer repeats a list. Taken from active statements only (see the module
            # docstring): their pullback raises if a list was repeated after all.
            # And only a Python number proves the operand no list (``array * xs`` takes a list),
            # or the operand itself (``xs * xs`` is Python's TypeError).
            if self.active(stmt.target):
                used += [operand for operand, other in _both_ways(value)
                         if _no_int(other, self.not_ints) and self._python_number(other)
                         or self._alike(operand, other)]
        elif isinstance(value, gast.BinOp) and not isinstance(value.op, gast.MatMult):
            # x + 1.0, x ** 2: no list takes a number (an array takes a list, so only numbers count).
            used += [operand for operand, other in _both_ways(value)
                     if _numeric_constant(other) or isinstance(other, gast.Name) and other.id in self.floats]
            if (isinstance(value.op, gast.Add) and _same_name(value.left, value.right)
                    and stmt.target in found):
                used.append(value.left)     # x + x is a number: so is x
        elif op.kind == "rule" and (op.callee is builtins.float or (
                getattr(op.callee, "__module__", None) == "math" and op.callee not in _MATH_OF_SEQUENCES)):
            used += list(op.binding.values())
        return {n.id for n in used if isinstance(n, gast.Name) and n.id in self.locals}


def _guards(blocks, around=()):
    """(id(statement), the branches and loop bodies it runs in) for every simple statement of
    `blocks`. A while loop's condition runs at least once: it counts as outside the loop."""
    for stmt in blocks:
        if isinstance(stmt, If):
            yield from _guards(stmt.body, around + ((id(stmt), "body"),))
            yield from _guards(stmt.orelse, around + ((id(stmt), "orelse"),))
        elif isinstance(stmt, Loop):
            yield from _guards(stmt.condition, around)
            yield from _guards(stmt.body, around + ((id(stmt), "body"),))
        else:
            yield id(stmt), around


def _largest(candidates, assigned, fixed, makes):
    """The largest subset of `candidates` in which every statement assigning a name (`assigned`)
    makes a member (``makes(statement, subset)``); names in `fixed`, and names no statement
    assigns, stay. Loop-carried names are proved by induction: each pass starts from a value
    assigned before the loop."""
    found = set(candidates)
    changed = True
    while changed:
        changed = False
        for name in list(found):
            if name in fixed or name not in assigned:
                continue
            if not all(makes(s, found) for s in assigned[name]):
                found.discard(name)
                changed = True
    return found


def _no_int(node, found):
    """Is `node` known to be no integer (all that repeats a list)?"""
    if _numeric_constant(node) or isinstance(node, gast.Constant):
        return not isinstance(_constant(node), int)
    return isinstance(node, gast.Name) and node.id in found


def _number(node, found):
    """Is `node` known to be no list or tuple?"""
    if isinstance(node, gast.Constant) or _numeric_constant(node):
        return not isinstance(_constant(node), (tuple, list))
    return isinstance(node, gast.Name) and node.id in found


def _numeric_constant(node):
    """A number written out, signed or not (``2``, ``-0.5``)."""
    if isinstance(node, gast.UnaryOp) and isinstance(node.op, (gast.USub, gast.UAdd)):
        node = node.operand
    return is_number(node)


def _constant(node):
    return node.operand.value if isinstance(node, gast.UnaryOp) else node.value


def _both_ways(binop):
    return ((binop.left, binop.right), (binop.right, binop.left))


def _same_name(a, b):
    return isinstance(a, gast.Name) and isinstance(b, gast.Name) and a.id == b.id


def _of_numbers(callee):
    """Is `callee` a NumPy or math function or an array method, making an array or a number?"""
    module = getattr(callee, "__module__", None) or ""
    return (isinstance(callee, np.ufunc) or module == "math" or module.startswith("numpy")
            or getattr(callee, "__objclass__", None) is np.ndarray)
