"""Structuring jumps: ``break``, ``continue`` and early ``return`` become flags.

The reverse transform replays a function's control flow backwards, which is
easy for ``if`` and for loops that run their body to the end, and hard for
jumps out of the middle of a block.  This pass (gast to gast, before
desugaring) rewrites every jump into an assignment to a flag, and guards the
statements a jump would skip with ``if not flag:``.  Guarantees to the next
pass:

- the only ``return`` is the function's last statement;
- the only ``break`` is a loop body's last statement, as ``if flag: break``;
- there is no ``continue``.

Flags are ordinary booleans, so later passes treat them like user code.
"""

import gast

from adtrans.errors import DifferentiationError


def _name(id_, ctx=None):
    return gast.Name(id_, ctx or gast.Load(), None, None)


def _assign(name, value, like):
    node = gast.Assign(targets=[_name(name, gast.Store())], value=value, type_comment=None)
    return gast.copy_location(node, like)


def _true():
    return gast.Constant(True, None)


def _false():
    return gast.Constant(False, None)


class _Loop:
    def __init__(self):
        self.broke = None      # flag names, made when first needed
        self.skipped = None


class StructureJumps:
    def __init__(self, source, namer):
        self.source = source
        self.namer = namer
        self.returned = None
        self.result = None
        self.flags = set()      # every flag made: booleans, never differentiated

    def run(self, function):
        body = function.body
        returns = [n for n in gast.walk(function) if isinstance(n, gast.Return)]
        nested = {id(n) for inner in gast.walk(function) if inner is not function and isinstance(
            inner, (gast.FunctionDef, gast.Lambda)) for n in gast.walk(inner) if isinstance(n, gast.Return)}
        returns = [r for r in returns if id(r) not in nested]
        early = [r for r in returns if not (body and r is body[-1])]
        if early:
            self.returned = self.namer.fresh("returned")
            self.flags.add(self.returned)
            self.result = self.namer.fresh("result")
            first = body[0]
            prologue = [_assign(self.returned, _false(), first),
                        _assign(self.result, gast.Constant(None, None), first)]
            new_body, _ = self.block(body, None)
            final = gast.copy_location(gast.Return(value=_name(self.result)), body[-1])
            function.body = prologue + new_body + [final]
        else:
            new_body, _ = self.block(body, None)
            function.body = new_body
        return function

    # -- blocks

    def block(self, statements, loop):
        """(new statements, whether a jump may happen in them)."""
        out = []
        for i, stmt in enumerate(statements):
            new, jumps = self.statement(stmt, loop)
            out.extend(new)
            if jumps == "always":
                return out, True
            if jumps:
                rest, _ = self.block(statements[i + 1:], loop)
                if rest:
                    test = self.keep_going(loop, stmt)
                    out.append(gast.copy_location(gast.If(test=test, body=rest, orelse=[]), statements[i + 1]))
                return out, True
        return out, False

    def keep_going(self, loop, like):
        flags = []
        if loop is not None:
            flags += [f for f in (loop.skipped, loop.broke) if f]
        if self.returned:
            flags.append(self.returned)
        if len(flags) == 1:
            test = gast.UnaryOp(gast.Not(), _name(flags[0]))
        else:
            test = gast.UnaryOp(gast.Not(), gast.BoolOp(gast.Or(), [_name(f) for f in flags]))
        return gast.copy_location(test, like)

    def statement(self, stmt, loop):
        if isinstance(stmt, gast.Break):
            self.require_loop(stmt, loop)
            if loop.broke is None:
                loop.broke = self.namer.fresh("broke")
                self.flags.add(loop.broke)
            return [_assign(loop.broke, _true(), stmt)], "always"
        if isinstance(stmt, gast.Continue):
            self.require_loop(stmt, loop)
            if loop.skipped is None:
                loop.skipped = self.namer.fresh("skipped")
                self.flags.add(loop.skipped)
            return [_assign(loop.skipped, _true(), stmt)], "always"
        if isinstance(stmt, gast.Return):
            if self.returned is None:
                return [stmt], False   # the function's final return
            value = stmt.value if stmt.value is not None else gast.Constant(None, None)
            return [_assign(self.result, value, stmt), _assign(self.returned, _true(), stmt)], "always"
        if isinstance(stmt, gast.If):
            body, jump_body = self.block(stmt.body, loop)
            orelse, jump_else = self.block(stmt.orelse, loop)
            if not body:
                body = [gast.copy_location(gast.Pass(), stmt)]
            stmt.body, stmt.orelse = body, orelse
            return [stmt], jump_body or jump_else
        if isinstance(stmt, gast.With):
            body, jumps = self.block(stmt.body, loop)
            stmt.body = body or [gast.copy_location(gast.Pass(), stmt)]
            return [stmt], jumps
        if isinstance(stmt, (gast.For, gast.While)):
            return self.loop(stmt)
        return [stmt], False

    def loop(self, stmt):
        if stmt.orelse:
            raise self.source.error(stmt.orelse[0], "a loop's 'else' block is not supported",
                                    "use a flag set before 'break' instead")
        inner = _Loop()
        body, _ = self.block(stmt.body, inner)
        exits = [f for f in (inner.broke, self.returned) if f]
        if inner.skipped:
            body.insert(0, _assign(inner.skipped, _false(), stmt.body[0]))
        if exits:
            test = _name(exits[0]) if len(exits) == 1 else gast.BoolOp(gast.Or(), [_name(f) for f in exits])
            gast.copy_location(test, stmt)
            body.append(gast.copy_location(gast.If(test=test, body=[gast.Break()], orelse=[]), stmt))
        stmt.body = body
        before = [_assign(inner.broke, _false(), stmt)] if inner.broke else []
        may_return = self.returned is not None and _sets(stmt, self.returned)
        return before + [stmt], may_return

    def require_loop(self, stmt, loop):
        if loop is None:
            raise DifferentiationError(f"'{type(stmt).__name__.lower()}' outside a loop",
                                       self.source.location(stmt))


def _sets(tree, flag):
    return any(isinstance(n, gast.Name) and n.id == flag and isinstance(n.ctx, gast.Store)
               for n in gast.walk(tree))
