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

import copy
from dataclasses import dataclass, field
from typing import List, Optional

import gast

from adtrans.naming import Namer, name_for


@dataclass
class Assign:
    """``target = value``: one operation on atoms."""

    target: str
    value: gast.expr
    node: gast.AST          # the user's expression, for error locations
    origin: gast.stmt       # the user's statement, for comments


@dataclass
class Unpack:
    """``a, b = source``: a tuple or list taken apart."""

    targets: List[Optional[str]]
    source: str
    node: gast.AST
    origin: gast.stmt


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
class Body:
    params: List[str]
    statements: list = field(default_factory=list)
    result: Optional[str] = None


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

    def __init__(self, source, namer: Namer):
        self.source = source
        self.namer = namer
        self.locals = _assigned_names(source.node)
        self.current = {}       # user variable -> its current SSA name
        self.out: list = []
        self.origin = None

    def run(self) -> Body:
        args = self.source.node.args
        if args.vararg is not None or args.kwarg is not None:
            bad = args.vararg or args.kwarg
            raise self.source.error(
                bad, "functions with '*args' or '**kwargs' parameters are not supported yet",
                "give the function named parameters, or register its derivative with "
                "@adtrans.derivative(of=...)")
        params = [a.id for a in args.posonlyargs + args.args + args.kwonlyargs]
        for p in params:
            self.current[p] = p
        body = Body(params)
        statements = self.source.node.body
        for i, stmt in enumerate(statements):
            self.origin = stmt
            if isinstance(stmt, gast.Return):
                if i != len(statements) - 1:
                    raise self.source.error(stmt, "an early 'return' is not supported yet",
                                            "return once, at the end of the function")
                value = stmt.value if stmt.value is not None else gast.Constant(None, None)
                result = self.atom(value, "result")
                self.out.append(Return(result, stmt))
                body.result = result.id if isinstance(result, gast.Name) else None
            else:
                self.statement(stmt)
        if not statements or not isinstance(statements[-1], gast.Return):
            self.out.append(Return(gast.Constant(None, None), self.origin))
        body.statements = self.out
        return body

    # -- statements

    def statement(self, stmt):
        if isinstance(stmt, gast.Assign):
            value = stmt.value
            first, *others = stmt.targets
            name = self.assign(first, value, stmt)
            for target in others:
                self.assign(target, gast.Name(name, gast.Load(), None, None), stmt)
        elif isinstance(stmt, gast.AnnAssign):
            if stmt.value is not None:
                self.assign(stmt.target, stmt.value, stmt)
        elif isinstance(stmt, gast.AugAssign):
            if not isinstance(stmt.target, gast.Name):
                raise self.unsupported_target(stmt.target)
            load = gast.Name(stmt.target.id, gast.Load(), None, None)
            value = gast.BinOp(load, stmt.op, stmt.value)
            gast.copy_location(value, stmt)
            self.assign(stmt.target, value, stmt)
        elif isinstance(stmt, gast.Expr):
            if isinstance(stmt.value, gast.Constant):
                return  # a docstring or a bare constant
            self.check_expression(stmt.value)
            self.out.append(Effect(self.renamed(stmt), stmt))
        elif isinstance(stmt, gast.Assert):
            self.check_expression(stmt.test)
            self.out.append(Effect(self.renamed(stmt), stmt))
        elif isinstance(stmt, gast.Pass):
            pass
        else:
            raise self.source.error(
                stmt, f"{construct_name(stmt)} is not supported yet",
                "this version of adtrans differentiates straight-line code; move the construct "
                "into a function with a registered derivative (@adtrans.derivative(of=...))")

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
            else:
                atom = self.renamed(value)
                name = self.new_version(target.id)
                self.out.append(Assign(name, atom, value, stmt))
            return name
        if isinstance(target, (gast.Tuple, gast.List)):
            self.check_expression(value)
            if (isinstance(value, (gast.Tuple, gast.List)) and len(value.elts) == len(target.elts)
                    and all(isinstance(t, gast.Name) for t in target.elts)):
                # "a, b = b, a": evaluate every element first, then bind each name.
                atoms = [self.atom(e) for e in value.elts]
                for t, atom, element in zip(target.elts, atoms, value.elts):
                    self.out.append(Assign(self.new_version(t.id), atom, element, stmt))
                return None
            source = self.atom(value, "values")
            if not isinstance(source, gast.Name):
                source = self.hoist(source, value, "values")
            return self.unpack(target, source.id, stmt)
        raise self.unsupported_target(target)

    def unpack(self, target, source, stmt):
        names = []
        nested = []
        for element in target.elts:
            if isinstance(element, gast.Name):
                names.append(element.id)
            elif isinstance(element, (gast.Tuple, gast.List)):
                names.append(None)
                nested.append((len(names) - 1, element))
            else:
                if isinstance(element, gast.Starred):
                    raise self.source.error(element, "starred assignment ('a, *rest = ...') is not "
                                            "supported yet", "unpack into a fixed number of names")
                raise self.unsupported_target(element)
        temps = {}
        for index, element in nested:
            temps[index] = self.namer.fresh(f"{source}_{index}")
        targets = [self.new_version(n) if n is not None else temps[i] for i, n in enumerate(names)]
        self.out.append(Unpack(targets, source, target, stmt))
        for index, element in nested:
            self.unpack(element, temps[index], stmt)
        return source

    def new_version(self, user_name):
        if user_name not in self.current:
            name = user_name     # the first version keeps the user's name
        else:
            name = self.namer.fresh(user_name)
        self.current[user_name] = name
        return name

    # -- expressions

    def atom(self, expr, hint=None):
        """An atom with the value of `expr`, hoisting the operation into a new statement."""
        if not _is_operation(expr, self.locals):
            return self.renamed(expr)
        return self.hoist(self.operation(expr), expr, hint)

    def hoist(self, operation, node, hint=None):
        name = self.namer.fresh(hint or name_for(operation, _is_method(operation, self.locals)))
        self.out.append(Assign(name, operation, node, self.origin))
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
            func = expr.func
            if _is_static(func, self.locals):
                func = self.renamed(func)
            elif isinstance(func, gast.Attribute):
                func = _located(gast.Attribute(self.atom(func.value), func.attr, gast.Load()), func)
            else:
                func = self.atom(func, "function")
            args = [self.argument(a) for a in expr.args]
            keywords = [gast.keyword(k.arg, self.argument(k.value)) for k in expr.keywords]
            return _located(gast.Call(func, args, keywords), expr)
        if isinstance(expr, gast.Attribute):
            return _located(gast.Attribute(self.atom(expr.value), expr.attr, gast.Load()), expr)
        if isinstance(expr, gast.Subscript):
            value = self.atom(expr.value)
            return _located(gast.Subscript(value, self.index(expr.slice), gast.Load()), expr)
        if isinstance(expr, (gast.Tuple, gast.List)):
            elts = [self.atom(e) for e in expr.elts]
            return _located(type(expr)(elts, gast.Load()), expr)
        if isinstance(expr, gast.Dict):
            keys = [self.atom(k) if k is not None else None for k in expr.keys]
            values = [self.atom(v) for v in expr.values]
            return _located(gast.Dict(keys, values), expr)
        if isinstance(expr, gast.Compare):
            left = self.atom(expr.left)
            return _located(gast.Compare(left, expr.ops, [self.atom(c) for c in expr.comparators]), expr)
        return self.renamed(expr)

    def argument(self, expr):
        if isinstance(expr, (gast.Tuple, gast.List)) and _is_operation(expr, self.locals):
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
        tree = copy.deepcopy(tree)
        _Renamer(self.current, self.locals).visit(tree)
        return tree

    def check_expression(self, expr):
        for node in gast.walk(expr):
            if isinstance(node, (gast.Yield, gast.YieldFrom, gast.Await, gast.NamedExpr)):
                raise self.source.error(node, f"{construct_name(node)} is not supported")
            if isinstance(node, gast.Starred):
                raise self.source.error(node, "starred arguments ('f(*args)') are not supported yet",
                                        "pass the arguments one by one")
            if isinstance(node, gast.keyword) and node.arg is None:
                raise self.source.error(node.value, "'**kwargs' arguments are not supported yet",
                                        "pass keyword arguments by name")


class _Renamer(gast.NodeTransformer):
    """Rewrites loads of locals to their SSA names, leaving names bound inside lambdas alone."""

    def __init__(self, current, locals_):
        self.current = current
        self.locals = locals_
        self.shadowed = set()

    def visit_Name(self, node):
        if isinstance(node.ctx, gast.Load) and node.id not in self.shadowed and node.id in self.current:
            node.id = self.current[node.id]
        return node

    def visit_Lambda(self, node):
        bound = {a.id for a in node.args.args + node.args.posonlyargs + node.args.kwonlyargs}
        saved = self.shadowed
        self.shadowed = saved | bound
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
        self.generic_visit(node)
        self.shadowed = saved
        return node

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def _located(new, old):
    return gast.copy_location(new, old)


def _assigned_names(function):
    """The function's locals: its parameters and every name it assigns."""
    found = set()
    args = function.args
    for a in args.posonlyargs + args.args + args.kwonlyargs:
        found.add(a.id)
    for node in gast.walk(function):
        if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store):
            found.add(node.id)
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
