"""Activity analysis: which values need an adjoint.

A value is *varied* when it depends, through differentiable operations, on
an argument we differentiate with respect to, and *useful* when the result
depends on it.  Only *active* values (varied and useful) get adjoints, so
the pullback does no work for values that cannot reach a requested gradient.

The analysis is flow-insensitive over the desugared statements (each name
is assigned once, but for loop headers), iterated to a fixed point.
"""

from dataclasses import dataclass
from typing import Set

import gast

from adtrans.desugar import Assign, Effect, Return, Unpack

# Kinds whose result never carries a derivative, whatever flows in.
_BLOCKING = {"constant"}


@dataclass
class Activity:
    varied: Set[str]
    useful: Set[str]

    def active(self, name):
        return name in self.varied and name in self.useful


def targets(stmt):
    """The names a desugared statement binds."""
    if isinstance(stmt, Assign):
        return [stmt.target]
    if isinstance(stmt, Unpack):
        return [t for t in stmt.targets if t is not None]
    if isinstance(stmt, Effect) and isinstance(stmt.stmt, gast.FunctionDef):
        return [stmt.stmt.name]      # a nested def: a value made of what it reads
    return []


def analyse(pairs, wrt, result, passthrough=()):
    """Varied and useful sets over (statement, operation) pairs, iterated to a fixed point.

    Loops make a value flow from the end of one pass to the start of the
    next through their header copies, so one sweep is not enough; the sets
    only grow, so the iteration ends.  `passthrough` names callees treated
    as differentiable anyway (to tell an explicit `without_derivative`).
    """
    pairs = [(s, op) for s, op in pairs if not isinstance(s, Return)]
    varied = set(wrt)
    changed = True
    while changed:
        changed = False
        for stmt, op in pairs:
            if _blocks(op, passthrough):
                continue
            if any(name in varied for name in op.diff_inputs):
                for t in _carrying(stmt):
                    if t not in varied:
                        varied.add(t)
                        changed = True
    useful = {result} if result is not None else set()
    changed = True
    while changed:
        changed = False
        for stmt, op in reversed(pairs):
            if _blocks(op, passthrough):
                continue
            if any(t in useful for t in _carrying(stmt)):
                for name in op.diff_inputs:
                    if name not in useful:
                        useful.add(name)
                        changed = True
    return Activity(varied, useful)


def _carrying(stmt):
    """The names `stmt` binds that may carry a derivative: not the jump flags an outlined block
    returns beside its values."""
    names = targets(stmt)
    if isinstance(stmt, Unpack) and stmt.flags:
        return [t for t in names if t not in stmt.flags]
    return names


def _blocks(op, passthrough):
    if op.kind not in _BLOCKING:
        return False
    return not (passthrough and op.callee is not None and _in(op.callee, passthrough))


def _in(callee, group):
    return any(callee is member for member in group)
