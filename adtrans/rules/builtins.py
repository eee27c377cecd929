"""Derivatives of Python's operators and built-in functions.

The compiler turns ``a + b`` into a call of ``operator.add`` and looks that up
here, so these rules serve Python floats and NumPy arrays alike: every
binary rule undoes broadcasting with ``unbroadcast``.
"""

import builtins
import operator

from adtrans.registry import NONZERO, constant_function, integer_valued, rules_for
from adtrans.rules.support import (
    added, addend_cotangent, enumerated, enumerated_cotangent, factor_cotangent, multiplied, unpacked,
    unpacked_cotangents, zipped, zipped_cotangents,
    appended, appended_head, appended_last, assigned_cotangent, default_cotangent, each_cotangent, extended, extended_head,
    extended_tail, extremum_args_cotangent, field_cleared, field_cotangent, got_cotangent, item_cleared, merged,
    merged_cotangents, rebound, closure_rest, closure_parts, super_function, listed_items, listed_values,
    assigned, unassigned, flat_items, flat_cotangent,
    listed_keys, items_cotangent, values_cotangent, starred_parts, starred_cotangent,
    matmul_cotangent_a, matmul_cotangent_b, power_slope, shaped_like, sign, sorted_cotangent, unbroadcast, with_field,
    with_item, xlogy)

rule = rules_for(globals())

# Arithmetic operators.
rule(operator.add, "a, b", a="unbroadcast(d_y, a)", b="unbroadcast(d_y, b)")
rule(operator.sub, "a, b", a="unbroadcast(d_y, a)", b="unbroadcast(-d_y, b)")
rule(operator.mul, "a, b", a="unbroadcast(d_y * b, a)", b="unbroadcast(d_y * a, b)")
rule(operator.truediv, "a, b", a="unbroadcast(d_y / b, a)", b="unbroadcast(-d_y * y / b, b)")
rule(operator.pow, "a, b", when={"b": 2}, a="d_y * (2 * a)")
rule(operator.pow, "a, b", when={"b": 2.0}, a="d_y * (2 * a)")
rule(operator.pow, "a, b", when={"b": NONZERO}, a="d_y * b * a ** (b - 1)")
rule(operator.pow, "a, b", a="unbroadcast(d_y * power_slope(a, b), a)", b="unbroadcast(d_y * xlogy(y, a), b)")
rule(operator.matmul, "a, b", a="matmul_cotangent_a(d_y, a, b)", b="matmul_cotangent_b(d_y, a, b)")
# a % b is a - floor(a / b) * b, and (a - y) / b is that integer quotient.
rule(operator.mod, "a, b", a="unbroadcast(d_y, a)", b="unbroadcast(-d_y * ((a - y) / b), b)")
rule(operator.neg, "a", a="-d_y")
rule(operator.pos, "a", a="d_y")
rule(operator.abs, "a", a="d_y * sign(a)")

# Built-in functions.
rule(builtins.abs, "x", x="d_y * sign(x)")
rule(builtins.pow, "base, exp, mod=None", when={"exp": 2, "mod": None}, base="d_y * (2 * base)")
rule(builtins.pow, "base, exp, mod=None", when={"exp": 2.0, "mod": None}, base="d_y * (2 * base)")
rule(builtins.pow, "base, exp, mod=None", when={"exp": NONZERO, "mod": None},
     base="d_y * exp * base ** (exp - 1)")
rule(builtins.pow, "base, exp, mod=None", base="unbroadcast(d_y * power_slope(base, exp), base)",
     exp="unbroadcast(d_y * xlogy(y, base), exp)")
rule(builtins.divmod, "a, b", a="unbroadcast(d_y[1], a)", b="unbroadcast(-d_y[1] * y[0], b)")
rule(builtins.float, "x=0.0", x="shaped_like(d_y, x)")
# max(a, b, ...) or max(iterable): equal elements share the cotangent; with `key`, the one returned gets it.
rule(builtins.max, "*args, key=None, default=None", args="extremum_args_cotangent(d_y, args, y, key)")
rule(builtins.min, "*args, key=None, default=None", args="extremum_args_cotangent(d_y, args, y, key)")
rule(builtins.sum, "iterable, start=0", iterable="each_cotangent(d_y, iterable)", start="unbroadcast(d_y, start)")
rule(builtins.sorted, "iterable, *, key=None, reverse=False",
     iterable="sorted_cotangent(d_y, iterable, key, reverse)")
rule(builtins.list, "iterable=()", iterable="shaped_like(d_y, iterable)")
rule(builtins.tuple, "iterable=()", iterable="shaped_like(d_y, iterable)")
# for k, v in d.items(), sum(d.values()): d.items() and d.values() run as lists.
# first, *rest = xs runs as first, rest = starred_parts(xs, 1, 0).
rule(starred_parts, "values, before, after", values="starred_cotangent(d_y, values, before, after)")
rule(listed_items, "mapping", mapping="items_cotangent(d_y, mapping)")
rule(listed_values, "mapping", mapping="values_cotangent(d_y, mapping)")
# for v in A.flat: A.flat runs as flat_items(A), np.ravel(A) for an array.
rule(flat_items, "x", x="flat_cotangent(d_y, x)")
# A closure read after a variable it reads was assigned again runs as rebound(g, names, *values).
rule(rebound, "function, names, *values", function="closure_rest(d_y, names)",
     values="closure_parts(d_y, names, values)")
# A read of a variable a path may leave unassigned runs as assigned(y_1), which raises Python's error there.
rule(assigned, "value", value="d_y")
# {**params, "w": w} in differentiated code runs as merged(params, {"w": w}); dict(params) copies.
rule(merged, "*mappings", mappings="merged_cotangents(d_y, mappings)")
rule(builtins.dict, "mapping", mapping="merged_cotangents(d_y, (mapping,))[0]")
# options.get("scale", 1.0): a '**options' dict read with a default.
rule(dict.get, "mapping, key, default=None", mapping="got_cotangent(d_y, mapping, key)",
     default="default_cotangent(d_y, mapping, key, default)")

integer_valued(builtins.int, builtins.round)
constant_function(
    operator.floordiv, operator.lt, operator.le, operator.eq, operator.ne, operator.ge, operator.gt,
    operator.not_, operator.truth, operator.is_, operator.is_not, operator.contains,
    operator.and_, operator.or_, operator.xor, operator.invert, operator.lshift, operator.rshift,
    operator.index, reason="its result is piecewise constant or not a number")
constant_function(super_function, reason="its result is a function (see Desugar.super_call)")
constant_function(listed_keys, reason="a dict's keys are not differentiable")
constant_function(unassigned, reason="a variable no path assigned holds no value")
constant_function(
    builtins.len, builtins.print, builtins.isinstance, builtins.issubclass, builtins.range, builtins.type,
    builtins.id, builtins.hash, builtins.repr, builtins.str, builtins.format, builtins.bool,
    builtins.callable, builtins.hasattr, builtins.ord, builtins.chr, builtins.all, builtins.any,
    reason="its result is not a differentiable value")


# ``x[index] = value`` in differentiated code runs as ``x = with_item(x, index, value)``.
rule(with_item, "x, index, value", x="item_cleared(d_y, index)", value="assigned_cotangent(d_y, index, value)")

# ``xs.append(v)`` / ``xs.extend(vs)`` on a local list run as ``xs = appended(xs, v)`` /
# ``xs = extended(xs, vs)``.
rule(appended, "xs, value", xs="appended_head(d_y)", value="appended_last(d_y, value)")
rule(extended, "xs, values", xs="extended_head(d_y, values)", values="extended_tail(d_y, values)")

# A ``+`` or ``*`` whose operands may be lists or tuples (concatenation, repetition) is keyed to these
# (see adtrans.sequences); the forward runs the operator as written.
rule(added, "a, b", a="addend_cotangent(d_y, a, b, 0)", b="addend_cotangent(d_y, a, b, 1)")
rule(multiplied, "a, b", a="factor_cotangent(d_y, a, b)", b="factor_cotangent(d_y, b, a)")
# A display with ``*`` unpacking, ``[x, *rest]``, is keyed to ``unpacked(('', '*'), x, rest)``.
rule(unpacked, "layout, *parts", parts="unpacked_cotangents(d_y, layout, parts)")
# ``zip(...)`` and ``enumerate(...)`` used as values run as ``zipped(...)``, ``enumerated(...)``: lists.
rule(zipped, "*iterables, strict=False", iterables="zipped_cotangents(d_y, iterables)")
rule(enumerated, "iterable, start=0", iterable="enumerated_cotangent(d_y, iterable)")

# ``obj.name = value`` in differentiated code runs as ``obj = with_field(obj, "name", value)``.
rule(with_field, "obj, name, value", obj="field_cleared(d_y, name)", value="field_cotangent(d_y, name, value)")
