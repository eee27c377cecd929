"""Desugaring: a function body into a list of single-operation statements.

Guarantees to the next phases:

- every `Assign` computes one operation (a call, an operator, an attribute,
  a subscript, a literal, a copy, or an *opaque* expression adtrans does not
  look inside) whose operands are *atoms*: names of locals, constants, or
  *static* expressions (globals, module attributes such as ``np.pi``);
- each local is assigned once (SSA): a reassigned user variable gets a new
  version (``x``, ``x_1``, ...) and later reads use the new version, so the
  pullback can read any forward value it needs;
- evaluation order is Python's: operations are hoisted depth-first, left to
  right;
- statements adtrans cannot differentiate are rejected here, once, with
  their location (``DifferentiationError``).
"""

import contextlib
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import List, Optional

import gast
import numpy as np

from adtrans import randomness
from adtrans.jumps import StructureJumps
from adtrans.naming import Namer, name_for, names_in
from adtrans.rules.support import (
    added_at, appended, assigned, diagonal_index, enumerated, extended, flat_items, listed_items, listed_keys,
    listed_values, merged, rebound, starred_parts, stored_in, subtracted_at, super_function, unassigned, with_field,
    with_item, zipped)
from adtrans.source import own_signature
from adtrans.trees import clone


@dataclass
class Assign:
    """``target = value``: one operation on atoms."""

    target: str
    value: gast.expr
    node: gast.AST          # the user's expression, for error locations
    origin: gast.stmt       # the user's statement, for comments
    bound: bool = False     # bound by a loop header, not computed by a statement
    copy: bool = False      # a copy the desugaring introduced (branch merges, loop headers and exits)
    loop_end: bool = False  # the copy into a loop-carried variable's header, at the end of a pass
    changes: Optional[str] = None   # the version Python changes in place here (z += b, z[i] = v): see `sharing`


@dataclass
class Unpack:
    """``a, b = source``: a tuple or list taken apart."""

    targets: List[Optional[str]]
    source: str
    node: gast.AST
    origin: gast.stmt
    flags: frozenset = frozenset()    # targets that are jump flags (booleans): never differentiated


@dataclass
class Effect:
    """A statement run for its effect (``print``, ``assert``): no value, no derivative."""

    stmt: gast.stmt
    origin: gast.stmt


@dataclass
class Return:
    value: gast.expr        # an atom
    origin: gast.stmt


@dataclass
class If:
    """``if test: body else: orelse``; variables assigned in a branch meet in copies at its end."""

    test: gast.expr         # an atom
    body: list
    orelse: list
    origin: gast.stmt
    joined: list = field(default_factory=list)   # names both branches assign: the statement's results


@dataclass
class Loop:
    """A ``for`` or ``while`` loop over single-operation statements.

    Loop-carried variables get a *header* version, copied from their value
    before the loop and again at the end of each iteration; after the loop
    an *exit* copy holds the final value, so code after the loop never reads
    a name the loop reassigns.  Elements of the sequences a ``for`` loop
    walks are ``Assign`` statements ``x = xs[index]`` marked `bound`: the
    loop header binds them, and their pullback is a subscript's.
    """

    kind: str               # "range", "sequence" or "while"
    body: list
    origin: gast.stmt
    header: gast.expr = None        # range: the range(...) call; sequence: the iterable as written
    target: Optional[gast.expr] = None  # what the loop header binds (a Name or a Tuple of names)
    index: Optional[str] = None     # sequence loops: the iteration index the elements' pullbacks use
    condition: list = field(default_factory=list)   # while: statements computing `test`
    test: Optional[gast.expr] = None
    break_test: Optional[gast.expr] = None          # the body ends with "if break_test: break"
    exits: dict = field(default_factory=dict)       # loop-assigned name -> its exit copy
    headers: list = field(default_factory=list)     # header versions of loop-carried variables


@dataclass
class Body:
    params: List[str]
    statements: list = field(default_factory=list)
    result: Optional[str] = None
    user_names: dict = field(default_factory=dict)   # SSA name -> the user's variable it is a version of


_OPAQUE = (gast.BoolOp, gast.IfExp, gast.ListComp, gast.SetComp, gast.DictComp, gast.GeneratorExp,
           gast.JoinedStr, gast.FormattedValue, gast.Set, gast.Lambda)

_CONSTRUCT_NAMES = {
    gast.If: "'if' statement", gast.For: "'for' loop", gast.While: "'while' loop",
    gast.With: "'with' statement", gast.Try: "'try' statement", gast.Raise: "'raise' statement",
    gast.FunctionDef: "nested function definition", gast.ClassDef: "class definition",
    gast.Global: "'global' statement", gast.Nonlocal: "'nonlocal' statement",
    gast.Delete: "'del' statement", gast.Import: "'import' statement",
    gast.ImportFrom: "'import' statement", gast.AsyncFunctionDef: "async function",
    gast.AsyncFor: "'async for' loop", gast.AsyncWith: "'async with' statement",
    gast.Break: "'break' statement", gast.Continue: "'continue' statement",
    gast.Yield: "'yield' expression", gast.YieldFrom: "'yield from' expression",
    gast.Await: "'await' expression", gast.NamedExpr: "assignment expression (':=')",
    gast.Starred: "starred expression ('*args')",
}
if hasattr(gast, "Match"):
    _CONSTRUCT_NAMES[gast.Match] = "'match' statement"
if hasattr(gast, "TryStar"):
    _CONSTRUCT_NAMES[gast.TryStar] = "'try' statement"


def construct_name(node):
    return _CONSTRUCT_NAMES.get(type(node), f"'{type(node).__name__}' construct")


class Desugar:
    """Turns a `FunctionSource` into a `Body` (see the module docstring)."""

    def __init__(self, source, namer: Namer, lifted=()):
        self.source = source
        self.namer = namer
        self.lifted = list(lifted)   # free variables taken as keyword-only parameters (a closure's)
        self.locals = _assigned_names(source.node) | set(lifted)
        self.current = {}       # user variable -> its current SSA name
        # A closure's SSA name -> {user variable: (the name its code reads, the version whose value
        # that holds)}.
        self.closure_reads = {}
        self.escaped = set()     # closures read other than to be called or passed: stored
        # A version some path may leave unassigned -> (its variable, the blocks that leave it
        # unassigned with their statements, the versions it copies that may be unassigned): see
        # `checked_read`.
        self.maybe_unassigned = {}
        self.marked_unassigned = set()   # versions whose blocks set them `unassigned(...)`
        self.calling = False     # renaming the function of a call
        self.out: list = []
        self.origin = None
        self.user_names = {}    # SSA name -> user variable

    def run(self) -> Body:
        args = self.source.node.args
        for node in gast.walk(self.source.node):
            if isinstance(node, gast.NamedExpr):
                # Anywhere (an `if` test too): its target would be a name the desugaring never sees.
                raise self.source.error(node, f"{construct_name(node)} is not supported",
                                        "assign the value on a line of its own")
            if isinstance(node, (gast.FunctionDef, gast.Lambda)) and node is not self.source.node:
                self.check_nested(node)
            self.check_region(node)
        jumps = StructureJumps(self.source, self.namer)
        function = jumps.run(clone(self.source.node))
        self.flags = jumps.flags
        self.function = function
        self.locals = _assigned_names(function) | set(self.lifted)
        # A '*args' parameter is a tuple, a '**kwargs' one a dict: differentiated like any other
        # container argument.
        varargs = [args.vararg] if args.vararg is not None else []
        kwargs = [args.kwarg] if args.kwarg is not None else []
        params = [a.id for a in args.posonlyargs + args.args + varargs + args.kwonlyargs + kwargs]
        params += self.lifted
        self.params = set(params)
        for p in params:
            self.current[p] = p
        body = Body(params)
        statements = function.body
        final = statements[-1] if statements and isinstance(statements[-1], gast.Return) else None
        for stmt in statements[:-1] if final is not None else statements:
            self.statement(stmt)
        self.origin = final or (statements[-1] if statements else function)
        if final is not None:
            value = final.value if final.value is not None else gast.Constant(None, None)
            result = self.atom(value, "result")
        else:
            result = gast.Constant(None, None)
        if isinstance(self.source.node, gast.AsyncFunctionDef):
            # Calling it makes a coroutine, not a value; an 'await' in it was refused at its line.
            raise self.source.error(self.source.node, f"{construct_name(self.source.node)} is not supported",
                                    "differentiate a plain 'def' that the coroutine awaits or calls")
        self.out.append(Return(result, self.origin))
        body.result = result.id if isinstance(result, gast.Name) else None
        body.statements = self.out
        body.user_names = self.user_names
        return body

    def nested(self, statements):
        """Desugar a block into a new statement list (the current versions carry on)."""
        saved, self.out = self.out, []
        try:
            for stmt in statements:
                self.statement(stmt)
            return self.out
        finally:
            self.out = saved

    def copy_to(self, block, target, source, origin):
        block.append(Assign(target, gast.Name(source, gast.Load(), None, None), origin, origin, copy=True))

    # -- statements

    def statement(self, stmt):
        previous, self.origin = self.origin, stmt
        try:
            self._statement(stmt)
        finally:
            self.origin = previous

    def _statement(self, stmt):
        self.check_segmented_placed(stmt)
        if isinstance(stmt, gast.If):
            self.if_statement(stmt)
        elif isinstance(stmt, gast.For) and self.is_api_call(stmt.iter, "segmented"):
            self.segmented_loop(stmt)
        elif isinstance(stmt, gast.For):
            self.for_loop(stmt)
        elif isinstance(stmt, gast.With) and (
                getattr(stmt, "adtrans_recomputed", False)
                or (len(stmt.items) == 1 and stmt.items[0].optional_vars is None
                    and self.is_api_call(stmt.items[0].context_expr, "recomputed"))):
            self.recomputed_block(stmt)
        elif isinstance(stmt, gast.While):
            self.while_loop(stmt)
        elif isinstance(stmt, gast.Assign):
            value = stmt.value
            first, *others = stmt.targets
            if others and not isinstance(first, gast.Name):
                # 'u[0] = u[-1] = 0.0': the value once, then each target from left to right.
                self.check_expression(value)
                value = self.atom(value)
                for target in stmt.targets:
                    self.bind(target, value, stmt.value, stmt)
                return
            if not others and self.runs_as_written(first, value) and not isinstance(first, gast.Name):
                self.out.append(Effect(self.renamed(stmt), stmt))
                return
            written = self.written_into(value)
            if written is not None:
                # 'y = np.add(z, b, out=z)': z is the result, and y the same array.
                others, (first, value) = [first] + others, written
                if not isinstance(first, gast.Name):
                    raise self.source.error(value, "a result written into a part of an array (out=y[i]) and "
                                            "also assigned is not supported", "assign it on a line of its own")
            name = self.assign_changed(first, value, stmt) if written is not None else self.assign(first, value, stmt)
            for target in others:
                self.assign(target, gast.Name(name, gast.Load(), None, None), stmt)
        elif isinstance(stmt, gast.AnnAssign):
            if stmt.value is not None:
                self.assign(stmt.target, stmt.value, stmt)
        elif isinstance(stmt, gast.AugAssign):
            if isinstance(stmt.target, gast.Subscript):
                self.augmented_item(stmt)
                return
            if isinstance(stmt.target, gast.Attribute):
                load = gast.Attribute(stmt.target.value, stmt.target.attr, gast.Load())
                value = gast.copy_location(gast.BinOp(gast.copy_location(load, stmt.target), stmt.op,
                                                      stmt.value), stmt)
                self.assign(stmt.target, value, stmt)
                return
            if not isinstance(stmt.target, gast.Name):
                raise self.unsupported_target(stmt.target)
            load = gast.Name(stmt.target.id, gast.Load(), None, None)
            value = gast.BinOp(load, stmt.op, stmt.value)
            gast.copy_location(value, stmt)
            self.assign_changed(stmt.target, value, stmt)
        elif isinstance(stmt, gast.Expr):
            if isinstance(stmt.value, gast.Constant):
                return  # a docstring or a bare constant
            if self.grows_local_list(stmt.value):
                self.grow_list(stmt.value, stmt)
                return
            written = self.written_into(stmt.value) or self.first_argument_changed(stmt.value)
            if written is not None:
                self.assign_changed(*written, stmt)
                return
            self.check_expression(stmt.value)
            self.out.append(Effect(self.renamed(stmt), stmt))
        elif isinstance(stmt, gast.Assert):
            self.check_expression(stmt.test)
            self.out.append(Effect(self.renamed(stmt), stmt))
        elif isinstance(stmt, gast.Pass):
            pass
        elif isinstance(stmt, gast.FunctionDef):
            self.nested_function(stmt)
        else:
            raise self.source.error(
                stmt, f"{construct_name(stmt)} is not supported",
                "move the construct into a function with a registered derivative "
                "(@adtrans.derivative(of=...))")

    def written_into(self, call):
        """``np.add(z, b, out=z)`` with `z` a local: (``z``, ``stored_in(np.add(z, b), z)``), by value
        as ``z += b`` is, in z's dtype; ``out=(z,)`` is ``out=z``, and ``out=z[i]`` gives
        (``z[i]``, ``np.add(z, b)``). None for any other expression."""
        if not isinstance(call, gast.Call):
            return None
        out = [k for k in call.keywords if k.arg == "out"]
        if len(out) != 1 or (isinstance(out[0].value, gast.Constant) and out[0].value.value is None):
            return None
        written = out[0].value
        if isinstance(written, gast.Tuple) and len(written.elts) == 1:
            written = written.elts[0]
        root = written.value if isinstance(written, gast.Subscript) else written
        if not (isinstance(root, gast.Name) and root.id in self.locals) or any(k.arg == "where" for k in call.keywords):
            raise self.source.error(
                out[0].value, "a result written into an array with 'out=' is only followed into a local "
                "array or a subscript of one, without 'where='",
                "assign the result instead (y = np.add(a, b), y[i] = np.add(a, b), y = np.where(m, np.add(a, b), y))")
        plain = gast.copy_location(gast.Call(call.func, list(call.args), [k for k in call.keywords if k.arg != "out"]),
                                   call)
        if isinstance(written, gast.Subscript):
            return clone(written), plain
        stored = gast.Call(_synthetic_callee("stored_in", stored_in), [plain, gast.Name(root.id, gast.Load(), None, None)], [])
        return gast.Name(root.id, gast.Store(), None, None), gast.copy_location(stored, call)

    def first_argument_changed(self, call):
        """``np.add.at(a, i, b)``, ``np.subtract.at(a, i, b)``, ``np.copyto(a, b)`` and
        ``np.fill_diagonal(a, v)`` with `a` a local: (the target, the value) they assign by value, as
        ``a[i] += b`` is (``a = added_at(a, i, b)``, ``a[...] = b``, ``a[diagonal_index(a)] = v``);
        None for any other expression. Other functions changing their first argument are refused where
        a derivative would flow through them (`ReverseTransform.check_mutations`)."""
        if not (isinstance(call, gast.Call) and call.args and isinstance(call.args[0], gast.Name)
                and call.args[0].id in self.locals and not call.keywords
                and not any(isinstance(a, gast.Starred) for a in call.args)
                and _is_static(call.func, self.locals)):
            return None
        function = _static_value(call.func, self.source.fn)
        array, *rest = call.args
        target = gast.Name(array.id, gast.Store(), None, None)
        for ufunc, callee in ((np.add, added_at), (np.subtract, subtracted_at)):
            if getattr(function, "__self__", None) is ufunc and function.__name__ == "at" and len(rest) == 2:
                value = gast.Call(_synthetic_callee(callee.__name__, callee), list(call.args), [])
                return target, gast.copy_location(value, call)
        if function is np.copyto and len(rest) == 1:
            return gast.copy_location(gast.Subscript(array, gast.Constant(Ellipsis, None), gast.Store()), call), rest[0]
        if function is np.fill_diagonal and len(rest) == 1:
            index = gast.Call(_synthetic_callee("diagonal_index", diagonal_index), [array], [])
            return gast.copy_location(gast.Subscript(array, index, gast.Store()), call), rest[0]
        return None

    def assign_changed(self, target, value, stmt):
        """`assign`, for a statement Python runs as a change in place of `target` (``z += b``,
        ``np.add(z, b, out=z)``): the statement assigning z's new version says which it changes.
        (An item assignment, ``z[i] = v``, says so itself: see `set_item`.)"""
        before = self.current.get(target.id) if isinstance(target, gast.Name) else None
        name = self.assign(target, value, stmt)
        if before is not None:
            changing = next(s for s in reversed(self.out) if isinstance(s, Assign) and s.target == name)
            changing.changes = before
        return name

    def nested_function(self, stmt):
        """A nested ``def``: defined as written, reading the versions of outer variables current here.

        Calls of it are dispatched at run time, which differentiates its
        source; it is a value made of the outer variables it reads, which a
        derivative reaches through it (see `Resolver.closure`).
        """
        if stmt.decorator_list:
            raise self.source.error(stmt.decorator_list[0], "a decorated nested function is not supported",
                                    "define it at module level")
        inner = clone(stmt)
        renamer = _Renamer(self.current, self.locals, self.check_closure_read)
        renamer.shadowed = _assigned_names(inner)
        inner.body = [renamer.visit(s) for s in inner.body]
        inner.name = self.new_version(stmt.name)
        self.record_closure(inner.name, stmt)
        self.out.append(Effect(inner, stmt))

    def record_closure(self, name, function, exclude=None):
        """`name` holds the closure `function` makes: the versions of the variables it reads now,
        which a later read compares with the current ones (`check_closure_read`)."""
        self.closure_reads[name] = {u: (self.current[u], self.current[u]) for u in free_names(function)
                                    if u in self.current and u != exclude}

    def check_nested(self, function):
        """What a nested ``def`` or ``lambda`` may not do, located in the user's file: its own
        transform reads the copy in the generated code."""
        for node in gast.walk(function):
            if isinstance(node, _NEVER_IN_NESTED):
                raise self.source.error(node, f"{construct_name(node)} is not supported",
                                        "move it out of the nested function")
            if isinstance(node, (gast.Nonlocal, gast.Global)):
                raise self.source.error(node, f"{construct_name(node)} in a nested function is not supported",
                                        "return the new value from the nested function instead")
            if isinstance(node, (gast.Yield, gast.YieldFrom, gast.Await)):
                raise self.source.error(node, f"{construct_name(node)} is not supported",
                                        "build a list (a comprehension) instead of a generator")
        args = function.args
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            if not isinstance(default, gast.Name) and any(
                    isinstance(n, gast.Name) and n.id in self.locals for n in gast.walk(default)):
                raise self.source.error(
                    default, "a default value of a nested function computed from locals is not supported",
                    "compute it on a line of its own and give the default that name (s=s)")

    # -- control flow

    def if_statement(self, stmt):
        test = self.atom(stmt.test, "condition")
        before, reads_before = dict(self.current), dict(self.closure_reads)
        body = self.nested(stmt.body)
        self.rebind_stale_closures(body, stmt)
        after_body, self.current = self.current, dict(before)
        body_reads, self.closure_reads = self.closure_reads, dict(reads_before)
        orelse = self.nested(stmt.orelse)
        self.rebind_stale_closures(orelse, stmt)
        after_else = self.current
        merged = dict(before)
        names = list(after_body) + [n for n in after_else if n not in after_body]
        for name in names:
            a, b = after_body.get(name), after_else.get(name)
            if a == b:
                merged[name] = a
                continue
            joined = self.fresh_version(name)
            if a is not None:
                self.copy_to(body, joined, a, stmt)
            if b is not None:
                self.copy_to(orelse, joined, b, stmt)
            merged[name] = joined
            missing = [(block, stmt) for block, version in ((body, a), (orelse, b)) if version is None]
            copied = [version for version in (a, b) if version in self.maybe_unassigned]
            if missing or copied:
                self.maybe_unassigned[joined] = (name, missing, copied)
        self.current = merged
        self.closure_reads = _joined_closure_reads([(body_reads, after_body), (self.closure_reads, after_else)],
                                                   merged)
        joined = [merged[n] for n in names if merged[n] != before.get(n) and merged[n] not in (
            after_body.get(n), after_else.get(n))]
        self.out.append(If(test, body, orelse, stmt, joined))

    def rebind_stale_closures(self, block, stmt):
        """At the end of a branch (`block`), a closure a variable holds is given the last versions of
        the variables it reads, where they are bound: after the join, another branch may leave
        them unassigned (see `_joined_closure_reads`)."""
        read_after = reads_outside(self.function, {id(n) for n in gast.walk(stmt)})
        saved, self.out = self.out, block
        try:
            with self.reading_to_call():
                for user, version in list(self.current.items()):
                    reads = self.closure_reads.get(version)
                    if reads is None or user not in read_after or any(
                            self.current.get(u) in self.maybe_unassigned for u in [user, *reads]):
                        continue    # not read after the `if`, or a path may not have the values
                    node = _located(gast.Name(user, gast.Load(), None, None), stmt)
                    self.current[user] = self.check_closure_read(node, version)
        finally:
            self.out = saved

    def start_unbound(self, stmt, assigned):
        """``name = unassigned('name')`` before a loop for each variable the loop carries that has no
        value yet: one a pass reads before assigning it (the previous pass's), or one read after
        the loop that a pass may leave unassigned (the value of the last pass that assigned it).
        Each is then carried from pass to pass like any other, and a read of it checked
        (`checked_read`)."""
        if getattr(stmt, "adtrans_synthetic", False):
            return      # a loop a segmented loop or a comprehension became: they start theirs
        exposed, always = _flow(stmt.body)
        after = reads_outside(self.function, {id(n) for n in gast.walk(stmt)})
        for name in assigned:
            if name not in self.current and (name in exposed or (name in after and name not in always)):
                version = self.new_version(name)
                self.out.append(Assign(version, self.unassigned_value(name, stmt), stmt, stmt))
                self.maybe_unassigned[version] = (name, [], [])

    def unassigned_value(self, name, node):
        call = gast.Call(_synthetic_callee("unassigned", unassigned), [gast.Constant(name, None)], [])
        return _located(call, node)

    def checked_read(self, node, version):
        """A read of `version`, which a path may leave unassigned: ``y_2 = assigned(y_1)``, Python's
        UnboundLocalError naming the user's variable on such a path (where `y_1` holds
        ``unassigned('y')``), and `y_2` read from here on. A name bound on every path is read as
        it is: no check."""
        user = self.maybe_unassigned[version][0]
        self.mark_unassigned(version)
        call = gast.Call(_synthetic_callee("assigned", assigned), [gast.Name(version, gast.Load(), None, None)], [])
        checked = self.hoist(_located(call, node), node, user).id
        if version in self.closure_reads:
            self.closure_reads[checked] = self.closure_reads[version]     # the same closure
        if self.current.get(user) == version:
            self.current[user] = checked
        return checked

    def mark_unassigned(self, version):
        """Set `version` to ``unassigned(...)`` in the blocks that leave it unassigned, and so the
        versions it copies."""
        if version in self.marked_unassigned:
            return
        self.marked_unassigned.add(version)
        user, missing, copied = self.maybe_unassigned[version]
        for block, stmt in missing:
            block.append(Assign(version, self.unassigned_value(user, stmt), stmt, stmt, copy=True))
        for source in copied:
            self.mark_unassigned(source)

    def loop_headers(self, stmt, assigned):
        """Copy each loop-carried variable into its header version before the loop."""
        headers = {}
        for name in assigned:
            if name in self.current:
                self.check_escaped_closures(name)
                header = self.fresh_version(name)
                self.copy_to(self.out, header, self.current[name], stmt)
                if self.current[name] in self.maybe_unassigned:
                    self.maybe_unassigned[header] = (name, [], [self.current[name]])
                self.current[name] = header
                headers[name] = header
        return headers

    def loop_body(self, loop, statements, headers, assigned, stmt):
        """Desugar the body, its final ``if flag: break``, the end copies and the exit copies."""
        final_break = None
        if statements and _is_break_test(statements[-1]):
            final_break, statements = statements[-1], statements[:-1]
        body = self.out
        for s in statements:
            self.statement(s)
        if final_break is not None:
            loop.break_test = self.atom(final_break.test, "stop")
        for name, header in headers.items():
            if self.current[name] != header:
                self.copy_to(body, header, self.current[name], stmt)
                body[-1].loop_end = True
        loop.body = body

    def exit_copies(self, loop, assigned, headers, stmt):
        after = []
        for name in assigned:
            last = headers.get(name, self.current.get(name))
            if last is None:
                continue
            exit_name = self.fresh_version(name)
            self.copy_to(after, exit_name, last, stmt)
            if last in self.maybe_unassigned:
                self.maybe_unassigned[exit_name] = (name, [], [last])
            loop.exits[last] = exit_name
            self.current[name] = exit_name
        self.out.extend(after)

    def for_loop(self, stmt):
        if stmt.orelse:
            raise self.source.error(stmt.orelse[0], "a loop's 'else' block is not supported")
        assigned = _stored_in(stmt.body, self.growable(), self.locals)
        targets = _stored_in([stmt.target])
        iterable = stmt.iter
        loop = Loop("sequence", [], stmt)
        if _is_call_to(iterable, "range"):
            loop.kind = "range"
            loop.header = _located(gast.Call(self.renamed(iterable.func),
                                             [self.atom(a) for a in iterable.args], []), iterable)
        elif _is_call_to(iterable, "zip") or _is_call_to(iterable, "enumerate"):
            # enumerate(zip(xs, ys)): the zip stays in the header, its sequences atoms.
            args = [_located(gast.Call(self.renamed(a.func), [self.atom(b) for b in a.args], []), a)
                    if i == 0 and _is_call_to(iterable, "enumerate") and _is_call_to(a, "zip")
                    and not a.keywords else self.atom(a) for i, a in enumerate(iterable.args)]
            keywords = [gast.keyword(k.arg, self.atom(k.value)) for k in iterable.keywords]
            loop.header = _located(gast.Call(self.renamed(iterable.func), args, keywords), iterable)
        else:
            loop.header = self.atom(iterable, "items")
        self.start_unbound(stmt, [n for n in assigned if n not in targets])
        headers = self.loop_headers(stmt, [n for n in assigned if n not in targets])
        loop.headers = list(headers.values())
        saved, self.out = self.out, []
        try:
            loop.target = self.loop_target(loop, stmt.target, iterable)
            self.loop_body(loop, stmt.body, headers, assigned, stmt)
        finally:
            self.out = saved
        self.out.append(loop)
        self.exit_copies(loop, targets + [n for n in assigned if n not in targets], headers, stmt)

    def loop_target(self, loop, target, iterable):
        """Bind the loop variables; elements of sequences become `bound` subscripts."""
        if loop.kind == "range":
            if not isinstance(target, gast.Name):
                raise self.unsupported_target(target)
            name = self.new_version(target.id)
            return gast.Name(name, gast.Store(), None, None)
        if _is_call_to(iterable, "enumerate"):
            if not (isinstance(target, (gast.Tuple, gast.List)) and len(target.elts) == 2
                    and isinstance(target.elts[0], gast.Name)):
                raise self.source.error(target, "unpack 'enumerate' as 'for i, x in enumerate(...)'")
            counter = self.new_version(target.elts[0].id)
            sequence = loop.header.args[0]
            start = loop.header.args[1] if len(loop.header.args) > 1 else None
            if start is None and loop.header.keywords:
                start = loop.header.keywords[0].value
            if start is None or (isinstance(start, gast.Constant) and start.value == 0):
                loop.index = counter
            else:
                loop.index = self.namer.fresh("index")
                self.out.append(Assign(loop.index, gast.BinOp(gast.Name(counter, gast.Load(), None, None),
                                                              gast.Sub(), clone(start)),
                                       target, self.origin, copy=True))
            if _is_call_to(sequence, "zip"):
                element = self.bind_elements(target.elts[1], sequence.args, loop.index)
            else:
                element = self.bind_element(target.elts[1], sequence, loop.index)
            return gast.Tuple([gast.Name(counter, gast.Store(), None, None), element], gast.Store())
        loop.index = self.namer.fresh("index")
        if _is_call_to(iterable, "zip"):
            return self.bind_elements(target, loop.header.args, loop.index)
        return self.bind_element(target, loop.header, loop.index)

    def bind_elements(self, target, sequences, index):
        """The target of a ``zip`` of `sequences`: one element of each, bound by the loop header."""
        if not (isinstance(target, (gast.Tuple, gast.List)) and len(target.elts) == len(sequences)):
            raise self.source.error(target, "unpack 'zip' into one name for each sequence")
        elements = [self.bind_element(t, seq, index) for t, seq in zip(target.elts, sequences)]
        return gast.Tuple(elements, gast.Store())

    def bind_element(self, target, sequence, index):
        """``x = sequence[index]``, bound by the loop header; a tuple target is unpacked after."""
        if isinstance(target, gast.Name):
            name = self.new_version(target.id)
            value = gast.Subscript(clone(sequence), gast.Name(index, gast.Load(), None, None),
                                   gast.Load())
            self.out.append(Assign(name, _located(value, target), target, self.origin, bound=True))
            return gast.Name(name, gast.Store(), None, None)
        if isinstance(target, (gast.Tuple, gast.List)):
            item = self.namer.fresh("item")
            value = gast.Subscript(clone(sequence), gast.Name(index, gast.Load(), None, None),
                                   gast.Load())
            self.out.append(Assign(item, _located(value, target), target, self.origin, bound=True))
            self.unpack(target, item, self.origin)
            return gast.Name(item, gast.Store(), None, None)
        raise self.unsupported_target(target)

    def while_loop(self, stmt):
        if stmt.orelse:
            raise self.source.error(stmt.orelse[0], "a loop's 'else' block is not supported")
        assigned = _stored_in(stmt.body, self.growable(), self.locals)
        self.start_unbound(stmt, assigned)
        headers = self.loop_headers(stmt, assigned)
        loop = Loop("while", [], stmt, headers=list(headers.values()))
        saved, self.out = self.out, []
        try:
            loop.test = self.atom(stmt.test, "condition")
            loop.condition, self.out = self.out, []
            self.loop_body(loop, stmt.body, headers, assigned, stmt)
        finally:
            self.out = saved
        self.out.append(loop)
        self.exit_copies(loop, assigned, headers, stmt)

    # -- checkpointed regions

    def check_segmented_placed(self, stmt):
        """``segmented(xs, k)`` given to another call (``list(...)``, ``enumerate(...)`` around it) is
        refused here, at the user's line: it is a ``for`` loop's own iterable (or a value a loop
        then walks)."""
        own = stmt.iter if isinstance(stmt, gast.For) else None
        if isinstance(stmt, gast.For):
            parts = [stmt.iter]
        elif isinstance(stmt, (gast.If, gast.While)):
            parts = [stmt.test]
        elif isinstance(stmt, gast.With):
            parts = [item.context_expr for item in stmt.items]
        elif isinstance(stmt, (gast.FunctionDef, gast.AsyncFunctionDef, gast.ClassDef, gast.Try)):
            parts = []      # their statements are checked as they are desugared, or refused whole
        else:
            parts = [stmt]
        for part in parts:
            calls = [c for c in gast.walk(part) if isinstance(c, gast.Call)]
            for node in (a for c in calls for a in c.args + [k.value for k in c.keywords]):
                if (node is not own and isinstance(node, gast.Call)
                        and getattr(node.func, "attr", getattr(node.func, "id", None)) == "segmented"
                        and self.is_api_call(node, "segmented")):
                    raise self.source.error(
                        node, "segmented(...) given to another call: it is a for loop's own iterable",
                        "write 'for x in adtrans.segmented(xs, k):', with enumerate or zip inside it: "
                        "'for i, x in adtrans.segmented(enumerate(xs), k):'")

    def is_api_call(self, expr, name):
        """Is `expr` a call of ``adtrans.<name>`` (however the user imported it)?"""
        from adtrans import api

        if not (isinstance(expr, gast.Call) and _is_static(expr.func, self.locals)):
            return False
        value = _static_value(expr.func, self.source.fn)
        return value is getattr(api, name)

    def check_region(self, node):
        """What a ``with recomputed()`` or a ``for`` over ``segmented`` may not be or hold, refused at
        the user's line (before jumps become flags)."""
        if isinstance(node, gast.With) and any(self.is_api_call(i.context_expr, "recomputed") for i in node.items):
            if len(node.items) > 1:
                raise self.source.error(node, "'with adtrans.recomputed()' must be the only item of its 'with'",
                                        "nest the other 'with' inside the block")
            if node.items[0].optional_vars is not None:
                raise self.source.error(node, "'with adtrans.recomputed() as ...' is not supported",
                                        "drop the 'as ...': the block is not a value you can use")
        if isinstance(node, gast.For) and self.is_api_call(node.iter, "segmented"):
            found = _own_returns(node.body)
            if found:
                raise self.source.error(found[0], "'return' inside a segmented loop is not supported",
                                        "set a variable and 'break', then return after the loop")

    def recomputed_block(self, stmt):
        """Outline the block into a checkpointed function of what it reads, returning what it assigns.

        Its outputs are the names it assigns that a later statement may read: after
        it, and in a loop the block itself on the next pass (`c` in ``h = f(h, c);
        c = g(h)``). Its inputs are the names it may read before assigning them, and
        the outputs it may leave unassigned (an ``if`` without ``else``, ``h += v``, a
        loop of no pass): those leave with the value they came with. An output the
        block may leave unassigned and that had no value before leaves as None.
        A segmented run (`segmented_loop`) says its outputs itself.
        """
        from adtrans.api import DifferentiableFunction

        body = stmt.body
        exposed, always = _flow(body)
        always |= getattr(stmt, "adtrans_always", set())
        stored = _assigned_in_block(body, self.growable(), self.locals)
        outputs = getattr(stmt, "adtrans_outputs", None)
        in_loop = getattr(stmt, "adtrans_in_loop", False) or _in_loop(self.function, stmt)
        if outputs is None:
            inside = {id(n) for s in body for n in gast.walk(s)}
            read_after = reads_outside(self.function, inside) | self.synthetic(stored)
            if in_loop:
                read_after |= exposed
            outputs = [n for n in stored if n in read_after]
        if not outputs:
            raise self.source.error(stmt, "a recomputed block must assign a variable used after it",
                                    "what the block computes is lost when it ends: read a variable it "
                                    "assigns after it, or remove the 'with adtrans.recomputed():'")
        bound = set(self.current) | set(self.source.fn.__code__.co_freevars)
        wanted = exposed | (set(outputs) - always)
        inputs = [n for n in dict.fromkeys(n.id for s in body for n in gast.walk(s) if isinstance(n, gast.Name))
                  if n in wanted and n in bound]
        unbound = [n for n in outputs if n not in always and n not in bound]
        if unbound and in_loop:
            # None would replace the value an earlier pass gave it.
            raise self.source.error(stmt, f"'{unbound[0]}' may be left unassigned by this recomputed block, "
                                          "and has no value before the loop",
                                    f"assign '{unbound[0]}' a value before the loop")
        growable = {n for n in inputs if n in self.growable()}     # the caller's lists
        function = _outlined_function(self.namer.fresh("recomputed_block"), inputs, outputs, body, stmt, unbound)
        fn = _compile_outlined(function, self.source, growable)
        callee = DifferentiableFunction(fn, checkpoint=True)
        args = [gast.Name(self.current.get(n, n), gast.Load(), None, None) for n in inputs]
        call = _located(gast.Call(_synthetic_callee(function.name, callee), args, []), stmt)
        self.keep_random_states(callee, call, stmt)
        if len(outputs) == 1:
            self.out.append(Assign(self.new_version(outputs[0]), call, stmt, stmt))
            return
        values = self.namer.fresh("recomputed")
        self.out.append(Assign(values, call, stmt, stmt))
        versions = [self.new_version(n) for n in outputs]
        flags = frozenset(v for n, v in zip(outputs, versions) if n in self.flags)
        self.out.append(Unpack(versions, values, stmt, stmt, flags))

    def synthetic(self, names):
        """Those of `names` the user's function never mentions: the desugaring's own (a
        comprehension's list), read where it put them."""
        if not hasattr(self, "_user_names"):
            self._user_names = {n.id for n in gast.walk(self.function) if isinstance(n, gast.Name)}
        return {n for n in names if n not in self._user_names}

    def segmented_loop(self, stmt):
        """``for x in segmented(xs, k)``: runs of k passes, each a recomputed block but the last.

        The last run's backward comes first, when its intermediates would be recomputed
        at once: it runs as a plain loop and keeps them (no extra peak memory, one
        run less to recompute; PyTorch's ``checkpoint_sequential`` does the same).
        A body that may ``break`` does not know its last run in advance, so
        there every run is recomputed.

        A run returns what the next pass reads (`h` in ``h = f(h, x)``), and
        what is read after the loop, unless the last run, which is never empty,
        assigns it whatever its passes do. A name a pass may leave unassigned, or
        reads before assigning it, with no value before the loop starts as None.
        """
        iterable, length = self.segmented_arguments(stmt.iter)
        items = self.namer.fresh("items")
        segment_length = self.namer.fresh("segment_length")
        start = self.namer.fresh("start")
        run = self.namer.fresh("run")
        self.locals.update((items, segment_length, start, run))
        load = lambda n: gast.Name(n, gast.Load(), None, None)  # noqa: E731
        store = lambda n: gast.Name(n, gast.Store(), None, None)  # noqa: E731
        call_of = lambda f, *args: gast.Call(load(f), list(args), [])  # noqa: E731
        prologue = [gast.Assign([store(items)], call_of("list", iterable), None),
                    gast.Assign([store(segment_length)], length, None)]
        body = list(stmt.body)
        breaks = bool(body) and _is_break_test(body[-1])
        for node in gast.walk(stmt):
            if isinstance(node, gast.With):
                node.adtrans_in_loop = True     # the last run's loop holds a copy of it
        # What a run returns: see the docstring.
        targets = set(_stored_in([stmt.target]))
        exposed, always = _flow(body)
        exposed, always = exposed - targets, always | targets
        inside = {id(n) for s in body for n in gast.walk(s)}
        stored = _assigned_in_block([stmt.target] + body, self.growable(), self.locals)
        read_after = reads_outside(self.function, inside) | self.synthetic(stored)
        if not breaks:
            read_after -= always
        outputs = [n for n in stored if n in exposed or n in read_after]
        unbound = [n for n in outputs if (n in exposed or n not in always) and n not in self.current]
        prologue += [gast.Assign([store(n)], gast.Constant(None, None), None) for n in unbound]
        if not outputs:
            # Nothing leaves a run but the last: the passes run as a plain loop.
            loop = gast.For(target=stmt.target, iter=load(items), body=body, orelse=[], type_comment=None)
            loop.adtrans_synthetic = True
            return self.run_segmented(stmt, prologue + [loop])
        # The run's passes are the block's input (not `items` and `start`): its pullback
        # then gives the run's cotangent alone, not one as long as the whole loop.
        window = gast.Assign([store(run)], gast.Subscript(load(items), gast.Slice(
            load(start), gast.BinOp(load(start), gast.Add(), load(segment_length)), None), gast.Load()), None)
        inner = gast.For(target=stmt.target, iter=load(run), body=body, orelse=[], type_comment=None)
        block = gast.With(items=[gast.withitem(gast.Constant(None, None), None)], body=[inner], type_comment=None)
        block.adtrans_recomputed = True
        block.adtrans_outputs = outputs
        block.adtrans_always = always        # a run has a pass at least
        if breaks:
            end, last = call_of("len", load(items)), []
        else:
            # last_start = max(len(items) - 1, 0) // segment_length * segment_length
            end = load(self.namer.fresh("last_start"))
            last_run = self.namer.fresh("last_run")
            self.locals.update((end.id, last_run))
            before_last = call_of("max", gast.BinOp(call_of("len", load(items)), gast.Sub(), gast.Constant(1, None)),
                                  gast.Constant(0, None))
            first_of_run = gast.BinOp(gast.BinOp(before_last, gast.FloorDiv(), load(segment_length)), gast.Mult(),
                                      load(segment_length))
            rest = gast.Subscript(load(items), gast.Slice(clone(end), None, None), gast.Load())
            prologue[2:2] = [gast.Assign([store(end.id)], first_of_run, None),
                             gast.Assign([store(last_run)], rest, None)]
            last = [gast.For(target=clone(stmt.target), iter=load(last_run), body=clone(body), orelse=[],
                             type_comment=None)]
        outer = gast.For(target=store(start), iter=call_of("range", gast.Constant(0, None), end, load(segment_length)),
                         body=[window, block] + clone(body[-1:] if breaks else []), orelse=[], type_comment=None)
        for loop in [outer] + last:
            loop.adtrans_synthetic = True
        self.run_segmented(stmt, prologue + [outer] + last)

    def run_segmented(self, stmt, statements):
        """Desugar the statements a segmented loop became, at the loop's line."""
        for node in statements:
            for child in gast.walk(node):
                if not hasattr(child, "lineno") and "lineno" in getattr(child, "_attributes", ()):
                    gast.copy_location(child, stmt)
        for node in statements:
            self.statement(node)

    def segmented_arguments(self, call):
        """The iterable and the run length of ``segmented(xs, k)``, taken as `segmented` takes them: a
        length written as a number is checked here, any other by ``run_length(k)`` as the loop starts."""
        import inspect

        from adtrans import api

        try:
            if any(isinstance(a, gast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
                raise TypeError
            bound = inspect.signature(api.segmented).bind(*call.args, **{k.arg: k.value for k in call.keywords})
        except TypeError:
            raise self.source.error(call, "write 'segmented(iterable, length)'") from None
        iterable, length = bound.arguments["iterable"], bound.arguments["length"]
        if isinstance(length, gast.Constant):
            try:
                return iterable, gast.Constant(api.run_length(length.value), None)
            except (TypeError, ValueError) as e:
                raise self.source.error(length, f"segmented(..., {length.value!r}): {e}",
                                        "give the number of passes a run holds, 1 or more") from None
        return iterable, _located(gast.Call(_synthetic_callee("run_length", api.run_length), [length], []), length)

    # -- assignment to a subscript: value semantics

    def growable(self):
        """The locals whose lists ``xs.append(v)`` grows by value: not a parameter (the caller would
        no longer see its list change), but an outlined block's (its caller sees the list it
        returns: see `_compile_outlined`)."""
        return self.locals - self.params | getattr(self.source.fn, "_adtrans_grown", frozenset())

    def grows_local_list(self, call):
        """Is `call` ``xs.append(v)`` or ``xs.extend(vs)`` on a local `xs` the function grows by value?"""
        return (_grows(call, self.growable())
                and len(call.args) == 1 and not call.keywords
                and not isinstance(call.args[0], gast.Starred))

    def grow_list(self, call, stmt):
        """``xs = appended(xs, v)``: the list grows by value, like ``x[i] = v`` (see `store`)."""
        target = call.func.value
        name, callee = _GROWING[call.func.attr]
        item = self.atom(call.args[0])
        before = self.atom(target)
        grown = gast.Call(_synthetic_callee(name, callee), [before, item], [])
        self.out.append(Assign(self.new_version(target.id), _located(grown, call), target, stmt, changes=before.id))

    def augmented_item(self, stmt):
        """``x[i] += v`` runs as ``x = with_item(x, i, x[i] + v)``, the container and index
        evaluated once, as Python does."""
        target = stmt.target
        if self.runs_as_written(target, stmt.value):
            self.out.append(Effect(self.renamed(stmt), stmt))
            return
        places = self.places(target)
        _, base, index = places[-1]
        current = gast.Subscript(clone(base), clone(index), gast.Load())
        item = self.hoist(_located(current, target), target, "item")
        value = self.hoist(_located(gast.BinOp(item, stmt.op, self.atom(stmt.value)), stmt), stmt)
        self.store(places, value, stmt)

    def runs_as_written(self, target, value):
        """Is storing `value` into `target` (``COUNTER[0] += 1``, ``CALLS[0] = CALLS[0] + 1``) a change
        to a global's or a closure's container by a value read from no local? It carries no
        derivative, so it runs as written: a call counter, as JAX and PyTorch users keep one."""
        root = root_name(target)
        return (root is not None and root not in self.locals
                and not reads_outside(value, ()) & self.locals)

    def places(self, target):
        """Where assigning `target` (``x[i]``, ``s.a``, ``m[0][1]``, ``s.v[0]``) stores, from its
        local variable out: (the subscript or attribute, its container as an atom, its index), each
        container and index evaluated once, as Python does."""
        chain = []
        while isinstance(target, (gast.Subscript, gast.Attribute)):
            chain.append(target)
            target = target.value
        if not (isinstance(target, gast.Name) and target.id in self.locals):
            what = "a subscript" if isinstance(chain[0], gast.Subscript) else "an attribute"
            raise self.source.error(chain[0], f"assignment to {what} of a value that is not a local "
                                    "variable is not supported",
                                    "assign to a local array" if what == "a subscript"
                                    else "assign to a field of a local object")
        found = []
        base = self.renamed(target)
        for part in reversed(chain):
            if found:
                base = self.hoist(_located(self.part_load(*found[-1]), part.value), part.value)
            index = self.index(part.slice) if isinstance(part, gast.Subscript) else None
            found.append((part, base, index))
        return found

    @staticmethod
    def part_load(part, base, index):
        if isinstance(part, gast.Subscript):
            return gast.Subscript(clone(base), clone(index), gast.Load())
        return gast.Attribute(clone(base), part.attr, gast.Load())

    def store(self, places, value_atom, stmt):
        """`value_atom` into the innermost of `places`, each container around it a copy with the
        changed part (``m = with_item(m, 0, with_item(m[0], 1, v))``): value semantics all the way
        to the local variable, which gets a new version."""
        for depth in range(len(places) - 1, -1, -1):
            part, base, index = places[depth]
            if isinstance(part, gast.Subscript):
                call = gast.Call(_synthetic_callee(_SET_ITEM, with_item),
                                 [clone(base), _index_value(clone(index)), value_atom], [])
            else:
                call = gast.Call(_synthetic_callee("with_field", with_field),
                                 [clone(base), gast.Constant(part.attr, None), value_atom], [])
            call = _located(call, part)
            if depth:
                value_atom = self.hoist(call, part, f"{name_for(part.value)}_updated")
            else:
                root = part.value
                self.out.append(Assign(self.new_version(root.id), call, part, stmt, changes=base.id))

    def unsupported_target(self, target):
        what = {gast.Subscript: "a subscript", gast.Attribute: "an attribute"}.get(type(target), "this target")
        return self.source.error(target, f"assignment to {what} is not supported yet",
                                 "assign to a new variable instead")

    def assign(self, target, value, stmt):
        if isinstance(target, gast.Name):
            self.check_expression(value)
            if _is_operation(value, self.locals):
                operation = self.operation(value)
                name = self.new_version(target.id)
                self.out.append(Assign(name, operation, value, stmt))
                if isinstance(value, gast.Lambda):
                    self.record_closure(name, value, exclude=target.id)
            else:
                atom = self.renamed(value)
                name = self.new_version(target.id)
                self.out.append(Assign(name, atom, value, stmt))
            return name
        self.check_expression(value)
        if (isinstance(target, (gast.Tuple, gast.List)) and isinstance(value, (gast.Tuple, gast.List))
                and len(value.elts) == len(target.elts)
                and not any(isinstance(e, gast.Starred) for e in target.elts + value.elts)):
            # "a, b = b, a", "x[i], x[j] = x[j], x[i]": every element first, then each target from
            # left to right.
            atoms = [self.atom(e) for e in value.elts]
            for t, atom, element in zip(target.elts, atoms, value.elts):
                self.bind(t, atom, element, stmt)
            return None
        hint = "values" if isinstance(target, (gast.Tuple, gast.List)) else None
        return self.bind(target, self.atom(value, hint), value, stmt)

    def bind(self, target, atom, node, stmt):
        """`target` (a name, a subscript, an attribute, or a tuple of them) gets the value of `atom`;
        returns the name holding it, if any."""
        if isinstance(target, gast.Name):
            name = self.new_version(target.id)
            self.out.append(Assign(name, atom, node, stmt))
            return name
        if isinstance(target, (gast.Tuple, gast.List)):
            if not isinstance(atom, gast.Name):
                atom = self.hoist(atom, node, "values")
            return self.unpack(target, atom.id, stmt)
        if isinstance(target, (gast.Subscript, gast.Attribute)):
            self.store(self.places(target), atom, stmt)
            return None
        raise self.unsupported_target(target)

    def unpack(self, target, source, stmt):
        starred = [i for i, e in enumerate(target.elts) if isinstance(e, gast.Starred)]
        if starred:
            # "first, *rest = xs" runs as "first, rest = starred_parts(xs, 1, 0)": one call that
            # checks the length as Python does and gives the starred name a list.
            before = starred[0]
            after = len(target.elts) - before - 1
            call = gast.Call(_synthetic_callee("starred_parts", starred_parts),
                             [gast.Name(source, gast.Load(), None, None), gast.Constant(before, None),
                              gast.Constant(after, None)], [])
            parts = self.hoist(_located(call, target), target, "parts")
            elements = list(target.elts)
            elements[before] = elements[before].value
            target = _located(gast.Tuple(elements, gast.Store()), target)
            source = parts.id
        # A name is bound by the unpacking itself, unless an element left of it (a tuple, a
        # subscript, an attribute: bound after it, from a temporary) mentions it, as `i` in
        # "x[i], i = ...": Python binds from left to right.
        targets, later, mentioned = [], [], set()
        for index, element in enumerate(target.elts):
            if isinstance(element, gast.Name) and element.id not in mentioned:
                targets.append(self.new_version(element.id))
                continue
            temp = self.namer.fresh(f"{source}_{index}")
            targets.append(temp)
            later.append((temp, element))
            mentioned |= {n.id for n in gast.walk(element) if isinstance(n, gast.Name)}
        self.out.append(Unpack(targets, source, target, stmt))
        for temp, element in later:
            self.bind(element, gast.Name(temp, gast.Load(), None, None), element, stmt)
        return source

    def new_version(self, user_name):
        self.check_escaped_closures(user_name)
        if user_name not in self.current:
            name = user_name     # the first version keeps the user's name
            self.user_names[name] = user_name
        else:
            name = self.fresh_version(user_name)
        self.current[user_name] = name
        return name

    def fresh_version(self, user_name):
        """A new SSA name for the user's variable `user_name` (also a branch merge's, a loop header's)."""
        name = self.namer.fresh(user_name)
        self.user_names[name] = user_name
        return name

    # -- expressions

    def atom(self, expr, hint=None):
        """An atom with the value of `expr`, hoisting the operation into a new statement."""
        if not _is_operation(expr, self.locals):
            return self.renamed(expr)
        operation = self.operation(expr)
        if isinstance(operation, gast.Name):
            return operation          # already a name (a conditional expression's choice)
        return self.hoist(operation, expr, hint)

    def keep_random_states(self, callee, call, node):
        """Before a checkpointed call that draws random numbers, keep the states it draws from
        (`randomness`): ``call.adtrans_random`` maps each drawing parameter (None for the global
        generators) to the local holding its state, which the recomputation starts from."""
        from adtrans.api import DifferentiableFunction

        if not (isinstance(callee, DifferentiableFunction) and callee.checkpoint and callee.vjp is None):
            return
        drawing, everywhere = randomness.draws(callee.function)
        if not drawing and not everywhere:
            return
        states = {}
        if drawing and not any(isinstance(a, gast.Starred) for a in call.args) \
                and all(k.arg is not None for k in call.keywords):
            try:
                bound = own_signature(callee.function).bind(
                    *call.args, **{k.arg: k.value for k in call.keywords}).arguments
            except TypeError:
                bound = {}
            for param in drawing:
                if isinstance(bound.get(param), gast.Name):
                    state = gast.Call(_synthetic_callee("random_state", randomness.random_state), [bound[param]], [])
                    states[param] = self.hoist(_located(state, node), node, f"{param}_state").id
        if everywhere:
            state = gast.Call(_synthetic_callee("global_random_state", randomness.global_random_state), [], [])
            states[None] = self.hoist(_located(state, node), node, "random_state").id
        call.adtrans_random = states

    def hoist(self, operation, node, hint=None):
        name = self.namer.fresh(hint or name_for(operation, _is_method(operation, self.locals)))
        self.out.append(Assign(name, operation, node, self.origin))
        if isinstance(node, gast.Lambda):
            # A lambda written inside an expression: called at once, or stored or passed on.
            self.record_closure(name, node)
            if not self.calling:
                self.escaped.add(name)
        return gast.Name(name, gast.Load(), None, None)

    def operation(self, expr):
        """`expr` with its operands turned into atoms (operands first, left to right)."""
        if isinstance(expr, gast.BinOp):
            return _located(gast.BinOp(self.atom(expr.left), expr.op, self.atom(expr.right)), expr)
        if isinstance(expr, gast.UnaryOp):
            if isinstance(expr.op, (gast.USub, gast.UAdd)):
                return _located(gast.UnaryOp(expr.op, self.atom(expr.operand)), expr)
            return self.renamed(expr)
        if isinstance(expr, gast.Call):
            lowered = self.lowered_call(expr)
            if lowered is not None:
                return lowered
            func = expr.func
            if _is_static(func, self.locals):
                func = self.renamed(func)
            elif isinstance(func, gast.Attribute):
                func = _located(gast.Attribute(self.atom(func.value), func.attr, gast.Load()), func)
            else:
                with self.reading_to_call():
                    func = self.atom(func, "function")
            # 'f(*xs, **options)': the unpacked value is an atom, the call spreads it at run time.
            args = [_located(gast.Starred(self.atom(a.value), gast.Load()), a) if isinstance(a, gast.Starred)
                    else self.passed(a) for a in expr.args]
            keywords = [gast.keyword(k.arg, self.argument(k.value) if k.arg is not None else self.atom(k.value))
                        for k in expr.keywords]
            call = _located(gast.Call(func, args, keywords), expr)
            if _is_static(expr.func, self.locals):
                self.keep_random_states(_static_value(expr.func, self.source.fn), call, expr)
            return call
        if isinstance(expr, gast.Attribute):
            if expr.attr == "flat" and not _is_static(expr, self.locals):
                # A.flat: an array's elements as a flat array, which loops and the pullback index.
                return _located(gast.Call(_synthetic_callee("flat_items", flat_items), [self.atom(expr.value)], []),
                                expr)
            return _located(gast.Attribute(self.atom(expr.value), expr.attr, gast.Load()), expr)
        if isinstance(expr, gast.Subscript):
            value = self.atom(expr.value)
            return _located(gast.Subscript(value, self.index(expr.slice), gast.Load()), expr)
        if isinstance(expr, (gast.Tuple, gast.List)):
            # (*x.shape, 1): the unpacked value an atom; see Resolver.assign for its derivative.
            elts = [_located(gast.Starred(self.atom(e.value), gast.Load()), e) if isinstance(e, gast.Starred)
                    else self.atom(e) for e in expr.elts]
            return _located(type(expr)(elts, gast.Load()), expr)
        if isinstance(expr, gast.Dict):
            if any(k is None for k in expr.keys):
                return self.merged_dict(expr)
            keys = [self.atom(k) for k in expr.keys]
            values = [self.atom(v) for v in expr.values]
            return _located(gast.Dict(keys, values), expr)
        if isinstance(expr, gast.IfExp):
            return self.conditional(expr)
        if isinstance(expr, (gast.ListComp, gast.GeneratorExp, gast.DictComp)):
            return self.comprehension(expr)
        if isinstance(expr, gast.BoolOp) and not _is_truth_value(expr):
            return self.boolean(expr)
        if isinstance(expr, gast.Compare):
            left = self.atom(expr.left)
            return _located(gast.Compare(left, expr.ops, [self.atom(c) for c in expr.comparators]), expr)
        return self.renamed(expr)

    def conditional(self, expr):
        """``a if c else b``: an ``if`` statement whose branches assign one new name."""
        test = self.atom(expr.test, "condition")
        name = self.namer.fresh("choice")
        branches = []
        for branch in (expr.body, expr.orelse):
            saved, self.out = self.out, []
            try:
                value = self.atom(branch)
                self.out.append(Assign(name, value, branch, self.origin, copy=True))
                branches.append(self.out)
            finally:
                self.out = saved
        self.out.append(If(test, branches[0], branches[1], self.origin, [name]))
        return gast.Name(name, gast.Load(), None, None)

    def boolean(self, expr):
        """``a or b`` is ``a if a else b`` and ``a and b`` is ``b if a else a`` (Python's meaning):
        `b` runs only when needed, and the derivative flows through the operand chosen."""
        first, *rest = expr.values
        remainder = rest[0] if len(rest) == 1 else _located(gast.BoolOp(expr.op, rest), expr)
        value = self.atom(first)
        if isinstance(expr.op, gast.Or):
            choice = gast.IfExp(value, value, remainder)
        else:
            choice = gast.IfExp(value, remainder, value)
        return self.conditional(_located(choice, expr))

    def comprehension(self, expr):
        """``[e for t in xs if c]`` as the loop it means, growing a new list (see `grow_list`).

        A generator expression becomes a list too: what takes it (``sum``,
        ``np.stack``, ``tuple``) consumes it whole. A dict comprehension
        assigns items. The loop variables get fresh names, since a
        comprehension's variables are its own, never the function's; the
        first ``in`` is read in the enclosing scope, as Python does.
        """
        for generator in expr.generators:
            if generator.is_async:
                raise self.source.error(expr, "an asynchronous comprehension is not supported")
        is_dict = isinstance(expr, gast.DictComp)
        items = self.namer.fresh("entries" if is_dict else "items")
        renames = {}
        rename = _ComprehensionRenamer(renames)
        loops = []
        for i, generator in enumerate(expr.generators):
            iterable = clone(generator.iter) if i == 0 else rename.visit(clone(generator.iter))
            for node in gast.walk(generator.target):
                if isinstance(node, gast.Name):
                    renames[node.id] = self.namer.fresh(node.id)
            target = rename.visit(clone(generator.target))
            loops.append((target, iterable, [rename.visit(clone(c)) for c in generator.ifs]))
        if is_dict:
            slot = gast.Subscript(gast.Name(items, gast.Load(), None, None), rename.visit(clone(expr.key)),
                                  gast.Store())
            body = [gast.Assign([slot], rename.visit(clone(expr.value)), None)]
            empty = gast.Dict([], [])
        else:
            grow = gast.Attribute(gast.Name(items, gast.Load(), None, None), "append", gast.Load())
            body = [gast.Expr(gast.Call(grow, [rename.visit(clone(expr.elt))], []))]
            empty = gast.List([], gast.Load())
        for target, iterable, conditions in reversed(loops):
            for condition in reversed(conditions):
                body = [gast.If(condition, body, [])]
            body = [gast.For(target, iterable, body, [], None)]
            body[0].adtrans_synthetic = True
        statements = [gast.Assign([gast.Name(items, gast.Store(), None, None)], empty, None)] + body
        for stmt in statements:
            for node in gast.walk(stmt):
                # The nodes written here take the comprehension's place; the user's keep theirs.
                if isinstance(node, (gast.stmt, gast.expr)) and getattr(node, "lineno", None) is None:
                    gast.copy_location(node, expr)
        self.locals |= {items, *renames.values()}
        for stmt in statements:
            self.statement(stmt)
        return gast.Name(self.current[items], gast.Load(), None, None)

    def lowered_call(self, expr):
        """The operation a call of a builtin or a method with a meaning of its own runs as, or None:
        ``super().m(x)``, ``p._replace(a=v)``, ``d.items()``, ``reversed(xs)``, ``map(f, xs)``,
        ``zip(a, b)``, ``enumerate(xs)``, ``dict(m, k=v)`` (see each helper, and docs/index.md's
        decisions)."""
        func = expr.func
        starred = any(isinstance(a, gast.Starred) for a in expr.args)
        if (isinstance(func, gast.Attribute) and self.is_builtin(getattr(func.value, "func", None), super)
                and not func.value.args):
            return self.super_call(expr)
        replaced = self.replaced_object(expr)
        if replaced is not None:
            return self.operation(_located(replaced, expr))
        viewed = _DICT_VIEWS.get(getattr(func, "attr", None))
        if (viewed is not None and isinstance(func.value, gast.Name) and func.value.id in self.locals
                and not expr.args and not expr.keywords):
            # d.items(), d.values(), d.keys() of a local: lists, which loops and the pullback index.
            call = gast.Call(_synthetic_callee(viewed.__name__, viewed), [func.value], [])
            return self.operation(_located(call, expr))
        if self.is_builtin(func, reversed) and len(expr.args) == 1 and not expr.keywords and not starred:
            # reversed(xs) is xs[::-1]: the same items, a subscript the pullback follows.
            backwards = gast.Slice(None, None, gast.UnaryOp(gast.USub(), gast.Constant(1, None)))
            return self.operation(_located(gast.Subscript(expr.args[0], backwards, gast.Load()), expr))
        if self.is_builtin(func, map) and len(expr.args) >= 2 and not expr.keywords and not starred:
            return self.mapped(expr)
        if (self.is_builtin(func, list) and len(expr.args) == 1 and not expr.keywords
                and any(self.is_builtin(getattr(expr.args[0], "func", None), b) for b in _LISTED)):
            return self.operation(expr.args[0])     # list(zip(a, b)): the lowered zip is a new list
        for builtin, callee in _LISTED.items():
            if self.is_builtin(func, builtin):
                # zip(a, b), enumerate(xs) as values (a for loop's own are lowered in for_loop): lists of
                # tuples, which the pullback can index, as map(f, xs) is a list.
                args = [_located(gast.Starred(self.atom(a.value), gast.Load()), a) if isinstance(a, gast.Starred)
                        else self.passed(a) for a in expr.args]
                keywords = [gast.keyword(k.arg, self.atom(k.value)) for k in expr.keywords]
                return _located(gast.Call(_synthetic_callee(callee.__name__, callee), args, keywords), expr)
        if self.is_builtin(func, dict) and expr.keywords and len(expr.args) <= 1 and not starred:
            # dict(m, a=x, **n) is {**m, "a": x, **n}.
            keys = [None] * len(expr.args) + [None if k.arg is None else gast.Constant(k.arg, None)
                                              for k in expr.keywords]
            display = gast.Dict(keys, list(expr.args) + [k.value for k in expr.keywords])
            return self.merged_dict(_located(display, expr))
        return None

    def is_builtin(self, func, builtin):
        """Does `func` name the builtin `builtin` (no local or global of that name hides it)?"""
        return (isinstance(func, gast.Name) and func.id == builtin.__name__ and func.id not in self.locals
                and self.source.fn.__globals__.get(func.id, builtin) is builtin)

    def replaced_object(self, expr):
        """``p._replace(a=v)`` of a local NamedTuple, ``dataclasses.replace(p, a=v)``: a copy with
        fields set, as ``with_field(p, "a", v)`` (how ``p.a = v`` runs), one field at a time; or None."""
        func = expr.func
        if (isinstance(func, gast.Attribute) and func.attr == "_replace" and isinstance(func.value, gast.Name)
                and func.value.id in self.locals and not expr.args):
            base = func.value
        elif (len(expr.args) == 1 and not isinstance(expr.args[0], gast.Starred)
              and self.global_value(func) is dataclasses.replace):
            base = expr.args[0]
        else:
            return None
        if any(k.arg is None for k in expr.keywords):
            return None
        for keyword in expr.keywords:
            base = gast.Call(_synthetic_callee("with_field", with_field),
                             [base, gast.Constant(keyword.arg, None), keyword.value], [])
        return base

    def global_value(self, expr):
        """The object a global name or a module attribute names (``dataclasses.replace``), or None."""
        if isinstance(expr, gast.Name) and expr.id not in self.locals:
            return self.source.fn.__globals__.get(expr.id)
        if isinstance(expr, gast.Attribute):
            base = self.global_value(expr.value)
            return getattr(base, expr.attr, None) if base is not None else None
        return None

    def super_call(self, expr):
        """``super().m(x)`` in a method as ``super_function(__class__, self, "m")(self, x)``: the method
        found is called with the object as an argument, so the derivative reaches it."""
        args = self.source.node.args
        first = (args.posonlyargs + args.args)[:1]
        if not first or "__class__" not in self.source.fn.__code__.co_freevars:
            raise self.source.error(expr.func.value, "'super()' outside a method is not supported",
                                    "call the base class's method: Base.method(self, ...)")
        self_name = first[0].id
        found = gast.Call(_synthetic_callee("super_function", super_function),
                          [gast.Name("__class__", gast.Load(), None, None),
                           self.renamed(gast.Name(self_name, gast.Load(), None, None)),
                           gast.Constant(expr.func.attr, None)], [])
        function = self.hoist(_located(found, expr), expr, f"super_{expr.func.attr.strip('_')}")
        call = gast.Call(function, [gast.Name(self_name, gast.Load(), None, None)] + list(expr.args),
                         list(expr.keywords))
        return self.operation(_located(call, expr))

    def mapped(self, expr):
        """``map(f, xs, ys)`` as ``[f(x, y) for x, y in zip(xs, ys)]``: a list, which what takes it
        (``sum``, ``list``, a loop) consumes whole, as a generator expression (see `comprehension`)."""
        function = expr.args[0]
        if not _is_static(function, self.locals):   # math.sin stays as written; a lambda is made once
            name = self.namer.fresh("function")
            self.locals.add(name)
            self.statement(_located(gast.Assign([gast.Name(name, gast.Store(), None, None)], function, None),
                                    expr))
            function = gast.Name(name, gast.Load(), None, None)
        sequences = expr.args[1:]
        elements = [self.namer.fresh("element") for _ in sequences]
        call = gast.Call(clone(function), [gast.Name(e, gast.Load(), None, None) for e in elements], [])
        if len(sequences) == 1:
            target, iterable = gast.Name(elements[0], gast.Store(), None, None), sequences[0]
        else:
            target = gast.Tuple([gast.Name(e, gast.Store(), None, None) for e in elements], gast.Store())
            iterable = gast.Call(gast.Name("zip", gast.Load(), None, None), list(sequences), [])
        listed = gast.ListComp(call, [gast.comprehension(target, iterable, [], 0)])
        for node in gast.walk(listed):
            if isinstance(node, (gast.stmt, gast.expr)) and getattr(node, "lineno", None) is None:
                gast.copy_location(node, expr)
        return self.comprehension(listed)

    def merged_dict(self, expr):
        """``{**params, "w": w}``: ``merged(params, {"w": w})``, the items of each part in turn."""
        parts, keys, values = [], [], []
        for key, value in zip(expr.keys, expr.values):
            if key is not None:
                keys.append(self.atom(key))
                values.append(self.atom(value))
                continue
            if keys:
                parts.append(self.hoist(_located(gast.Dict(keys, values), expr), expr, "items"))
                keys, values = [], []
            parts.append(self.atom(value, "items" if isinstance(value, gast.Dict) else None))
        if keys:
            parts.append(self.hoist(_located(gast.Dict(keys, values), expr), expr, "items"))
        return _located(gast.Call(_synthetic_callee("merged", merged), parts, []), expr)

    def passed(self, expr):
        """An argument of a call. A closure passed as it is (a name, a lambda) counts as called, not
        stored (see `check_escaped_closures`): a function taking one calls it, as a rule."""
        if not isinstance(expr, (gast.Name, gast.Lambda)):
            return self.argument(expr)
        with self.reading_to_call():
            return self.argument(expr)

    @contextlib.contextmanager
    def reading_to_call(self):
        """Closures read meanwhile are called (or passed to a call), not stored."""
        self.calling, saved = True, self.calling
        try:
            yield
        finally:
            self.calling = saved

    def argument(self, expr):
        if (isinstance(expr, (gast.Tuple, gast.List)) and _is_operation(expr, self.locals)
                and not any(isinstance(e, gast.Starred) for e in expr.elts)):
            return _located(type(expr)([self.atom(e) for e in expr.elts], gast.Load()), expr)
        return self.atom(expr)

    def index(self, expr):
        if isinstance(expr, gast.Slice):
            parts = [self.atom(p) if p is not None else None for p in (expr.lower, expr.upper, expr.step)]
            return _located(gast.Slice(*parts), expr)
        if isinstance(expr, gast.Tuple):
            return _located(gast.Tuple([self.index(e) for e in expr.elts], gast.Load()), expr)
        return self.atom(expr, "index")

    def renamed(self, tree):
        """A copy of `tree` reading the current SSA version of each local."""
        tree = clone(tree)
        _Renamer(self.current, self.locals, self.check_closure_read, self.check_assigned).visit(tree)
        return tree

    def check_assigned(self, node, name):
        return self.checked_read(node, name) if name in self.maybe_unassigned else name

    def check_escaped_closures(self, user):
        """`user` is about to be assigned again: a closure reading its value that was stored would,
        called from there, see the old value where Python's sees the new one."""
        version = self.current.get(user)
        for closure in self.escaped:
            if version is not None and self.closure_reads.get(closure, {}).get(user, (None, None))[1] == version:
                raise self.source.error(
                    self.origin, f"'{user}' is assigned again after a closure that reads it was stored (in a "
                                 "list, a dict, another name)", "adtrans cannot give the new value to the closure "
                                 "there: define "
                                 f"the closure after the last assignment to '{user}', or give the new value "
                                 "another name")

    def check_closure_read(self, node, name):
        """A closure is read (called, passed on) as `name`; returns the name to read instead.

        Python's closure reads a variable's value when it is called; the one made
        here reads the version it was made with. When the function has assigned
        such a variable since, the read gets ``rebound(g, ("k",), k_2)``: the same
        code with the current values.
        """
        reads = self.closure_reads.get(name)
        if not reads:
            return name
        if not self.calling:
            self.escaped.add(name)
        stale = [(free, self.current[user]) for user, (free, version) in reads.items()
                 if self.current.get(user) not in (None, version)]
        if not stale:
            return name
        names = gast.Tuple([gast.Constant(free, None) for free, _ in stale], gast.Load())
        call = gast.Call(_synthetic_callee("rebound", rebound),
                         [gast.Name(name, gast.Load(), None, None), names]
                         + [gast.Name(new, gast.Load(), None, None) for _, new in stale], [])
        fresh = self.hoist(_located(call, node), node, node.id)
        self.closure_reads[fresh.id] = {user: (free, self.current.get(user) or version)
                                        for user, (free, version) in reads.items()}
        return fresh.id

    def check_expression(self, expr):
        for node in gast.walk(expr):
            if isinstance(node, (gast.Yield, gast.YieldFrom, gast.Await, gast.NamedExpr)):
                raise self.source.error(node, f"{construct_name(node)} is not supported")


class _Renamer(gast.NodeTransformer):
    """Rewrites loads of locals to their SSA names, leaving names bound inside lambdas alone."""

    def __init__(self, current, locals_, check=None, checked=None):
        self.current = current
        self.locals = locals_
        self.shadowed = set()
        self.check = check      # check(node, ssa_name) for each local read
        self.checked = checked  # checked(node, ssa_name) for each local read at once, before `check`
        self.lazy = False       # in a part Python may not evaluate, or not now (a lambda's body)

    def visit_Name(self, node):
        if isinstance(node.ctx, gast.Load) and node.id not in self.shadowed and node.id in self.current:
            name = self.current[node.id]
            if self.checked is not None and not self.lazy:
                name = self.checked(node, name)
            node.id = self.check(node, name) if self.check is not None else name
        return node

    @contextlib.contextmanager
    def lazily(self):
        self.lazy, saved = True, self.lazy
        try:
            yield
        finally:
            self.lazy = saved

    def visit_BoolOp(self, node):
        node.values[0] = self.visit(node.values[0])
        with self.lazily():
            node.values[1:] = [self.visit(v) for v in node.values[1:]]
        return node

    def visit_IfExp(self, node):
        node.test = self.visit(node.test)
        with self.lazily():
            node.body, node.orelse = self.visit(node.body), self.visit(node.orelse)
        return node

    def visit_Lambda(self, node):
        saved = self.shadowed
        self.shadowed = saved | _parameters(node.args)
        with self.lazily():
            node.body = self.visit(node.body)
        self.shadowed = saved
        node.args.defaults = [self.visit(d) for d in node.args.defaults]
        return node

    def _comprehension(self, node):
        bound = set()
        for generator in node.generators:
            bound |= {n.id for n in gast.walk(generator.target) if isinstance(n, gast.Name)}
        saved = self.shadowed
        self.shadowed = saved | bound
        with self.lazily():
            self.generic_visit(node)
        self.shadowed = saved
        return node

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


_TRUTH_FUNCTIONS = {"isinstance", "issubclass", "hasattr", "callable", "bool", "all", "any"}


def _is_truth_value(expr):
    """Is `expr` a condition (comparisons, ``not``, ``isinstance``...), whose ``and``/``or`` make
    True or False and carry no derivative? Such an expression stays as written."""
    if isinstance(expr, gast.BoolOp):
        return all(_is_truth_value(v) for v in expr.values)
    if isinstance(expr, gast.Compare):
        return True
    if isinstance(expr, gast.UnaryOp) and isinstance(expr.op, gast.Not):
        return True
    if isinstance(expr, gast.Constant):
        return expr.value is None or isinstance(expr.value, bool)
    return (isinstance(expr, gast.Call) and isinstance(expr.func, gast.Name)
            and expr.func.id in _TRUTH_FUNCTIONS)


class _ComprehensionRenamer(gast.NodeTransformer):
    """A comprehension's own variables under their fresh names."""

    def __init__(self, renames):
        self.renames = renames

    def visit_Name(self, node):
        if node.id in self.renames:
            node.id = self.renames[node.id]
        return node


def _joined_closure_reads(branches, merged):
    """The closures' reads (see `Desugar.closure_reads`) after an ``if`` whose branches end as
    `branches` say, each (the closures' reads, variable -> version at the end of the branch);
    `merged` gives each variable's version after the join.

    A closure holding a variable's last version in its branch holds the join's copy of it, and
    so does a variable the join copies the closure into: after ``k = ...; def g(): ... k ...``
    in one branch, reading `g` needs no `rebound`, which would read a `k` the other branch may
    leave unassigned. Where the branches disagree, the value is stale on one path, and the next
    read rebinds the closure to the joined version.
    """
    seen = {}
    for reads, after in branches:
        aliased = {closure: {user: (free, merged[user] if after.get(user) == version else version)
                             for user, (free, version) in versions.items()} for closure, versions in reads.items()}
        for closure, versions in aliased.items():
            seen.setdefault(closure, []).append(versions)
        for user, version in after.items():
            if version in aliased and merged.get(user) != version:
                seen.setdefault(merged[user], []).append(aliased[version])
    joined = {}
    for closure, found in seen.items():
        joined[closure] = {}
        for user in dict.fromkeys(u for versions in found for u in versions):
            read = [versions[user] for versions in found if user in versions]
            if len(read) == len(found) and len(set(read)) == 1:
                joined[closure][user] = read[0]
            else:   # stale on some path: any version but the joined one
                joined[closure][user] = next((r for r in read if r[1] != merged.get(user)), read[0])
    return joined


def _located(new, old):
    return gast.copy_location(new, old)


def flatten(statements):
    """Every simple statement of a block and the blocks inside it, in order."""
    for stmt in statements:
        if isinstance(stmt, If):
            yield from flatten(stmt.body)
            yield from flatten(stmt.orelse)
        elif isinstance(stmt, Loop):
            yield from flatten(stmt.condition)
            yield from flatten(stmt.body)
        else:
            yield stmt


def loops(statements):
    """Every loop of a block and the blocks inside it, outer before inner."""
    out = []
    for stmt in statements:
        if isinstance(stmt, If):
            out += loops(stmt.body) + loops(stmt.orelse)
        elif isinstance(stmt, Loop):
            out += [stmt] + loops(stmt.condition) + loops(stmt.body)
    return out


def free_names(function):
    """The names a nested ``def`` or ``lambda`` reads but does not bind itself (its parameters, what
    it assigns, the parameters of functions inside it), in the order first read."""
    own = _parameters(function.args)
    body = function.body if isinstance(function.body, list) else [function.body]
    reads = []
    for stmt in body:
        for node in gast.walk(stmt):
            if isinstance(node, gast.Name):
                if isinstance(node.ctx, gast.Load):
                    reads.append(node.id)
                else:
                    own.add(node.id)
            elif isinstance(node, (gast.FunctionDef, gast.Lambda)):
                own |= _parameters(node.args)
                if isinstance(node, gast.FunctionDef):
                    own.add(node.name)
    return list(dict.fromkeys(n for n in reads if n not in own))


def _parameters(args):
    """The names a function's parameters bind."""
    return {a.id for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]
            if a is not None}


def _assigned_names(function):
    """The function's locals: its parameters and every name it assigns."""
    found = _parameters(function.args)
    for node in gast.walk(function):
        if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store):
            found.add(node.id)
        elif isinstance(node, gast.FunctionDef) and node is not function:
            found.add(node.name)
    return found


def _is_static(expr, locals_):
    """A value that does not depend on a local: a constant, a global, ``np.pi``, ``(0, 1)``."""
    if isinstance(expr, gast.Constant):
        return True
    if isinstance(expr, gast.Name):
        return expr.id not in locals_
    if isinstance(expr, gast.Attribute):
        return _is_static(expr.value, locals_)
    if isinstance(expr, (gast.Tuple, gast.List)):
        return isinstance(expr, gast.Tuple) and all(_is_static(e, locals_) for e in expr.elts)
    if isinstance(expr, gast.UnaryOp):
        return isinstance(expr.operand, gast.Constant)
    return False


def _is_operation(expr, locals_):
    """Does evaluating `expr` do something (rather than name or spell a value)?"""
    if isinstance(expr, gast.Name):
        return False
    return not _is_static(expr, locals_)


def _is_method(operation, locals_):
    return (isinstance(operation, gast.Call) and isinstance(operation.func, gast.Attribute)
            and not _is_static(operation.func, locals_))


_DICT_VIEWS = {"items": listed_items, "values": listed_values, "keys": listed_keys}
# Builtins that make iterators, run as the lists of their items where used as values.
_LISTED = {zip: zipped, enumerate: enumerated}
# Statements no differentiated function may hold: found in a nested one at once, in the user's file
# (its own transform would read the copy in the generated code).
_NEVER_IN_NESTED = tuple(t for t in (gast.Try, getattr(gast, "TryStar", None), gast.ClassDef, gast.Delete,
                                     gast.Import, gast.ImportFrom, gast.AsyncFunctionDef, gast.AsyncFor,
                                     gast.AsyncWith, getattr(gast, "Match", None)) if t is not None)

# Calls the desugaring writes itself carry the callee on the node, so no user name can capture them.
_SET_ITEM = "with_item"
_GROWING = {"append": ("appended", appended), "extend": ("extended", extended)}


def _synthetic_callee(name, callee):
    node = gast.Name(name, gast.Load(), None, None)
    node.synthetic_callee = callee
    return node


def _index_value(index):
    """An index as a value: ``x[1:2, None]`` reads ``(slice(1, 2, None), None)``."""
    if isinstance(index, gast.Slice):
        parts = [p if p is not None else gast.Constant(None, None)
                 for p in (index.lower, index.upper, index.step)]
        return gast.Call(gast.Name("slice", gast.Load(), None, None), parts, [])
    if isinstance(index, gast.Tuple):
        return gast.Tuple([_index_value(e) for e in index.elts], gast.Load())
    return index


def _is_call_to(expr, name):
    return isinstance(expr, gast.Call) and isinstance(expr.func, gast.Name) and expr.func.id == name


def _is_break_test(stmt):
    return (isinstance(stmt, gast.If) and len(stmt.body) == 1 and isinstance(stmt.body[0], gast.Break)
            and not stmt.orelse)


def _grows(call, locals_):
    """Is `call` ``xs.append(...)`` or ``xs.extend(...)`` on a name in `locals_`?"""
    return (isinstance(call, gast.Call) and isinstance(call.func, gast.Attribute)
            and call.func.attr in _GROWING and isinstance(call.func.value, gast.Name)
            and call.func.value.id in locals_)


def reads_outside(tree, inside):
    """Names `tree` reads outside the nodes whose ids are in `inside`, not counting a
    comprehension's or lambda's own variables (``[(W, b) for W, b in pairs]`` reads no `W`)."""
    reads = set()

    def visit(node, own, inside=frozenset(inside)):
        if id(node) in inside:
            return
        if isinstance(node, (gast.ListComp, gast.SetComp, gast.GeneratorExp, gast.DictComp)):
            visit(node.generators[0].iter, own)     # evaluated in the enclosing scope
            inside = inside | {id(node.generators[0].iter)}
            own = own | {n.id for g in node.generators for n in gast.walk(g.target) if isinstance(n, gast.Name)}
        elif isinstance(node, gast.Lambda):
            own = own | {a.id for a in gast.walk(node.args) if isinstance(a, gast.Name)}
        elif isinstance(node, gast.Name) and isinstance(node.ctx, gast.Load) and node.id not in own:
            reads.add(node.id)
        for child in gast.iter_child_nodes(node):
            visit(child, own, inside)

    visit(tree, frozenset())
    return reads


def _own_returns(statements):
    """The ``return`` statements of `statements`, not those of functions defined in them."""
    found = []

    def visit(node):
        if isinstance(node, gast.Return):
            found.append(node)
        elif not isinstance(node, (gast.FunctionDef, gast.AsyncFunctionDef, gast.Lambda)):
            for child in gast.iter_child_nodes(node):
                visit(child)

    for stmt in statements:
        visit(stmt)
    return found


def _in_loop(function, stmt):
    """Is `stmt` inside a loop of `function` (not counting nested functions)?"""
    def search(node, looping):
        if node is stmt:
            return looping
        if isinstance(node, (gast.FunctionDef, gast.AsyncFunctionDef, gast.Lambda)) and node is not function:
            return False
        looping = looping or isinstance(node, (gast.For, gast.While))
        return any(search(child, looping) for child in gast.iter_child_nodes(node))

    return search(function, False)


def _flow(statements):
    """(the names `statements` may read before assigning them, the names they assign on every path)."""
    exposed = set()

    def reads(node, defined):
        exposed.update(reads_outside(node, ()) - defined)

    def block(body, defined):
        defined = set(defined)
        for stmt in body:
            if isinstance(stmt, (gast.For, gast.AsyncFor)):
                reads(stmt.iter, defined)
                block(stmt.body, defined | set(_stored_in([stmt.target])))
                block(stmt.orelse, defined)
            elif isinstance(stmt, gast.While):
                reads(stmt.test, defined)
                block(stmt.body, defined)
                block(stmt.orelse, defined)
            elif isinstance(stmt, gast.If):
                reads(stmt.test, defined)
                then, otherwise = block(stmt.body, defined), block(stmt.orelse, defined)
                defined |= then & otherwise
            elif isinstance(stmt, (gast.With, gast.AsyncWith)):
                for item in stmt.items:
                    reads(item.context_expr, defined)
                defined = block(stmt.body, defined | set(_stored_in([i.optional_vars for i in stmt.items
                                                                      if i.optional_vars is not None])))
            elif isinstance(stmt, (gast.FunctionDef, gast.AsyncFunctionDef)):
                # Its defaults and decorators now, the names it reads of ours when it is called.
                for node in stmt.decorator_list + stmt.args.defaults + [d for d in stmt.args.kw_defaults if d]:
                    reads(node, defined)
                exposed.update(set(free_names(stmt)) - defined)
                defined.add(stmt.name)
            else:
                value = getattr(stmt, "value", None)
                if isinstance(stmt, (gast.Assign, gast.AnnAssign)) and value is not None:
                    reads(value, defined)       # then the targets' own reads (x[i] = v reads x, i)
                    for target in getattr(stmt, "targets", None) or [stmt.target]:
                        reads(target, defined)
                elif isinstance(stmt, gast.AugAssign):    # x += v reads x
                    reads(stmt, defined)
                    exposed.update(n.id for n in gast.walk(stmt.target) if isinstance(n, gast.Name)
                                   and n.id not in defined)
                else:
                    reads(stmt, defined)
                defined |= set(_stored_in([stmt]))
        return defined

    return exposed, block(statements, set())


def _assigned_in_block(statements, locals_, writable=frozenset()):
    """The names `statements` assign in their own scope, in first-assignment order: not a nested
    function's or a comprehension's own; a nested ``def``'s name, a local list `locals_` grows by
    ``xs.append(v)`` (see `Desugar.grow_list`) and a local of `writable` a call writes into
    (``np.add.at(y, i, v)``, ``out=y``) count."""
    names = []

    def visit(node):
        if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store):
            names.append(node.id)
        elif isinstance(node, (gast.Subscript, gast.Attribute)) and isinstance(node.ctx, gast.Store):
            root = root_name(node)
            if root is not None:
                names.append(root)      # x[i] = v, x.a = v and m[0][1] = v assign x, m (value semantics)
        elif isinstance(node, gast.Expr) and _grows(node.value, locals_):
            names.append(node.value.func.value.id)
        elif isinstance(node, gast.Call) and _written_root(node) in writable:
            names.append(_written_root(node))   # np.add.at(y, i, v), out=y: y = added_at(...)
        if isinstance(node, (gast.FunctionDef, gast.AsyncFunctionDef)):
            names.append(node.name)
            for child in node.decorator_list + node.args.defaults + node.args.kw_defaults:
                if child is not None:
                    visit(child)
            return
        if isinstance(node, gast.Lambda):
            return
        if isinstance(node, (gast.ListComp, gast.SetComp, gast.GeneratorExp, gast.DictComp)):
            return visit(node.generators[0].iter)
        for child in gast.iter_child_nodes(node):
            visit(child)

    for stmt in statements:
        visit(stmt)
    return list(dict.fromkeys(names))


def _stored_in(statements, locals_=(), writable=frozenset()):
    """Names assigned in `statements`, in first-assignment order (nested blocks included).

    A local list grown by ``xs.append(v)`` is assigned too (see `Desugar.grow_list`), and so is
    a local of `writable` a call writes into (``np.add.at(y, i, v)``, ``out=y``).
    """
    names = []
    for stmt in statements:
        for node in gast.walk(stmt):
            if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store) and node.id not in names:
                names.append(node.id)
            elif (isinstance(node, gast.Expr) and _grows(node.value, locals_)
                  and node.value.func.value.id not in names):
                names.append(node.value.func.value.id)
            elif (isinstance(node, gast.Call) and _written_root(node) in writable
                  and _written_root(node) not in names):
                names.append(_written_root(node))     # np.add.at(y, i, v), out=y: y = added_at(...)
            elif isinstance(node, (gast.Subscript, gast.Attribute)) and isinstance(
                    getattr(node, "ctx", None), gast.Store):
                root = root_name(node)
                if root is not None and root not in names:
                    names.append(root)
    return names


# Functions writing into their first argument that differentiated code runs by value
# (`Desugar.first_argument_changed`), by the attribute that calls them (np.add.at, np.copyto).
_WRITING_FIRST_ARGUMENT = {"at", "copyto", "fill_diagonal"}


def _written_root(call):
    """The variable a call writes into and differentiated code assigns anew (``np.add.at(y, i, v)``,
    ``np.copyto(y, x)``, ``np.exp(x, out=y)``, ``out=y[i]``), or None."""
    for keyword in call.keywords:
        if keyword.arg == "out":
            written = keyword.value
            if isinstance(written, gast.Tuple) and len(written.elts) == 1:
                written = written.elts[0]
            return root_name(written)
    if (isinstance(call.func, gast.Attribute) and call.func.attr in _WRITING_FIRST_ARGUMENT
            and call.args and isinstance(call.args[0], gast.Name)):
        return call.args[0].id
    return None


def root_name(node):
    """``x`` of ``x``, ``x[i]``, ``x.f[i]``, ``m[0][1]``: the variable assigning such a target gives
    a new value (value semantics); None for anything else."""
    while isinstance(node, (gast.Subscript, gast.Attribute)):
        node = node.value
    return node.id if isinstance(node, gast.Name) else None


def _static_value(expr, fn):
    """The value of a global or module-attribute expression in `fn`'s module, or None."""
    import builtins

    if isinstance(expr, gast.Name):
        if expr.id in fn.__globals__:
            return fn.__globals__[expr.id]
        return getattr(builtins, expr.id, None)
    if isinstance(expr, gast.Attribute):
        base = _static_value(expr.value, fn)
        return getattr(base, expr.attr, None) if base is not None else None
    return None


def _outlined_function(name, inputs, outputs, body, like, unbound=()):
    """``def name(inputs): body; return (outputs,)`` at the block's own lines; the names `unbound`
    (outputs the block may leave unassigned that had no value before it) start as None."""
    params = [gast.Name(n, gast.Param(), None, None) for n in inputs]
    arguments = gast.arguments(args=params, posonlyargs=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                               kwarg=None, defaults=[])
    result = gast.Tuple([gast.Name(n, gast.Load(), None, None) for n in outputs], gast.Load())
    if len(outputs) == 1:
        result = result.elts[0]
    ret = gast.copy_location(gast.Return(value=result), body[-1])
    start = [gast.copy_location(gast.Assign([gast.Name(n, gast.Store(), None, None)], gast.Constant(None, None),
                                            None), like) for n in unbound]
    function = gast.FunctionDef(name=name, args=arguments, body=start + clone(body) + [ret],
                                decorator_list=[], returns=None, type_comment=None, type_params=[])
    gast.copy_location(function, like)
    for node in gast.walk(function):
        for attr in ("lineno", "col_offset", "end_lineno", "end_col_offset"):
            if attr in getattr(node, "_attributes", ()) and not hasattr(node, attr):
                setattr(node, attr, getattr(like, attr, 0))
    return function


def _compile_outlined(function, source, growable):
    """A live function for an outlined block, in the user's module, at the user's lines.

    The block grows its parameters among `growable` (the caller's local lists) by value,
    as the caller's own code would (`Desugar.grow_list`): what it runs is ``ys =
    appended(ys, v)`` (`appended` read from a closure cell), so the list the caller
    keeps for the recomputation stays as it was; its derivative is made from the
    block as written, whose desugaring grows those parameters the same way.
    """
    import ast
    import types

    from adtrans.source import FunctionSource, synthetic_sources

    def compiled(tree):
        module = ast.Module(body=[gast.gast_to_ast(tree)], type_ignores=[])
        code = compile(ast.fix_missing_locations(module), source.fn.__code__.co_filename, "exec")
        return next(c for c in code.co_consts if isinstance(c, types.CodeType))

    described = types.FunctionType(compiled(function), source.fn.__globals__, function.name)
    namer = Namer(names_in(function))
    grower = _GrowingByValue(growable, {attr: namer.fresh(name) for attr, (name, _) in _GROWING.items()})
    running = clone(function)
    running.body = [grower.visit(stmt) for stmt in running.body]
    described._adtrans_grown = frozenset(grower.grown)
    fn = described
    if grower.grown:
        helpers = {grower.helpers[attr]: helper for attr, (_, helper) in _GROWING.items()}
        cells = [gast.Assign([gast.Name(n, gast.Store(), None, None)], gast.Constant(None, None), None)
                 for n in helpers]
        nothing = gast.arguments(args=[], posonlyargs=[], vararg=None, kwonlyargs=[], kw_defaults=[], kwarg=None,
                                 defaults=[])
        outer = gast.FunctionDef(name="outlined", args=nothing,
                                 body=cells + [running], decorator_list=[], returns=None, type_comment=None,
                                 type_params=[])
        gast.copy_location(outer, function)
        for node in cells:
            gast.copy_location(node, function)
        inner = next(c for c in compiled(outer).co_consts if isinstance(c, types.CodeType))
        closure = tuple(types.CellType(helpers[n]) for n in inner.co_freevars)
        fn = types.FunctionType(inner, source.fn.__globals__, function.name, None, closure)
    for f in {described, fn}:
        f._adtrans_outlined = True     # see reverse.Generated.lazy_params
    found = FunctionSource(described, function, source.filename, source.lines, False)
    synthetic_sources[described.__code__] = synthetic_sources[fn.__code__] = found
    return fn


class _GrowingByValue(gast.NodeTransformer):
    """``ys.append(v)`` as ``ys = appended(ys, v)`` (`helpers` names the function for each method)
    for the names in `growable`, outside nested functions; `grown` says which it changed."""

    def __init__(self, growable, helpers):
        self.growable = growable
        self.helpers = helpers
        self.grown = set()

    def visit_FunctionDef(self, node):
        return node

    def visit_Lambda(self, node):
        return node

    def visit_Expr(self, node):
        call = node.value
        if not (_grows(call, self.growable) and len(call.args) == 1 and not call.keywords
                and not isinstance(call.args[0], gast.Starred)):
            return node
        name = call.func.value.id
        self.grown.add(name)
        helper = gast.Name(self.helpers[call.func.attr], gast.Load(), None, None)
        grown = gast.Call(helper, [gast.Name(name, gast.Load(), None, None), call.args[0]], [])
        assign = gast.Assign([gast.Name(name, gast.Store(), None, None)], gast.copy_location(grown, call), None)
        return gast.copy_location(assign, node)
