"""Release a pullback's dead values inside its loops: a pass over the generated pullback.

A local of Python code lives until it is rebound or its function returns.
In a pullback loop that means one pass's cotangents and replayed values sit
beside the next pass's until each name happens to be assigned again: for a
deep chain, a few arrays of the width of the network more at the peak.  This
pass writes ``del`` where such a value dies:

- inside a loop, after the statement that last reads a value (before the
  next statement that may allocate, several names in one ``del``);
- before a loop, for values the loop and what follows never read.

Straight-line code outside loops is left as it is: its names are bounded in
number and it reads better without.  What may be released is the caller's
choice (`candidates`): cotangents and the forward's varied values, not a
loop index or a weight matrix held elsewhere anyway.  Names that are copies of
each other (``d_h_2 = d_h_1``) hold one value, released together once all
are dead.  A value that is last passed to one of `keeps` (``add_item``, which
stores it in a list) lives on there: deleting the name would free nothing.

A value last passed to a generated pullback (`hands`) would live through that
call all the same: the caller's local holds it while the callee runs.  There
the pass writes ``d = hand_over(d)`` before the call (`tangents.hand_over`),
in straight-line code too, so the callee's ``del`` frees it.  Given `take`,
the pullback's own parameter starts with ``d = take_over(d)``, making it a
value this pass releases, when that frees it before the pullback returns.

The pass only reads the code's structure; a pullback with constructs it does
not model (``while``, ``break``, ``try``, a nested ``def``) is left alone.
"""

import ast

_SIMPLE = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Pass)
_COMPOUND = (ast.For, ast.If)


def release_dead(lines, parameter, candidates, keeps=frozenset(), hands=None, take=None):
    """`lines` (a pullback's body, unindented) with ``del`` statements for dead values.

    `parameter` is the pullback's parameter; `candidates(name)` says whether a
    local may hold a value worth releasing; `keeps` names helpers that store
    their last argument.  `hands` is ``(hand_over, callees)``: the name of
    `tangents.hand_over` and of the generated pullbacks that take a cotangent
    over (called ``callee(d)`` or ``callee(...)[1](d)``).  `take` is the name
    of `tangents.take_over`, if the parameter may come handed over.
    """
    text = "\n".join("    " + line if line else line for line in lines)
    try:
        tree = ast.parse(f"def pullback({parameter}):\n{text}\n")
    except SyntaxError:
        return lines
    body = tree.body[0].body
    if not _supported(body):
        return lines
    local = {parameter} | _stores(body)
    wanted = {name for name in local if candidates(name)}
    if take is not None:
        taking = [f"{parameter} = {take}({parameter})"] + lines
        out = _with_releases(taking, ast.parse(f"def pullback({parameter}):\n    {taking[0]}\n{text}\n"),
                        wanted | {parameter}, keeps, hands)
        if out is not None and out[1]:
            return out[0]
    if not wanted:
        return lines
    out = _with_releases(lines, tree, wanted, keeps, hands)
    return lines if out is None else out[0]


def _with_releases(lines, tree, wanted, keeps, hands):
    """(the lines with ``del``s and hand-overs, whether the parameter is released); None: no change."""
    parameter = tree.body[0].args.args[0].arg
    inserts = {}          # (where, line number (1-based, in `text`)) -> [(indent, names)]
    handed = {}           # line number -> (indent, name)
    _Releaser(wanted, keeps, hands, inserts, handed).block(tree.body[0].body, set(), None)
    if not inserts and not handed:
        return None
    before, after, just_before = {}, {}, {}
    for (where, number), dels in inserts.items():
        index = number - 2                                  # line 1 is the def
        if where == "before":
            while index > 0 and lines[index - 1].lstrip().startswith("#"):
                index -= 1                                  # above the statement's source comment
            before.setdefault(index, []).extend(dels)
        else:
            after.setdefault(index, []).extend(dels)
    for number, (indent, name) in handed.items():
        just_before[number - 2] = " " * (indent - 4) + f"{name} = {hands[0]}({name})"
    out = []
    for index, line in enumerate(lines):
        out.extend(_del_lines(before.get(index, ())))
        if index in just_before:
            out.append(just_before[index])
        out.append(line)
        out.extend(_del_lines(after.get(index, ())))
    released = any(parameter in names for dels in inserts.values() for _, names in dels)
    return out, released or any(name == parameter for _, name in handed.values())


def _del_lines(dels):
    return [" " * (indent - 4) + "del " + ", ".join(names) for indent, names in dels]


def _supported(statements):
    for stmt in statements:
        if isinstance(stmt, ast.For):
            if stmt.orelse or not _supported(stmt.body):
                return False
        elif isinstance(stmt, ast.If):
            if not (_supported(stmt.body) and _supported(stmt.orelse)):
                return False
        elif not isinstance(stmt, _SIMPLE + (ast.Return,)):
            return False
        if any(isinstance(n, (ast.Lambda, ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await,
                              ast.Global, ast.Nonlocal, ast.FunctionDef, ast.ClassDef))
               for n in ast.walk(stmt)):
            return False
    return True


def _stores(statements):
    return {n.id for stmt in statements for n in ast.walk(stmt)
            if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}


def _loads(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _uses(stmt):
    """Names a simple statement reads (an augmented assignment reads its target too)."""
    if isinstance(stmt, ast.AugAssign):
        return _loads(stmt.value) | _loads(stmt.target) | _stores([stmt.target])
    return _loads(stmt)


def _defs(stmt):
    if isinstance(stmt, ast.For):
        return _stores([stmt.target])
    if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
        return _stores([stmt])
    return set()


def _live_in(statements, live_out):
    """The names live before `statements`, given those live after."""
    live = set(live_out)
    for stmt in reversed(statements):
        live = _live_before(stmt, live)
    return live


def _live_before(stmt, live):
    if isinstance(stmt, ast.Return):
        return _loads(stmt)
    if isinstance(stmt, ast.If):
        return _loads(stmt.test) | _live_in(stmt.body, live) | _live_in(stmt.orelse, live)
    if isinstance(stmt, ast.For):
        return _loads(stmt.iter) | _loop_head(stmt, live)
    return (live - _defs(stmt)) | _uses(stmt)


def _loop_head(loop, live_out):
    """What is live where each pass starts: after the loop, or in the next pass."""
    head = set(live_out)
    while True:
        new = set(live_out) | (_live_in(loop.body, head) - _stores([loop.target]))
        if new == head:
            return head
        head = new


def _may_allocate(stmt, keeps):
    """Can running `stmt` make a new array (a call or an operator, other than a `keeps` helper)?"""
    value = getattr(stmt, "value", None)
    if value is None:
        return False
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in keeps:
        return False
    return any(isinstance(n, (ast.Call, ast.BinOp, ast.UnaryOp)) for n in ast.walk(value))


def _kept_by(stmt, keeps):
    """Names `stmt` hands to a helper that stores them (``add_item(d, i, part)``: part)."""
    value = getattr(stmt, "value", None)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in keeps:
        return {a.id for a in value.args[1:] if isinstance(a, ast.Name)}
    return set()


def _passed_to(stmt, callees):
    """The name `stmt` passes alone to a pullback in `callees`, reading it nowhere else; or None."""
    if not callees or not isinstance(stmt, (ast.Assign, ast.AugAssign, ast.Expr)):
        return None
    found = []
    for node in ast.walk(stmt):
        if (isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords
                and isinstance(node.args[0], ast.Name) and _is_pullback(node.func, callees)):
            found.append(node.args[0].id)
    if len(found) != 1:
        return None
    reads = [n for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id == found[0]
             and isinstance(n.ctx, ast.Load)]
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == found[0]:
        return None         # ``d += pullback(d)`` reads the value again
    return found[0] if len(reads) == 1 else None


def _is_pullback(func, callees):
    """``callee`` or ``callee(...)[1]``, for a `callee` in `callees`."""
    if isinstance(func, ast.Name):
        return func.id in callees
    if isinstance(func, ast.Subscript) and isinstance(func.value, ast.Call):
        index = func.slice.value if type(func.slice).__name__ == "Index" else func.slice   # 3.8
        inner = func.value.func
        return (isinstance(index, ast.Constant) and index.value == 1 and isinstance(inner, ast.Name)
                and inner.id in callees)
    return False


class _Releaser:
    """Finds where each released name dies and where its ``del`` goes."""

    def __init__(self, wanted, keeps, hands, inserts, handed):
        self.wanted = wanted
        self.keeps = keeps
        self.callees = hands[1] if hands else frozenset()
        self.inserts = inserts
        self.handed = handed

    def block(self, statements, live_out, loop):
        """Plan the ``del``s of one block; `loop` is the innermost enclosing ``for`` or None."""
        after = [None] * len(statements)
        live = set(live_out)
        for i in range(len(statements) - 1, -1, -1):
            after[i] = live
            live = _live_before(statements[i], live)
        bound = set()         # names certainly bound here: read or written by a simple statement
        aliases = {}          # name -> the set of names holding the same value (copies)
        pending = []          # dead names whose del waits for the next allocating statement
        for i, stmt in enumerate(statements):
            if isinstance(stmt, _COMPOUND):
                self.flush(pending, stmt, "before")
                if isinstance(stmt, ast.For):
                    before = _live_before(stmt, after[i])
                    dead = sorted(n for n in bound if n not in before)
                    self.add(stmt, "before", dead)
                    bound -= set(dead)
                    self.block(stmt.body, _loop_head(stmt, after[i]), stmt)
                else:
                    self.block(stmt.body, after[i], loop)
                    self.block(stmt.orelse, after[i], loop)
                bound -= _loads(stmt) | _stores([stmt])     # it may have released them
                aliases = {}
                continue
            if isinstance(stmt, ast.Return):
                break
            if pending and _may_allocate(stmt, self.keeps):
                self.flush(pending, stmt, "before")
            for name in _defs(stmt):
                if name in pending:
                    pending.remove(name)    # rebinding it releases the old value
                for other in aliases.pop(name, {name}) - {name}:
                    aliases[other].discard(name)
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.Name)):
                group = aliases.setdefault(stmt.value.id, {stmt.value.id})
                group.add(stmt.targets[0].id)
                aliases[stmt.targets[0].id] = group
            touched = (_uses(stmt) | _defs(stmt)) & self.wanted
            bound |= touched
            name = _passed_to(stmt, self.callees)
            if name in self.wanted:
                group = aliases.get(name, {name})
                if group <= self.wanted and not (group & after[i]) - _defs(stmt):
                    # The value's last use: hand it over with the only reference left.
                    self.add(stmt, "before", sorted(group & bound - {name} - set(pending)))
                    self.handed[stmt.lineno] = (stmt.col_offset, name)
                    bound = (bound - group) | (_defs(stmt) & self.wanted)
                    touched -= group
            if loop is None:
                continue
            kept = _kept_by(stmt, self.keeps)
            for name in sorted(touched - after[i]):
                group = aliases.get(name, {name})
                if any(other in after[i] for other in group):
                    continue        # a copy still needs the value: released with it
                bound -= group
                if name in kept or name in pending:
                    continue
                pending.extend(sorted(n for n in group & self.wanted if n not in pending))
        if loop is not None and pending:
            # What the next pass rebinds before it allocates is released then anyway; not the
            # loop's own target, which the last pass leaves bound after the loop.
            rebound = set()
            for stmt in statements:
                if isinstance(stmt, _COMPOUND) or _may_allocate(stmt, self.keeps):
                    break
                rebound |= _defs(stmt)
            self.add(statements[-1], "after", [name for name in pending if name not in rebound])

    def flush(self, pending, stmt, where):
        if pending:
            self.add(stmt, where, list(pending))
            pending.clear()

    def add(self, stmt, where, names):
        if not names:
            return
        line = stmt.lineno if where == "before" else stmt.end_lineno
        self.inserts.setdefault((where, line), []).append((stmt.col_offset, names))
