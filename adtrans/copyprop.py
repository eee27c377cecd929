"""Copy propagation: the generated code without its alias copies.

The reverse transform writes every join and hand-over as a plain copy
``a = b``: an ``if``'s branches copy into the joined name, a loop copies into
its headers and out to its exits, a pullback copies a cotangent into the
adjoint of the name it came from.  Each copy costs a store and a load per
pass, and the reader has to follow a chain of names (``d_x0 = d_x``,
``d_x = d_x_1``) to see what a value is.  This pass, run on the finished
text of one generated function, removes those copies where it can prove the
program means the same without them:

* **Propagation.** A copy ``a = b`` is removed when every read it reaches
  can read ``b`` instead: that read is reached by no other binding of ``a``,
  and ``b`` is not re-bound in between.  Loops are analysed to a fixed point
  (a copy before a loop reaches into it only when neither name is re-bound
  anywhere in the loop), ``if`` branches meet, ``break`` and ``continue``
  carry their state to the loop's exit and head.
* **Redundant copies.** ``a = b`` where ``a`` already holds ``b`` (the loop
  header copy ``d_v_1 = d_v_2`` right after ``d_v_2 = d_v_1``) is dropped.
* **Coalescing.** ``b = expr`` followed by ``a = b``, where that copy is
  ``b``'s only use, becomes ``a = expr``: the value gets the later name
  (``skipped_2 = True`` instead of ``skipped_1 = True; skipped_2 = skipped_1``),
  when nothing between the two statements mentions ``a``.
* **Names the user reads** (`keep`, the gradients the pullback returns) are
  never propagated away: ``d_x0 = d_x_1`` stays, and a temporary whose only
  use is to be copied into ``d_x0`` is renamed ``d_x0`` instead.

Closures: the pullback is a nested ``def`` reading forward names when it
runs, i.e. their *final* values.  A read of ``a`` inside a nested function
becomes ``b`` only when the copy is a top-level statement (not in a loop or
branch), is ``a``'s only binding, comes before the nested ``def``, and
nothing re-binds ``b`` after it -- nor does the nested function bind ``b``
itself (a replay loop's targets are locals of the pullback).

Only *names* change: every object the code makes is the same object, bound
at the same moment, so in-place accumulation (``add_item`` into an owned
cotangent, ``+=``) touches exactly the buffers it touched before -- no buffer
becomes shared that was not shared already.  An augmented assignment reading
a copy keeps the copy.

Names declared ``global``/``nonlocal``, bound by ``:=`` or ``del``, or read
in a lambda, comprehension, class body, ``try`` or ``with`` block are left
alone.  The pass edits the text in place at the positions ``ast`` reports
(only whole copy lines are removed, and names rewritten), so formatting and
the ``# file.py:LINE: source`` comments are kept; a comment whose
statements are all gone goes too.
"""

import ast
import re
import sys
from typing import NamedTuple, Optional

__all__ = ["comments_still_used", "propagate_copies"]

_UNBOUND = "<unbound>"     # a "binding" at function entry: the local has no value yet
_PARAM = "<parameter>"

_OPAQUE = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.ClassDef,
           ast.Try, ast.With, ast.AsyncWith, ast.AsyncFor, ast.AsyncFunctionDef, ast.Global,
           ast.Nonlocal, ast.Delete, ast.NamedExpr)
if sys.version_info < (3, 9):
    # Python 3.8 reports wrong columns for names inside f-strings: the text edits would land elsewhere.
    _OPAQUE += (ast.JoinedStr,)
_FUNCTIONS = (ast.FunctionDef,)
_JUMPS = (ast.Break, ast.Continue, ast.Return, ast.Raise)
_COPY_LINE = re.compile(r"^[ \t]*\w+ = \w+[ \t]*$", re.MULTILINE)    # a line that may be a copy


def propagate_copies(text, keep=(), generated=()):
    """`text` (one generated function) with its removable copies removed; see the module docstring.

    `keep` names values the reader looks for (the gradients returned);
    `generated` names the nested functions the generator wrote (the
    pullback).  Those are optimised too and may read a copy's source; any
    other nested function is the user's, shown as written: its reads pin
    the names it reads.
    """
    if not _COPY_LINE.search(text):
        return text
    tree = ast.parse(text)
    edits = _Edits(text)
    functions, pinned = _analyse(tree)
    generated = frozenset(generated)
    for node in tree.body:
        if isinstance(node, _FUNCTIONS):
            _optimise_function(functions[id(node)], functions, pinned, frozenset(keep), generated, edits)
    return edits.apply()


def _optimise_function(function, functions, pinned, keep, generated, edits):
    for nested in function.nested:        # inner scopes first: they may drop reads of outer names
        if nested.name in generated:
            _optimise_function(functions[id(nested)], functions, pinned, keep, generated, edits)
    _Scope(function, functions, pinned, keep, generated, edits).run()


# -- the scope and its facts

class _Scope:
    """One function's body: its locals, what nested functions read of them, and the rewriting."""

    def __init__(self, facts, functions, pinned, keep, generated, edits):
        self.function = facts.node
        self.generated = generated
        self.facts = facts
        self.functions = functions
        self.keep = keep
        self.edits = edits
        self.params = _parameters(self.function)
        self.pinned = pinned
        self.locals = facts.locals
        self._names = {}
        self._else_blocks = None

    def reads(self, node):
        """The reads of this scope's locals in an expression (cached: the pass renames, never reshapes)."""
        cached = self._names.get(id(node))
        if cached is None or cached[0] is not node:
            names = [n for n in ast.walk(node)
                     if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in self.locals]
            cached = self._names[id(node)] = (node, names)
        return cached[1]

    def run(self):
        while self.step():
            pass

    def step(self):
        """One analysis, then every change it allows that no other change in the round affects."""
        flow = _Flow(self)
        flow.run()
        closure = self.closure_reads()
        # A redundant copy was analysed as the no-op it is, so removing it changes no other finding.
        redundant = [(stmt, block) for stmt, block in flow.copies
                     if flow.redundant.get(id(stmt)) and self.deletable(stmt)]
        touched = {name for stmt, _ in redundant for name in (stmt.targets[0].id, stmt.value.id)}
        picked = []
        for stmt, block in flow.copies:
            if flow.redundant.get(id(stmt)):
                continue
            a, b = stmt.targets[0].id, stmt.value.id
            if any(a == p[1] or b == p[0] for p in picked):
                continue       # its names take part in a copy already removed in this round
            uses = self.propagatable(stmt, block, flow, closure)
            if uses is not None:
                picked.append((a, b, stmt, block, uses))
        for stmt, block in redundant:
            self.delete(stmt, block)
        for a, b, stmt, block, uses in picked:
            for node in uses:
                node.id = b
                self.edits.rename(node, b)
            self.delete(stmt, block)
            touched.update((a, b))
        changed = bool(redundant or picked)
        for stmt, block in flow.copies:
            names = {stmt.targets[0].id, stmt.value.id}
            if any(s is stmt for s in block) and not names & touched and self.coalesce(stmt, block, flow, closure):
                touched |= names
                changed = True
        return changed

    # -- propagation

    def propagatable(self, copy, block, flow, closure):
        """The reads of the copy's target to rewrite, or None when the copy must stay."""
        a, b = copy.targets[0].id, copy.value.id
        if a == b or a in self.pinned or b in self.pinned or a in self.keep or b not in self.locals:
            return None
        if not self.deletable(copy) or a in closure.deep:
            return None
        uses = []
        for use in flow.uses_of(a):
            if id(copy) not in use.reach:
                continue
            if use.reach != {id(copy)} or use.source != b or not use.rewritable:
                return None
            uses.append(use.node)
        reads = closure.reads.get(a, [])
        if reads:
            if not self.final_alias(copy, block, flow, b):
                return None
            for function, node in reads:
                if function.lineno <= copy.lineno or b in self.functions[id(function)].locals:
                    return None
                uses.append(node)
        return uses

    def final_alias(self, copy, block, flow, b):
        """Once `copy` has run, do its names hold the same value until the function returns?"""
        a = copy.targets[0].id
        if block is not self.function.body or a in self.params or flow.defs.get(a) != {id(copy)}:
            return False
        return all(line < copy.lineno for line in flow.def_lines.get(b, ()))

    # -- coalescing

    def coalesce(self, copy, block, flow, closure):
        """``b = expr; ...; a = b`` with that the only use of b: bind `a` there and drop the copy."""
        a, b = copy.targets[0].id, copy.value.id
        if a == b or a in self.pinned or b in self.pinned or b in self.keep or b in self.params:
            return False
        if b not in self.locals or not self.deletable(copy) or b in closure.reads or b in closure.deep:
            return False
        defs = flow.defs.get(b, set())
        if len(defs) != 1 or len(flow.uses_of(b)) != 1 or flow.uses_of(b)[0].node is not copy.value:
            return False
        position = _index(block, copy)
        definition = next((s for s in block[:position] if id(s) in defs), None)
        if not (isinstance(definition, ast.Assign) and len(definition.targets) == 1
                and isinstance(definition.targets[0], ast.Name)):
            return False
        between = block[_index(block, definition) + 1:position]
        for stmt in between:
            for node in ast.walk(stmt):
                if isinstance(node, _JUMPS) or (isinstance(node, ast.Name) and node.id == a):
                    return False
        readers = [f for f, _ in closure.reads.get(a, [])] + closure.deep_functions.get(a, [])
        if readers and (block is not self.function.body or any(f.lineno <= copy.lineno for f in readers)):
            return False
        target = definition.targets[0]
        target.id = a
        self.edits.rename(target, a)
        self.delete(copy, block)
        return True

    # -- facts and edits

    def closure_reads(self):
        """What the nested functions read of this scope's locals (directly, or deeper down)."""
        facts = _ClosureReads()
        for function in self.facts.nested:
            nested = self.functions[id(function)]
            ours = function.name in self.generated
            for node in nested.names:
                if isinstance(node.ctx, ast.Load) and node.id in self.locals and node.id not in nested.locals:
                    if ours:
                        facts.reads.setdefault(node.id, []).append((function, node))
                    else:
                        facts.deep.add(node.id)
                        facts.deep_functions.setdefault(node.id, []).append(function)
            inner = list(nested.nested)
            while inner:
                deeper = self.functions[id(inner.pop())]
                inner.extend(deeper.nested)
                for node in deeper.names:
                    if node.id in self.locals and node.id not in nested.locals:
                        facts.deep.add(node.id)
                        facts.deep_functions.setdefault(node.id, []).append(function)
        return facts

    def deletable(self, stmt):
        return self.edits.whole_line(stmt)

    def delete(self, stmt, block):
        position = _index(block, stmt)
        del block[position]
        if block:
            self.edits.delete(stmt)
        elif self.is_else(block) and self.edits.delete_else(stmt):
            pass                                  # the ``else:`` went with its last statement
        else:
            self.edits.delete(stmt, replace_by_pass=True)
            block.append(ast.Pass())

    def is_else(self, block):
        if self._else_blocks is None:
            self._else_blocks = {id(node.orelse) for node in ast.walk(self.function)
                                 if isinstance(node, ast.If)}
        return id(block) in self._else_blocks


class _ClosureReads:
    def __init__(self):
        self.reads = {}            # name -> [(nested function, Name node read directly in it)]
        self.deep = set()          # names read where they must not be renamed (the user's functions, or deeper)
        self.deep_functions = {}   # name -> [the directly nested function holding such a read]


class _Use(NamedTuple):
    node: ast.Name
    reach: frozenset            # ids of the bindings that may reach this read
    source: Optional[str]       # the name it is known to equal through a copy, or None
    rewritable: bool


# -- the data flow: reaching bindings and available copies, to a fixed point over loops

class _State:
    __slots__ = ("reach", "avail")

    def __init__(self, reach, avail):
        self.reach = reach          # local -> frozenset of binding ids
        self.avail = avail          # a -> b: a copy ``a = b`` holds here

    def copy(self):
        return _State(dict(self.reach), dict(self.avail))

    def __eq__(self, other):
        return isinstance(other, _State) and self.reach == other.reach and self.avail == other.avail

    def bind(self, name, binding):
        self.reach[name] = frozenset([binding])
        self.avail.pop(name, None)
        for key in [k for k, v in self.avail.items() if v == name]:
            del self.avail[key]

    def root(self, name):
        seen = set()
        while name in self.avail and name not in seen:
            seen.add(name)
            name = self.avail[name]
        return name


def _merge(*states):
    states = [s for s in states if s is not None]
    if not states:
        return None
    first = states[0]
    reach = dict(first.reach)
    avail = dict(first.avail)
    for state in states[1:]:
        for name, bindings in state.reach.items():
            reach[name] = reach.get(name, frozenset()) | bindings
        avail = {k: v for k, v in avail.items() if state.avail.get(k) == v}
    return _State(reach, avail)


class _Flow:
    """Walks a function body once (loops to their fixed point), recording every read of a local."""

    def __init__(self, scope):
        self.scope = scope
        self.uses = {}          # id(Name) -> _Use (the fixed-point pass overwrites earlier ones)
        self.copies = []        # (copy statement, its block), in program order
        self.redundant = {}     # id(copy) -> does its target already hold its source?
        self.defs = {}          # name -> ids of the statements binding it
        self.def_lines = {}     # name -> lines of those statements
        self.loops = []         # (break states, continue states) of the enclosing loops
        self._seen_copies = set()
        self._by_name = None

    def run(self):
        scope = self.scope
        reach = {name: frozenset([_UNBOUND]) for name in scope.locals}
        for name in scope.params:
            reach[name] = frozenset([_PARAM])
        self.block(scope.function.body, _State(reach, {}))

    def uses_of(self, name):
        if self._by_name is None:
            self._by_name = {}
            for use in self.uses.values():
                self._by_name.setdefault(use.node.id, []).append(use)
        return self._by_name.get(name, [])

    def tracked(self, name):
        return name in self.scope.locals and name not in self.scope.pinned

    def read(self, node, state, rewritable=True):
        reach, avail = state.reach, state.avail
        for name in self.scope.reads(node):
            self.uses[id(name)] = _Use(name, reach[name.id], avail.get(name.id), rewritable)

    def bind(self, name, stmt, state):
        if name not in self.scope.locals:
            return
        self.defs.setdefault(name, set()).add(id(stmt))
        self.def_lines.setdefault(name, set()).add(stmt.lineno)
        state.bind(name, id(stmt))

    def block(self, statements, state):
        for stmt in list(statements):
            if state is None:
                return None       # unreachable after a jump
            state = self.statement(stmt, statements, state)
        return state

    def statement(self, stmt, block, state):
        if isinstance(stmt, ast.Assign):
            self.read(stmt.value, state)
            for target in stmt.targets:
                self.read_target(target, state)
            if _is_copy(stmt):
                return self.copy_statement(stmt, block, state)
            for target in stmt.targets:
                for name in _target_names(target):
                    self.bind(name, stmt, state)
            return state
        if isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
            if stmt.value is not None:
                self.read(stmt.value, state)
            if isinstance(stmt.target, ast.Name):
                if isinstance(stmt, ast.AugAssign) and stmt.target.id in self.scope.locals:
                    self.uses[id(stmt.target)] = _Use(stmt.target, state.reach.get(stmt.target.id, frozenset()),
                                                      state.avail.get(stmt.target.id), False)
                self.bind(stmt.target.id, stmt, state)
            else:
                self.read_target(stmt.target, state)
            return state
        if isinstance(stmt, ast.If):
            self.read(stmt.test, state)
            body = self.block(stmt.body, state.copy())
            orelse = self.block(stmt.orelse, state.copy())
            return _merge(body, orelse)
        if isinstance(stmt, (ast.For, ast.While)):
            return self.loop(stmt, state)
        if isinstance(stmt, ast.Break):
            self.loops[-1][0].append(state)
            return None
        if isinstance(stmt, ast.Continue):
            self.loops[-1][1].append(state)
            return None
        if isinstance(stmt, (ast.Return, ast.Raise)):
            for child in ast.iter_child_nodes(stmt):
                self.read(child, state)
            return None
        if isinstance(stmt, ast.FunctionDef):
            for expr in stmt.decorator_list + stmt.args.defaults + [d for d in stmt.args.kw_defaults if d]:
                self.read(expr, state)
            self.bind(stmt.name, stmt, state)
            return state
        if isinstance(stmt, (ast.Expr, ast.Assert, ast.Pass)):
            for child in ast.iter_child_nodes(stmt):
                self.read(child, state)
            return state
        # Anything else (imports, and the constructs whose names are pinned): it may bind any
        # name it mentions.
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name):
                self.read(node, state, rewritable=False)
        for name in _bound_in([stmt]):
            self.bind(name, stmt, state)
        return state

    def read_target(self, target, state):
        """The reads inside an assignment target (``d[i] = v`` reads d and i)."""
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.read_target(element, state)
        elif isinstance(target, ast.Starred):
            self.read_target(target.value, state)
        elif not isinstance(target, ast.Name):
            self.read(target, state)

    def copy_statement(self, stmt, block, state):
        a, b = stmt.targets[0].id, stmt.value.id
        if id(stmt) not in self._seen_copies:
            self._seen_copies.add(id(stmt))
            self.copies.append((stmt, block))
        redundant = (a != b and self.tracked(a) and self.tracked(b) and state.root(a) == state.root(b)
                     and _UNBOUND not in state.reach.get(a, frozenset()))
        self.redundant[id(stmt)] = redundant
        if redundant:
            return state            # a no-op: the statement is dropped
        self.bind(a, stmt, state)
        if a != b and self.tracked(a) and self.tracked(b):
            state.avail[a] = b
        return state

    def loop(self, stmt, state):
        if isinstance(stmt, ast.For):
            self.read(stmt.iter, state)
        head = state
        while True:
            self.loops.append(([], []))
            entry = head.copy()
            if isinstance(stmt, ast.While):
                self.read(stmt.test, entry)
            else:
                for name in _target_names(stmt.target):
                    self.bind(name, stmt, entry)
                self.read_target(stmt.target, entry)
            end = self.block(stmt.body, entry)
            breaks, continues = self.loops.pop()
            # Merging into the head itself keeps the iteration monotone (bindings only grow,
            # available copies only shrink), so it ends.
            new_head = _merge(head, end, *continues)
            if new_head == head:
                break
            head = new_head
        after = self.block(stmt.orelse, head.copy())
        return _merge(after, *breaks)


# -- syntax helpers

def _is_copy(stmt):
    return (len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Name))


def _index(block, stmt):
    for i, s in enumerate(block):
        if s is stmt:
            return i
    raise ValueError("statement not in its block")


def _parameters(function):
    args = function.args
    names = [a.arg for a in getattr(args, "posonlyargs", []) + args.args + args.kwonlyargs]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return names


class _Function:
    """What one function's own scope holds: its Name nodes, locals and the functions nested in it."""

    def __init__(self, node):
        self.node = node
        self.names = []           # Name nodes of this scope (not inside nested functions)
        self.locals = set(_parameters(node))
        self.nested = []          # functions defined directly in this scope (at any block depth)


def _analyse(tree):
    """One walk over the tree: a `_Function` per function, and the names the pass leaves alone.

    Pinned are names in constructs it does not follow: scoping statements,
    ``del``, ``:=``, lambdas, comprehensions, classes, ``try`` and ``with``.
    """
    functions = {}
    pinned = set()

    def visit(node, scope, opaque):
        if isinstance(node, _OPAQUE):
            opaque = True
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                pinned.update(node.names)
        if isinstance(node, ast.Name):
            if opaque:
                pinned.add(node.id)
            if scope is not None:
                scope.names.append(node)
                if not isinstance(node.ctx, ast.Load):
                    scope.locals.add(node.id)
            return
        if opaque and isinstance(node, ast.arg):
            pinned.add(node.arg)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and scope is not None:
            scope.locals.update((a.asname or a.name).split(".")[0] for a in node.names)
        if isinstance(node, ast.ExceptHandler) and node.name and scope is not None:
            scope.locals.add(node.name)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and scope is not None:
            scope.locals.add(node.name)
        if isinstance(node, _FUNCTIONS):
            if scope is not None:
                scope.nested.append(node)
                for expr in node.decorator_list + node.args.defaults + [d for d in node.args.kw_defaults if d]:
                    visit(expr, scope, opaque)
            inner = functions[id(node)] = _Function(node)
            for stmt in node.body:
                visit(stmt, inner, opaque)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, scope, opaque)

    for stmt in tree.body:
        visit(stmt, None, False)
    return functions, pinned


def _target_names(target):
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for e in target.elts for n in _target_names(e)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _bound_in(statements):
    """Names a few statements bind (for the constructs the data flow does not follow)."""
    functions, _ = _analyse(ast.Module(body=[ast.FunctionDef(
        name="_", args=ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[],
                                     kwarg=None, defaults=[]),
        body=list(statements), decorator_list=[])], type_ignores=[]))
    return next(iter(functions.values())).locals


# -- text edits at the positions the parser reports

class _Edits:
    """Renames and line deletions on the text, keeping its layout and comments."""

    def __init__(self, text):
        self.lines = text.split("\n")
        self.renames = {}        # line index -> {(start, end) byte columns: new name}
        self.deleted = set()     # line indices
        self.passes = set()      # line indices that become ``pass``

    def whole_line(self, stmt):
        """Is `stmt` alone on its line (so deleting the line deletes just it)?"""
        data = self.lines[stmt.lineno - 1].encode("utf-8")
        return (stmt.lineno == stmt.end_lineno and stmt.col_offset == len(data) - len(data.lstrip())
                and stmt.end_col_offset == len(data.rstrip()))

    def rename(self, node, name):
        self.renames.setdefault(node.lineno - 1, {})[(node.col_offset, node.end_col_offset)] = name

    def delete(self, stmt, replace_by_pass=False):
        (self.passes if replace_by_pass else self.deleted).add(stmt.lineno - 1)

    def delete_else(self, stmt):
        """Delete `stmt`, the last statement of an ``else:`` block, and the ``else:`` line."""
        index = stmt.lineno - 2
        while index >= 0 and (_is_comment(self.lines[index]) or not self.lines[index].strip()):
            index -= 1
        if index < 0 or self.lines[index].strip() != "else:":
            return False
        self.deleted.update((index, stmt.lineno - 1))
        return True

    def apply(self):
        lines = list(self.lines)
        for index, renames in self.renames.items():
            data = lines[index].encode("utf-8")
            for (start, end), name in sorted(renames.items(), reverse=True):
                data = data[:start] + name.encode("utf-8") + data[end:]
            lines[index] = data.decode("utf-8")
        for index in self.passes:
            line = lines[index]
            lines[index] = line[:len(line) - len(line.lstrip())] + "pass"
        gone = self.deleted | self.passes
        keep_comment = comments_still_used(lines, gone)
        out = []
        for i, line in enumerate(lines):
            if i in self.deleted or (_is_comment(line) and not keep_comment.get(i, True)):
                continue
            out.append(line)
        return "\n".join(out)


def _is_comment(line):
    return line.lstrip().startswith("#")


def _indentation(line):
    return len(line) - len(line.lstrip())


def comments_still_used(lines, gone):
    """For each comment line: is any statement it heads still there?

    A comment heads the lines after it, up to the next comment at its
    indentation or less, the end of its block, or a blank line (the
    generator leaves one before the pullback only).  The generator writes
    ``return`` statements without a comment of their own, so a comment left
    with only a ``return`` under it has lost its statements.
    """
    used = {}
    for i, line in enumerate(lines):
        if not _is_comment(line):
            continue
        depth = _indentation(line)
        used[i] = False
        for j in range(i + 1, len(lines)):
            other = lines[j]
            if not other.strip():
                break
            if _indentation(other) < depth or (_is_comment(other) and _indentation(other) <= depth):
                break
            if not _is_comment(other) and j not in gone and not other.lstrip().startswith("return"):
                used[i] = True
                break
    return used
