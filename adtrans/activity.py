"""Activity analysis: which values need an adjoint.

A value is *varied* when it depends, through differentiable operations, on
an argument we differentiate with respect to, and *useful* when the result
depends on it.  Only *active* values (varied and useful) get adjoints, so
the pullback does no work for values that cannot reach a requested gradient.

The analysis runs over the desugared statement list; loops (a later issue)
will iterate it to a fixed point.
"""

from dataclasses import dataclass
from typing import Set

from adtrans.desugar import Assign, Return, Unpack

# Kinds whose result never carries a derivative, whatever flows in.
_BLOCKING = {"constant"}


@dataclass
class Activity:
    varied: Set[str]
    useful: Set[str]

    def active(self, name):
        return name in self.varied and name in self.useful


def _targets(stmt):
    if isinstance(stmt, Assign):
        return [stmt.target]
    if isinstance(stmt, Unpack):
        return [t for t in stmt.targets if t is not None]
    return []


def analyse(statements, operations, wrt, result, passthrough=()):
    """Varied and useful sets; `passthrough` names callees treated as differentiable anyway.

    `operations` maps each statement (by position) to its `resolve.Operation`.
    """
    varied = set(wrt)
    for stmt, op in zip(statements, operations):
        if _blocks(op, passthrough):
            continue
        if any(name in varied for name in op.diff_inputs):
            varied.update(_targets(stmt))
    useful = {result} if result is not None else set()
    for stmt, op in reversed(list(zip(statements, operations))):
        if isinstance(stmt, Return):
            continue
        if _blocks(op, passthrough):
            continue
        if any(t in useful for t in _targets(stmt)):
            useful.update(op.diff_inputs)
    return Activity(varied, useful)


def _blocks(op, passthrough):
    if op.kind not in _BLOCKING:
        return False
    return not (passthrough and op.callee is not None and _in(op.callee, passthrough))


def _in(callee, group):
    return any(callee is member for member in group)
