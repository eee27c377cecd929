"""The reverse-mode transform: a function into its value-with-pullback.

For ``def f(x): ...`` it writes::

    def f_value_with_pullback(x):
        ...the forward statements, one operation each...
        def pullback(d_result):
            ...the adjoint statements, in reverse...
            return d_x
        return result, pullback

The pullback is a closure: it holds exactly the forward values its adjoint
statements read.  Built-in rules are inlined from their templates; user
derivatives, transformed callees and run-time dispatch are called.
"""

import builtins
import collections
import copy
import inspect
import operator
import types
from dataclasses import dataclass, field
from typing import Any, Dict, List

import gast
import numpy as np

from adtrans import mutation, randomness, registry, sharing, structures, tangents
from adtrans.activity import analyse, targets
from adtrans.codegen import unparse
from adtrans.copyprop import propagate_copies
from adtrans.desugar import Assign, Desugar, Effect, If, Loop, Return, Unpack, flatten, loops, root_name
from adtrans.errors import DifferentiationError
from adtrans.naming import Namer, is_number, names_in
from adtrans.release import release_dead
from adtrans.simplify import Scalar, negation_removed, simplify_scalar
from adtrans.source import own_signature
from adtrans.resolve import Operation, Resolver, is_spread
from adtrans.rules import support
from adtrans.rules.support import matmul_shape, unbroadcast, with_item
from adtrans.sequences import Sequences
from adtrans.trees import clone


@dataclass
class Generated:
    """A generated function: its source, and the objects its free names stand for."""

    name: str
    text: str
    cells: Dict[str, Any]            # generated free name -> object
    user_freevars: List[str]         # the user's closure variables, read through its own cells
    source: Any = None
    warnings: list = field(default_factory=list)
    # Does the pullback replay tapes or call other pullbacks (which may)? If not, running it
    # inside `tangents.single_use` changes nothing, and the API skips that (thread-local) cost.
    replays: bool = True
    # The same forward and pullback as one function seeded by `tangents.gradient_seed`: what
    # `gradient` runs, with no pullback closure to build (it matters for scalar code).
    gradient_name: str = ""
    gradient_lines: list = field(default_factory=list, repr=False)
    keep: tuple = ()                 # names copy propagation keeps (the returned gradients)
    # For a float result (a constant seed): the fused function without the value, which is
    # what `gradient` runs; "" when there is none.
    gradient_only_name: str = ""
    float_names: frozenset = frozenset()     # parameters and forward locals known to be floats
    # Does the pullback start with `tangents.take_over`: may a generated caller hand it its
    # cotangent (`tangents.hand_over`)? Only if that lets it free the cotangent early.
    takes_over: bool = False
    # An outlined block's list parameters whose cotangent may hold None for a zero: only
    # generated callers call it, and they add such a list, or fill it (`tangents.filled`).
    lazy_params: frozenset = frozenset()
    _optimised: dict = field(default_factory=dict, repr=False)

    @property
    def gradient_text(self):
        """The fused value-and-gradient function's source, optimised the first time it is needed."""
        return self.fused_text(self.gradient_name)

    def fused_text(self, name):
        """The source of fused function `name`: `gradient_name` or `gradient_only_name`."""
        return self._optimised_text(name).text

    def returns_floats(self, name):
        """Does fused function `name` return only Python floats (value and gradients)?"""
        return self._optimised_text(name).returns_floats

    def _optimised_text(self, name):
        found = self._optimised.get(name)
        if found is None:
            lines = list(self.gradient_lines)
            if name != self.gradient_name:
                # The gradient alone: the value is not returned, so what only it needs goes.
                grads = lines[-1].partition(", ")[2]
                lines[0] = lines[0].replace(self.gradient_name, name, 1)
                lines[-1] = f"    return {grads}"
            text = propagate_copies("\n".join(lines), keep=self.keep, generated=())
            if self.gradient_only_name:
                found = simplify_scalar(text, self.float_names, self.resolve)
                # Folding ``1.0 * x`` leaves copies.
                found.text = propagate_copies(found.text, keep=self.keep, generated=())
            else:
                found = Scalar(text, False)
            found.text = "\n".join(_without_repeated_comments(found.text.split("\n"))) + "\n"
            self._optimised[name] = found
        return found

    def resolve(self, name):
        """The object free name `name` of the generated code stands for, or None."""
        if name in self.cells:
            return self.cells[name]
        fn = self.source.fn if self.source is not None else None
        if fn is None:
            return None
        if name in fn.__code__.co_freevars:
            cell = fn.__closure__[fn.__code__.co_freevars.index(name)]
            try:
                return cell.cell_contents
            except ValueError:
                return None
        if name in fn.__globals__:
            return fn.__globals__[name]
        return getattr(builtins, name, None)


# The operators `ReverseTransform.in_place` may compute into a temporary left operand.
_IN_PLACE_OPERATORS = {gast.Add: "add", gast.Sub: "sub", gast.Mult: "mul", gast.Div: "truediv"}
# What a + or * that may concatenate or repeat lists is keyed to (see adtrans.sequences).
_KEYED = (support.added, support.multiplied)



def _name(id_):
    return gast.Name(id_, gast.Load(), None, None)


def _store(id_):
    return gast.Name(id_, gast.Store(), None, None)


def _call(func, *args):
    return gast.Call(func, list(args), [])


def _add(a, b):
    """``a + b``; ``a - c * e`` for ``a + -c * e`` (the same number: negation is exact, and
    products and quotients round alike whatever the sign)."""
    positive = negation_removed(b, gast)
    if positive is not None:
        return gast.BinOp(a, gast.Sub(), positive)
    return gast.BinOp(a, gast.Add(), b)


def _assign(target, value):
    targets = [_store(target)] if isinstance(target, str) else [target]
    return gast.Assign(targets=targets, value=value, type_comment=None)


class ReverseTransform:
    """One function, one `wrt`: builds the `Generated` value-with-pullback."""

    def __init__(self, source, wrt, derived, strict=True, floats=frozenset(), lifted=()):
        """`derived(fn, wrt, facts)` returns the value-with-pullback function of a callee.

        `floats` names parameters known to hold Python floats, and holds
        ``(name, cls)`` for parameters known to hold instances of dataclass `cls`.
        """
        self.float_params = {f for f in floats if isinstance(f, str)}
        # A field `cls` declares without derivative (no_derivative, int, str) read from such a
        # parameter is a constant: `int(model.steps * 1.5)` is no error, `model.clip` no input.
        self.classes = dict(f for f in floats if isinstance(f, tuple))
        self.source = source
        self.fn = source.fn
        self.wrt = tuple(wrt)
        self.derived = derived
        self.strict = strict
        self.namer = Namer(names_in(source.node))
        self.cells: Dict[str, Any] = {}
        self.replays = False      # see Generated.replays
        self.cell_ids: Dict[int, str] = {}
        code = self.fn.__code__
        # A closure called from generated code (see api._closure_call_with_pullback) takes its free
        # variables as keyword-only parameters.
        self.lifted = list(lifted)
        self.freevars = [name for name in code.co_freevars if name not in self.lifted]
        self.user_globals = self.fn.__globals__
        self.adjoints: Dict[Any, str] = {}
        self.saves = {}            # id(block) -> (tape, names): what a block in a loop keeps per pass
        self.loop_plans = {}       # id(loop) -> _LoopPlan
        self.owned = set()         # adjoints that are arrays or lists this pullback made (safe to add into)
        self.hands_to = set()      # generated pullbacks that take a cotangent over (see `hand_to`)
        self.never_hand_to = set()  # pullbacks of users' derivatives and run-time dispatch
        # A block `with recomputed()` or a run of `segmented` became this function: a list
        # parameter's cotangent leaves with None for the zeros of the items it never read (a run
        # reading `xs[t]` gets `xs`, but makes no zeros as long as the whole list).
        self.outlined = getattr(self.fn, "_adtrans_outlined", False)
        self.lazy_params = set()

    # -- the whole transform

    def run(self) -> Generated:
        body = Desugar(self.source, self.namer, self.lifted).run()
        self.body = body
        self.statements = body.statements
        self.flat = list(flatten(self.statements))
        ssa = set(body.params)
        for stmt in self.flat:
            ssa.update(targets(stmt))
        for stmt in loops(self.statements):
            ssa.update(_loop_names(stmt))
        self.ssa = ssa
        self.resolver = Resolver(self.source, ssa, self.strict)
        self.ops = {id(s): self.resolver.statement(s) for s in self.flat}
        self.constant_fields()
        pairs = [(s, self.ops[id(s)]) for s in self.flat]
        self.activity = analyse(pairs, self.wrt, body.result)
        self.warnings = self.zero_derivative_warnings(pairs)
        self.check_mutations()
        self.known_floats = self.float_names()
        self.check_shared_changes()
        # A + or * that may concatenate or repeat lists pulls back by the operands' types at run time.
        assigned = {t for s in self.flat for t in targets(s)}
        counters = {n for loop in loops(self.statements) for n in _loop_names(loop)} - assigned
        sequences = Sequences(self.flat, self.ops, body.params, counters, self.activity, self.known_floats,
                              self.statements)
        self.ops.update(sequences.keyed)
        self.numbers = sequences.numbers
        self.shape_sources = self.shape_sources_of()
        self.fields = {s.target for s in self.flat if isinstance(s, Assign)
                       and self.ops[id(s)].kind in ("attribute", "subscript")}
        # Nested defs and lambdas reading locals: values whose tangent is a dict of theirs.
        self.closures = {t for s in self.flat if self.ops[id(s)].kind == "closure" for t in targets(s)}
        self.numeric = self.numeric_names()
        self.first_pass = self.first_pass_flags()

        name = self.namer.fresh(f"{self._base_name()}_value_with_pullback")
        pullback_name = self.namer.fresh("pullback")
        result = body.result
        d_result = self.adjoint(result) if result is not None else self.namer.fresh("d_result")
        self.defined = {result} if result is not None else set()
        pullback = self.reverse_block(self.statements[:-1], None)
        pullback.append(self.gradient_return())
        self.pullback_loads = _loads("\n".join(pullback))
        self.dead = self.dead_copies()
        self.forward_reads = self.forward_read_counts()
        forward = self.forward_block(self.statements[:-1])

        forward.extend(self.shape_stand_ins(pullback, d_result, result))

        lines = [f"def {name}({self._parameters()}):"]
        lines.extend(_indent(forward))
        lines.append("")
        lines.append(f"    def {pullback_name}({d_result}):")
        lines.extend(_indent(pullback, 2))
        result_text = unparse(self.statements[-1].value)
        lines.append(f"    return {result_text}, {pullback_name}")
        release = self.release_candidates(d_result, ssa)
        text = propagate_copies("\n".join(lines), keep=self.gradient_names(), generated=(pullback_name,))
        take = None
        if result is not None and result not in self.known_floats:
            take = self.helper("take_over", tangents.take_over)
        text = _released(text, f"    def {pullback_name}({d_result}):", d_result, release, take)
        takes_over = take is not None and f"{d_result} = {take}({d_result})" in text
        text = self.kept_values_not_overwritten(text, pullback_name)
        text = "\n".join(_without_repeated_comments(text.split("\n"))) + "\n"
        gradient_name = self.namer.fresh(f"{self._base_name()}_value_with_gradient")
        fused = [f"def {gradient_name}({self._parameters()}):"]
        fused.extend(_indent(forward))
        if result is not None and result in self.known_floats:
            fused.append(f"    {d_result} = 1.0")
        else:
            seed = self.helper("gradient_seed", tangents.gradient_seed)
            fused.append(f"    {d_result} = {seed}({result_text})")
        # Released before copy propagation here (which then leaves the released names alone):
        # the fused function is what runs, and the boundary of its pullback part is known now.
        body = release_dead(pullback, d_result, *release)
        fused.extend(_indent(self.forward_dropped(forward, body, result_text)))
        fused.extend(_indent(body[:-1]))
        fused.append(f"    return {result_text}, {body[-1][len('return '):]}")
        gradient_only = ""
        if result is not None and result in self.known_floats:
            gradient_only = self.namer.fresh(f"{self._base_name()}_gradient")
        self.drop_unused_helpers((tangents.take_over, tangents.hand_over), [text, "\n".join(fused)])
        return Generated(name, text, self.cells, self.freevars, self.source, self.warnings,
                         self.replays, gradient_name, fused, self.gradient_names(),
                         gradient_only, frozenset(self.known_floats), takes_over=takes_over,
                         lazy_params=frozenset(self.lazy_params))

    def kept_values_not_overwritten(self, text, pullback_name):
        """`text` with ``tanh_cotangent(d, y)`` made ``tanh_cotangent_of_kept(d, y)`` where `y` is
        a value the pullback closure holds: `tanh_cotangent` writes into `y` when one local holds
        it (a popped tape's, in the fused function), and a closure's cell counts the same, but the
        pullback may be called again."""
        import ast

        helper = self.cell_ids.get(id(support.tanh_cotangent))
        if helper is None or helper not in text:
            return text
        lines = text.split("\n")
        pullback = next(node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.FunctionDef)
                        and node.name == pullback_name)
        held = _read_before_bound(lines[pullback.lineno:pullback.end_lineno])
        calls = [node for node in ast.walk(pullback) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name) and node.func.id == helper and len(node.args) == 2
                 and isinstance(node.args[1], ast.Name) and node.args[1].id in held]
        if not calls:
            return text
        kept = self.helper("tanh_cotangent_of_kept", support.tanh_cotangent_of_kept)
        for call in sorted(calls, key=lambda c: (c.func.lineno, c.func.col_offset), reverse=True):
            line, col = call.func.lineno - 1, call.func.col_offset
            lines[line] = lines[line][:col] + kept + lines[line][col + len(helper):]
        return "\n".join(lines)

    def constant_fields(self):
        """Reads of fields without derivative from parameters of known dataclasses are constants."""
        for stmt in self.flat:
            op = self.ops[id(stmt)]
            if not (op.kind == "attribute" and isinstance(stmt, Assign)
                    and isinstance(stmt.value.value, gast.Name)):
                continue
            cls = self.classes.get(stmt.value.value.id)
            name = stmt.value.attr
            if (cls is not None and name in cls.__dataclass_fields__
                    and name not in structures.tangent_fields(cls)):
                self.ops[id(stmt)] = Operation("constant", op.inputs, [], description=op.description)

    def facts_for(self, call, target):
        """The classes a callee's parameters are known to hold here: those of our parameters passed
        on as they are (a helper taking the model keeps its fields' constants)."""
        if not self.classes:
            return frozenset()
        return frozenset((param, self.classes[node.id]) for param, node in self.bind(target, call).items()
                         if isinstance(node, gast.Name) and node.id in self.classes)

    def _base_name(self):
        return "lambda" if self.source.is_lambda else self.source.node.name.strip("_") or "function"

    def _parameters(self):
        args = self.source.node.args
        parts = [a.id for a in args.posonlyargs]
        if parts:
            parts.append("/")
        parts.extend(a.id for a in args.args)
        if args.vararg is not None:
            parts.append(f"*{args.vararg.id}")
        elif args.kwonlyargs or self.lifted:
            parts.append("*")
        parts.extend(a.id for a in args.kwonlyargs)
        parts.extend(self.lifted)
        if args.kwarg is not None:
            parts.append(f"**{args.kwarg.id}")
        return ", ".join(parts)

    # -- analysis helpers

    def active(self, name):
        return self.activity.active(name)

    def check_mutations(self):
        """A method that changes a container in place, or a function that changes its first argument
        (``np.put(y, i, v)``), given or holding differentiated values, is an error: the pullback
        cannot follow it, and its gradient would be silently wrong.

        (``xs.append(v)`` and ``xs.extend(vs)`` on a local list are rewritten by value instead,
        see `Desugar.grow_list`.)
        """
        varied = self.activity.varied
        self.check_arguments_changed_by_callees()
        for stmt in self.flat:
            if not isinstance(stmt, Effect) or not isinstance(stmt.stmt, gast.Expr):
                continue
            call = stmt.stmt.value
            if not isinstance(call, gast.Call):
                continue
            func = call.func
            if isinstance(func, gast.Attribute) and func.attr in mutation.CHANGING_METHODS \
                    and root_name(func.value) in self.ssa:
                receiver, first_argument = func.value, False
            elif (getattr(func, "attr", None) or getattr(func, "id", None)) in mutation.CHANGING_FIRST_ARGUMENT \
                    and call.args:
                receiver, first_argument = call.args[0], True    # np.put(y, i, v), rng.shuffle(y)
            else:
                continue
            if root_name(receiver) not in self.ssa:
                self.check_global_changed(stmt, receiver, func)
                continue
            arguments = list(call.args) + [k.value for k in call.keywords]
            if any(isinstance(n, gast.Name) and n.id in varied for a in arguments for n in gast.walk(a)) \
                    or (isinstance(receiver, gast.Name) and receiver.id in varied):
                if first_argument:
                    raise self.source.error(
                        stmt.origin, f"'{unparse(func)}(...)' changes its first argument in place, which "
                        "differentiated code cannot follow",
                        "build a new array instead (y[i] = v, y[mask] = v, y = np.where(mask, v, y)); "
                        "np.add.at, np.subtract.at, np.copyto and np.fill_diagonal are followed when their "
                        "first argument is a local array")
                raise self.source.error(
                    stmt.origin, f"'{unparse(call.func)}(...)' changes a container in place, which "
                    "differentiated code cannot follow",
                    "build a new value instead (xs = xs + [v], ys = sorted(ys), a = np.where(...)), "
                    "or wrap the arguments in 'without_derivative' if no derivative should flow "
                    "through them (a log of values)")

    def check_shared_changes(self):
        """Before each change in place that another name may see (``p = y[n:]; p -= v``, then `y`
        read), a check raising the error of that line when the memory is shared (see `sharing`)."""
        found = sharing.shared_changes(self.statements, self.body.params, self.ops, self.known_floats)
        if not found:
            return
        refuse = self.helper("refuse_shared_change", sharing.refuse_shared_change)
        checks = {}
        for stmt in self.flat:
            for other in found.get(id(stmt), ()):
                changed = self.user_name(stmt.changes)
                error = self.shared_change_error(stmt, changed, other)
                cell = self.helper(f"changing_{changed}_changes_{self.user_name(other)}", error)
                call = _call(_name(refuse), _name(stmt.changes), _name(other), _name(cell))
                check = Effect(gast.Expr(call), stmt.origin)
                self.ops[id(check)] = self.resolver.statement(check)
                checks.setdefault(id(stmt), []).append(check)
        _insert_before(self.statements, checks)
        self.flat = list(flatten(self.statements))

    def user_name(self, name):
        """The user's variable SSA version `name` is of (`name` itself for a temporary)."""
        return self.body.user_names.get(name, name)

    def shared_change_error(self, stmt, changed, other):
        """The error `sharing.refuse_shared_change` raises where `stmt` changes `changed` and `other`."""
        text = self.source.line_text(stmt.origin.lineno)
        copy_first = f"change a copy ('{changed} = {changed}.copy()' first)"
        if other == stmt.changes:
            return self.source.error(
                stmt.origin, f"'{text}' changes '{changed}' in place, and its value from before the change is "
                "read afterwards, which differentiated code does not follow", copy_first)
        if other in self.body.user_names or other in self.body.params:
            seen = f"'{self.user_name(other)}'"
            through = f"; to change {seen}, assign through it ('{self.user_name(other)}[...] = ...')"
        else:
            seen, through = f"the value of line {self.defining_line(other)}", ""
        if isinstance(stmt.origin, gast.AugAssign) and isinstance(stmt.origin.target, gast.Name):
            symbol = unparse(gast.BinOp(gast.Name("a", gast.Load(), None, None), stmt.origin.op,
                                        gast.Name("b", gast.Load(), None, None)))[2:-2]
            new = f"write '{changed} = {changed} {symbol} ...' to make a new array"
        else:
            new = f"compute a new array rather than change '{changed}'"
        return self.source.error(
            stmt.origin, f"'{text}' changes '{changed}' in place, and '{changed}' shares its memory with {seen} "
            f"(it is the same array, a view of it, or an item of it): Python changes {seen} too, which "
            "differentiated code does not follow", f"{new}{through}; or {copy_first}")

    def defining_line(self, name):
        return next((s.origin.lineno for s in self.flat if name in targets(s)), self.source.node.lineno)

    def check_global_changed(self, stmt, receiver, func):
        """A global array changed in place (``np.add.at(COUNTS, i, 1.0)``) that a differentiated
        operation reads is an error: the pullback reads it when it runs, changed by every later
        change, where each operation met the value it had then."""
        name = root_name(receiver)
        if name is None:
            return
        for other in self.flat:
            if name in _statement_loads(other) and any(self.active(t) for t in targets(other)):
                raise self.source.error(
                    stmt.origin, f"'{unparse(func)}(...)' changes '{name}' in place, which is not a local "
                    "variable, and differentiated code reads it: the pullback would read its last value",
                    f"work on a local copy ('{name} = {name}.copy()' at the start) and return it, or keep "
                    "the counts outside the differentiated function")

    def check_arguments_changed_by_callees(self):
        """A call of a function that changes an argument in place (`mutation`), whose caller
        reads that argument afterwards, is an error: differentiated code passes values (the
        callee's ``z += b`` makes a new ``z``), so the caller would read the old value where
        Python reads the changed one."""
        def read_later(name, index):
            """Is `name` read after statement `index`, before a statement binds it again (a loop's
            header version is bound again at the end of the pass)?"""
            for later in self.flat[index + 1:]:
                if name in _statement_loads(later):
                    return True
                if name in targets(later):
                    return False
            return False

        for index, stmt in enumerate(self.flat):
            op = self.ops[id(stmt)]
            if isinstance(stmt, Effect):
                # 'normalise_(X)' as a statement: run for what it changes, which would be lost.
                call = getattr(stmt.stmt, "value", None)
                callee = self.static_callee(call) if isinstance(stmt.stmt, gast.Expr) else None
            elif op.kind in ("transform", "checkpoint") and isinstance(stmt, Assign):
                call, callee = stmt.value, op.callee
            else:
                continue
            fn = _python_function(callee)
            if not isinstance(fn, types.FunctionType) or getattr(fn, "_adtrans_outlined", False):
                continue    # an outlined block returns what it changes
            changed = mutation.changed_in(fn)
            if not changed:
                continue
            try:
                bound = own_signature(fn).bind(*call.args, **{k.arg: k.value for k in call.keywords}).arguments
            except (TypeError, ValueError):
                continue
            for param in changed:
                root = root_name(bound.get(param))     # X[i], s.pos: a part of X or s, changed with it
                if root in self.ssa and read_later(root, index):
                    raise self.source.error(
                        stmt.origin, f"'{_short_name(fn)}' changes its argument '{param}' in place, and "
                        "the value passed is read after the call: differentiated code would read it "
                        "unchanged (a callee's 'z += b' makes a new z there)",
                        f"return the changed value and assign it at the call, or pass a copy "
                        f"('{param}.copy()') if the change is not meant to be seen")

    def static_callee(self, call):
        """The function a call statement names, where it is known now (a global), else None."""
        return self.resolver.known_value(call.func) if isinstance(call, gast.Call) else None

    def zero_derivative_warnings(self, pairs):
        from adtrans.api import without_derivative

        if self.outlined:
            return []   # its parameters are what the block reads, not the user's: the user's function warns
        found = []
        explicit = None
        for param in self.wrt:
            if self.active(param):
                continue
            if explicit is None:
                explicit = analyse(pairs, self.wrt, self.body.result, passthrough=(without_derivative,))
            if explicit.active(param):
                continue
            found.append(param)
        return found

    def first_pass_flags(self):
        """Loop-carried names that hold a constant on the first pass only: name -> flag name.

        In ``for layer in layers: x = layer(x)`` with `x` data, `x` is varied
        from the second pass on, so the (flow-insensitive) activity analysis
        calls every layer for the gradient of its input; on the first pass that
        gradient goes nowhere, and for a network's first layer it is as costly
        as its weight gradient. When the name's only uses in the loop are
        arguments of calls dispatched at run time, a flag set at the end of each
        pass tells those calls not to ask for it on the first (the pullback then
        gets None, a zero, which goes nowhere).
        """
        flags = {}
        varied = self.activity.varied
        for loop in loops(self.statements):
            for header in loop.headers:
                if header not in varied:
                    continue
                inits = [s for s in self.flat if isinstance(s, Assign) and s.target == header
                         and not s.loop_end]
                if (len(inits) != 1 or not isinstance(inits[0].value, gast.Name)
                        or inits[0].value.id in varied):
                    continue
                if self._only_dispatched_arguments(loop, header):
                    flags[header] = self.namer.fresh(f"{header}_varied")
        return flags

    def _only_dispatched_arguments(self, loop, name):
        """Is every read of `name` in `loop` an argument of a call dispatched at run time?"""
        uses = dispatched = 0
        for stmt, root in _expression_roots([loop]):
            uses += sum(1 for n in gast.walk(root) if isinstance(n, gast.Name) and n.id == name
                        and not isinstance(n.ctx, gast.Store))
            if (root is getattr(stmt, "value", None) and isinstance(stmt, Assign)
                    and isinstance(root, gast.Call) and self.ops[id(stmt)].kind == "dynamic"
                    and self.active(stmt.target) and not self.is_method_call(root)):
                arguments = list(root.args) + [k.value for k in root.keywords]
                dispatched += sum(1 for a in arguments if isinstance(a, gast.Name) and a.id == name)
        return uses > 0 and uses == dispatched

    def numeric_names(self):
        """Locals known to hold numbers or arrays, whose adjoints can be summed with ``+``.

        Those are the operands and results of arithmetic operators and `math`
        functions; anything else (a list given to ``sum``, the result of
        ``np.split``) is summed with `tangents.add`, which adds containers
        element by element.
        """
        numeric = set()
        for stmt in self.flat:
            op = self.ops[id(stmt)]
            if op.kind == "rule" and isinstance(stmt, Assign) and op.callee not in _KEYED and (
                    isinstance(stmt.value, (gast.BinOp, gast.UnaryOp))
                    or getattr(op.callee, "__module__", None) == "math"):
                numeric.add(stmt.target)
                for param, node in op.binding.items():
                    if isinstance(node, gast.Name) and param in op.rule.differentiable_params:
                        numeric.add(node.id)
        # Only values proved no list (adtrans/sequences.py): a list given to NumPy arithmetic
        # (np.exp(a) + xs, x @ W with W nested lists) gets list cotangents, added item by item.
        return numeric & self.numbers

    def float_names(self):
        """Locals known to hold Python floats: their adjoints never need unbroadcasting.

        A name is a float when every statement assigning it makes a float (a
        `math` function, arithmetic on floats and numbers, a copy of a float):
        the largest such set, so loop-carried floats stay floats.
        """
        from adtrans.api import with_derivative, without_derivative

        assigns = [s for s in self.flat if isinstance(s, Assign) and not s.bound]
        floats = {s.target for s in assigns}
        floats -= {t for s in self.flat if isinstance(s, Unpack) for t in s.targets}
        floats |= self.float_params - {s.target for s in assigns}
        self.known_floats = floats
        changed = True
        while changed:
            changed = False
            for stmt in assigns:
                if stmt.target in floats and not self.makes_float(stmt, with_derivative, without_derivative):
                    floats.discard(stmt.target)
                    changed = True
        return floats

    def makes_float(self, stmt, with_derivative, without_derivative):
        op = self.ops[id(stmt)]
        if isinstance(stmt.value, (gast.Constant, gast.UnaryOp)) and not local_names_in(stmt.value):
            return self.is_scalar(stmt.value) and isinstance(_constant_value(stmt.value), float)
        if op.kind == "rule":
            module = getattr(op.callee, "__module__", None)
            if module == "math" and registry.integer_valued_name(op.callee) is None:
                return True
            if op.callee is float:
                return True
            if module in ("_operator", "operator") and isinstance(stmt.value, (gast.BinOp, gast.UnaryOp)):
                return all(self.is_scalar(n) for n in op.binding.values()) and not isinstance(
                    getattr(stmt.value, "op", None), gast.MatMult)
            if op.callee is with_derivative:
                return self.is_scalar(op.binding["x"])
            return False
        if op.kind == "constant" and op.callee is without_derivative and stmt.value.args:
            return self.is_scalar(stmt.value.args[0])
        if op.kind == "copy":
            return self.is_scalar(stmt.value)
        return False

    # -- cells: the objects generated code refers to

    def helper(self, preferred, obj):
        """The name generated code uses for `obj`; binds a closure cell unless the user's global works."""
        if id(obj) in self.cell_ids:
            return self.cell_ids[id(obj)]
        if (preferred in self.namer.taken and preferred not in self.resolver.locals
                and preferred not in self.fn.__code__.co_freevars and self.user_globals.get(preferred) is obj):
            self.cell_ids[id(obj)] = preferred
            return preferred
        if (getattr(builtins, preferred, None) is obj and preferred not in self.user_globals
                and preferred not in self.resolver.locals and preferred not in self.fn.__code__.co_freevars):
            self.cell_ids[id(obj)] = preferred      # a builtin, as the user would write it
            return preferred
        name = self.namer.fresh(preferred)
        self.cells[name] = obj
        self.cell_ids[id(obj)] = name
        return name

    def drop_unused_helpers(self, objects, texts):
        """Forget the cells of `objects` that none of `texts` reads (bound in case they were needed)."""
        used = set().union(*map(_loads, texts))
        for obj in objects:
            name = self.cell_ids.get(id(obj))
            if name is not None and name in self.cells and name not in used:
                del self.cells[name]
                del self.cell_ids[id(obj)]

    def adjoint(self, name):
        if name not in self.adjoints:
            self.adjoints[name] = self.namer.fresh(f"d_{name}")
        return self.adjoints[name]

    def pullback_of(self, name):
        key = ("pullback", name)
        if key not in self.adjoints:
            self.adjoints[key] = self.namer.fresh(f"{name}_pullback")
        return self.adjoints[key]

    def comment(self, origin):
        lineno = getattr(origin, "lineno", self.source.node.lineno)
        return f"# {self.source.filename}:{lineno}: {self.source.line_text(lineno)}"

    def shape_root(self, name):
        """The earliest local with `name`'s shape and dtype, following shape-preserving operations.

        ``unbroadcast(g, x)`` reads only x's shape; naming the operand x came
        from (``x = -v``, ``x = np.tanh(v)``, ``x = 0.5 * v``) lets the pullback
        keep one value instead of two.
        """
        seen = set()
        while name in self.shape_sources and name not in seen:
            seen.add(name)
            name = self.shape_sources[name]
        return name

    def shape_sources_of(self):
        import numpy as np

        from adtrans.api import with_derivative

        import operator

        sources = {}
        self.matmul_sources = {}
        counts = {}
        for stmt in self.flat:
            for t in targets(stmt):
                counts[t] = counts.get(t, 0) + 1
        for stmt in self.flat:
            if not isinstance(stmt, Assign) or counts.get(stmt.target) != 1:
                continue
            op = self.ops[id(stmt)]
            if op.kind != "rule" or op.callee in _KEYED:
                continue
            names = [n for n in op.binding.values() if isinstance(n, gast.Name)]
            value = stmt.value
            if op.callee is operator.matmul and all(
                    isinstance(n, gast.Name) for n in (op.binding.get("a"), op.binding.get("b"))):
                self.matmul_sources[stmt.target] = (op.binding["a"], op.binding["b"])
                continue
            if isinstance(value, gast.UnaryOp) and isinstance(value.operand, gast.Name):
                source = value.operand.id
            elif isinstance(value, gast.BinOp) and not isinstance(value.op, gast.MatMult):
                operands = [value.left, value.right]
                arrays = [o for o in operands if not self.is_scalar(o)]
                source = arrays[0].id if len(arrays) == 1 and isinstance(arrays[0], gast.Name) else None
            elif op.callee is with_derivative or (
                    isinstance(op.callee, np.ufunc) and op.callee.nin == 1 and op.callee.nout == 1
                    and len(names) == 1 and len(op.binding) == 1):
                source = names[0].id if names else None
            else:
                source = None
            if source is not None:
                sources[stmt.target] = source
        return sources

    def is_scalar(self, node):
        if isinstance(node, gast.Constant):
            return isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        if isinstance(node, gast.UnaryOp) and isinstance(node.operand, gast.Constant):
            return self.is_scalar(node.operand)
        return isinstance(node, gast.Name) and node.id in self.known_floats

    # -- forward

    def dead_copies(self):
        """Copies the desugaring made that nothing reads (a loop's unused exit copy, say)."""
        copies = [s for s in self.flat if isinstance(s, Assign) and s.copy]
        dead = set()
        while True:
            loads = set(self.pullback_loads)
            for stmt in self.flat:
                if id(stmt) not in dead:
                    loads.update(_statement_loads(stmt))
            for stmt in _structures(self.statements):
                loads.update(_structure_loads(stmt))
            loads.update(_statement_loads(self.statements[-1]))
            newly = {id(s) for s in copies if id(s) not in dead and s.target not in loads}
            if not newly:
                return dead
            dead |= newly

    def forward_read_counts(self):
        """How often the forward reads each name (the pullback's reads count as many)."""
        counts = collections.Counter()
        for _, root in _expression_roots(self.statements):
            counts.update(n.id for n in gast.walk(root) if isinstance(n, gast.Name)
                          and isinstance(n.ctx, gast.Load))
        for name in self.pullback_loads:
            counts[name] += 2
        return counts

    def nested(self, statements):
        """Operations of one source line whose result only the next one reads, written nested.

        ``h_2 = np.tanh(h_1 @ W + b)`` rather than a name per operation: it
        reads as the user wrote it, and an intermediate the pullback does not
        keep is freed as soon as it is used (NumPy even reuses it for the
        next operation).  The other operands of an operation are names or
        constants, so nesting changes no order of evaluation.  Returns the
        new values by statement, and the statements now written inside them.
        """
        values, folded = {}, set()
        for stmt, following in zip(statements, statements[1:]):
            if not (self.nestable(stmt) and self.nestable(following)):
                continue
            if stmt.origin is not following.origin or self.forward_reads[stmt.target] != 1:
                continue
            into = values.get(id(following), following.value)
            if not any(isinstance(n, gast.Name) and n.id == stmt.target for n in gast.walk(into)):
                continue
            if into is following.value and self.active(stmt.target) and stmt.target not in self.known_floats:
                into = self.in_place(following, stmt.target)
            values[id(following)] = _replace_name(into, stmt.target, values.get(id(stmt), stmt.value))
            folded.add(id(stmt))
        return values, folded

    def in_place(self, stmt, temporary):
        """`stmt`'s value, computed in the memory of its operand `temporary` where it can be.

        `temporary` is an operation `nested` writes inside `stmt`, carrying a
        derivative and not known to be a float: an array nobody else holds,
        unless that operation returned one held elsewhere.
        ``np.tanh(t)`` becomes ``in_place(np.tanh, t)`` and ``t + b``
        ``in_place(operator.add, t, b)`` (NumPy reuses a temporary left operand
        by itself only when nothing is broadcast); `support.in_place` checks
        when it runs. Other operations are left as they are.
        """
        value = stmt.value
        op = self.ops[id(stmt)]
        if op.kind != "rule" or op.callee in _KEYED:
            return value
        if (isinstance(value, gast.Call) and isinstance(op.callee, np.ufunc) and op.callee.nin == 1
                and op.callee.nout == 1 and len(value.args) == 1 and not value.keywords
                and isinstance(value.args[0], gast.Name) and value.args[0].id == temporary):
            function = value.func
        elif (isinstance(value, gast.BinOp) and type(value.op) in _IN_PLACE_OPERATORS
                and isinstance(value.left, gast.Name) and value.left.id == temporary
                and temporary not in names_in(value.right)):
            module = self.helper("operator", operator)
            function = gast.Attribute(_name(module), _IN_PLACE_OPERATORS[type(value.op)], gast.Load())
            value = gast.Call(function, [value.left, value.right], [])
        else:
            return value
        helper = self.helper("in_place", support.in_place)
        return gast.Call(_name(helper), [function] + list(value.args), [])

    def nestable(self, stmt):
        """Is `stmt` written ``target = expression`` in the forward (not a copy, nor a call with pullback)?"""
        if not isinstance(stmt, Assign) or stmt.bound or stmt.copy or id(stmt) in self.dead:
            return False
        if isinstance(stmt.value, gast.Call) and hasattr(stmt.value.func, "synthetic_callee"):
            return False
        op = self.ops[id(stmt)]
        return not (op.kind in ("vjp", "transform", "dynamic") and self.active(stmt.target))

    def forward_block(self, statements):
        lines = []
        origin = None
        save = self.saves.get(id(statements))
        values, folded = self.nested(statements)
        for stmt in statements:
            if id(stmt) in folded:
                continue
            if save is not None and isinstance(stmt, Assign) and stmt.loop_end:
                # The pass's values are kept before the header copies overwrite them.
                lines.append(f"{save[0]}.append({_tuple_text(save[1])})")
                save = None
            if isinstance(stmt, Assign) and (stmt.bound or id(stmt) in self.dead):
                continue
            if isinstance(stmt, If):
                lines.append(self.comment(stmt.origin))
                lines.extend(self.forward_if(stmt))
                origin = None
                continue
            if isinstance(stmt, Loop):
                lines.append(self.comment(stmt.origin))
                lines.extend(self.forward_loop(stmt))
                origin = None
                continue
            if not (isinstance(stmt, Assign) and stmt.copy) and stmt.origin is not origin:
                origin = stmt.origin
                lines.append(self.comment(origin))
            lines.extend(self.forward_statement(stmt, values.get(id(stmt))).split("\n"))
        if save is not None:
            tape, names = save
            lines.append(f"{tape}.append({_tuple_text(names)})")
        return lines

    def forward_statement(self, stmt, value=None):
        if isinstance(stmt, Effect):
            return unparse(stmt.stmt)
        if isinstance(stmt, Unpack):
            return f"{', '.join(stmt.targets)} = {stmt.source}"
        op = self.ops[id(stmt)]
        value = stmt.value if value is None else value
        if op.kind in ("vjp", "transform", "dynamic") and self.active(stmt.target):
            call = self.call_with_pullback(stmt, op)
            return f"{stmt.target}, {self.pullback_of(stmt.target)} = {unparse(call)}"
        if op.kind == "checkpoint":
            value = self.with_copies(value, op)
        if isinstance(value, gast.Call) and hasattr(value.func, "synthetic_callee"):
            value = clone(value)
            value.func = self.callee(value.func)
        return f"{stmt.target} = {unparse(value)}"

    def with_copies(self, call, op):
        """A checkpointed call whose callee changes some arguments in place, given copies of them:
        its pullback runs it again from the arguments as they were (see `mutation`)."""
        target = _python_function(op.callee)
        changed = mutation.changed_in(target)
        if not changed:
            return call
        call = clone(call)
        bound = self.bind(target, call)
        copies = {id(node): changed[param] for param, node in bound.items() if param in changed}
        helpers = {mutation.SHALLOW: self.helper("copy", copy.copy), mutation.DEEP: self.helper("deepcopy", copy.deepcopy)}

        def copied(node):
            kind = copies.get(id(node))
            return node if kind is None else _call(_name(helpers[kind]), node)

        call.args = [copied(a) for a in call.args]
        for keyword in call.keywords:
            keyword.value = copied(keyword.value)
        return call

    def callee(self, func):
        """The function of a call as generated code names it: a call the desugaring wrote itself
        names its callee by a cell, which no user name can capture."""
        if hasattr(func, "synthetic_callee"):
            return _name(self.helper(func.id, func.synthetic_callee))
        return func

    def forward_if(self, stmt):
        lines = [f"if {unparse(stmt.test)}:"]
        lines.extend(_indent(self.forward_block(stmt.body) or ["pass"]))
        orelse = self.forward_block(stmt.orelse)
        if orelse:
            lines.append("else:")
            lines.extend(_indent(orelse))
        return lines

    def forward_loop(self, loop):
        plan = self.loop_plans.get(id(loop))
        lines = []
        if plan is not None:
            lines.append(f"{plan.tape} = []" if plan.tape else f"{plan.counter} = 0")
            lines.extend(f"{tape} = []" for tape in plan.branch_tapes)
        lines.extend(f"{self.first_pass[h]} = False" for h in loop.headers if h in self.first_pass)
        body = []
        if loop.kind == "while":
            lines.append("while True:")
            body.extend(self.forward_block(loop.condition))
            body.append(f"if not {unparse(loop.test)}:")
            body.append("    break")
        else:
            lines.append(f"for {self.loop_target_text(loop)} in {self.loop_iterable_text(loop)}:")
        body.extend(self.forward_block(loop.body))
        for header in loop.headers:
            if header in self.first_pass:
                body.append(f"{self.first_pass[header]} = True")
        if plan is not None and not plan.tape:
            body.append(f"{plan.counter} += 1")
        if loop.break_test is not None:
            body.append(f"if {unparse(loop.break_test)}:")
            body.append("    break")
        lines.extend(_indent(body or ["pass"]))
        return lines

    def indexed(self, loop):
        """Does the loop need its iteration index (an element's cotangent goes to its sequence)?"""
        return loop.kind == "sequence" and any(
            s.bound and self.active(s.target) for s in loop.body if isinstance(s, Assign))

    def loop_target_text(self, loop):
        target = unparse(loop.target)
        if not self.indexed(loop) or _is_call(loop.header, "enumerate"):
            return target
        if isinstance(loop.target, gast.Tuple):
            target = f"({target})" if not target.startswith("(") else target
        return f"{loop.index}, {target}"

    def loop_iterable_text(self, loop):
        text = unparse(loop.header)
        if self.indexed(loop) and not _is_call(loop.header, "enumerate"):
            return f"enumerate({text})"
        return text

    def call_with_pullback(self, stmt, op):
        """The forward call of a callee that returns (value, pullback)."""
        self.replays = True
        call = stmt.value
        if op.kind == "dynamic" and is_spread(call):
            return self.spread_call_with_pullback(call)
        if op.kind == "dynamic":
            positions = self.active_positions(call)
            wrt = gast.Tuple([gast.Constant(i, None) for i in positions], gast.Load())
            if self.is_method_call(call) and -1 in positions:
                dispatch = self.helper("method_call_with_pullback", structures.method_call_with_pullback)
                return gast.Call(_name(dispatch), [call.func.value, gast.Constant(call.func.attr, None), wrt]
                                 + list(call.args), list(call.keywords))
            nodes = list(call.args) + [k.value for k in call.keywords]
            flagged = {i: self.first_pass[nodes[i].id] for i in positions
                       if i >= 0 and isinstance(nodes[i], gast.Name) and nodes[i].id in self.first_pass}
            flags = set(flagged.values())
            if len(flags) == 1:
                # Not the first pass's constant: see `first_pass_flags`.
                first = gast.Tuple([gast.Constant(None if i in flagged else i, None) for i in positions],
                                   gast.Load())
                (flag,) = flags
                wrt = gast.IfExp(_name(flag), wrt, first)
            dispatch = self.helper("call_with_pullback", _dispatch())
            return gast.Call(_name(dispatch), [self.callee(call.func), wrt] + list(call.args), list(call.keywords))
        if op.kind == "vjp":
            return self.vjp_call(op.callee, call, op.description)
        # transform
        target = _python_function(op.callee)
        wrt = self.active_parameters(target, call)
        derived = self.derived_callee(op.callee, wrt, stmt)
        func = _name(self.helper(f"{_short_name(op.callee)}_value_with_pullback", derived))
        return gast.Call(func, list(call.args), list(call.keywords))

    def vjp_call(self, callee, call, description):
        """``f_vjp(args)``: the call of `callee`'s VJP (registered, or given to
        `differentiable_function`) that returns its value and pullback."""
        func = self.vjp_name(callee, description)
        keywords = list(call.keywords)
        entry = registry.lookup_user_vjp(callee)
        if entry is not None and entry.selective:
            # Tell the VJP which tangents will be used (see registry.UserVJP.selective).
            names = entry.wrt if entry.wrt is not None else tuple(entry.signature.parameters)
            nodes = self.vjp_targets(callee, call)
            needed = [n for n, node in zip(names, nodes) if node is not None and self.node_active(node)]
            keywords.append(gast.keyword("needed", gast.Tuple(
                [gast.Constant(n, None) for n in needed], gast.Load())))
        return gast.Call(func, list(call.args), keywords)

    def vjp_name(self, callee, description):
        """The name generated code calls `callee`'s user derivative by."""
        vjp = _user_vjp_of(callee)
        name = getattr(vjp, "__name__", "vjp")
        if name == "<lambda>":
            name = f"{description.split('.')[-1]}_vjp"   # named after the call as written
        return _name(self.helper(name, vjp))

    def spread_call_with_pullback(self, call):
        """``f(x, *xs, k=v, **options)``: the arguments as written, each with its kind ('' positional,
        '*', '**' or its keyword), for `api.spread_call_with_pullback` to spread at run time."""
        kinds = ["*" if isinstance(a, gast.Starred) else "" for a in call.args]
        kinds += [k.arg if k.arg is not None else "**" for k in call.keywords]
        nodes = self.argument_nodes(call)
        pieces = [nodes[i] for i in range(len(kinds))]
        positions = gast.Tuple([gast.Constant(i, None) for i in self.active_positions(call)], gast.Load())
        layout = gast.Tuple([gast.Constant(k, None) for k in kinds], gast.Load())
        dispatch = self.helper("spread_call_with_pullback", _spread_dispatch())
        return gast.Call(_name(dispatch), [self.callee(call.func), positions, layout] + pieces, [])

    def derived_callee(self, callee, wrt, stmt):
        """`self.derived` of a callee; an error with no place in a file (a callee made by ``exec``)
        is located at the call instead, so the user sees which call it is."""
        try:
            return self.derived(callee, wrt, self.facts_for(stmt.value, _python_function(callee)))
        except DifferentiationError as error:
            if error.filename is not None and not error.filename.startswith("<"):
                raise
            raise self.source.error(stmt.node, error.message, *[note.text for note in error.notes]) from None

    def active_positions(self, call):
        """Active arguments as positions (positional then keyword); -1 is a method's object."""
        nodes = list(call.args) + [k.value for k in call.keywords]
        positions = [i for i, node in enumerate(nodes) if self.node_active(node)]
        if self.is_method_call(call) and self.node_active(call.func.value):
            positions.insert(0, -1)
        elif self.is_object_call(call) and self.node_active(call.func):
            positions.insert(0, -1)
        return positions

    def is_method_call(self, call):
        func = call.func
        return (isinstance(func, gast.Attribute) and isinstance(func.value, gast.Name)
                and func.value.id in self.resolver.locals)

    def argument_nodes(self, call):
        """The nodes `active_positions` counts, with the method's object first when it is active
        (for ``*xs`` the sequence itself)."""
        nodes = dict(enumerate([a.value if isinstance(a, gast.Starred) else a for a in call.args]
                               + [k.value for k in call.keywords]))
        if self.is_method_call(call):
            nodes[-1] = call.func.value
        elif self.is_object_call(call):
            nodes[-1] = call.func
        return nodes

    def is_object_call(self, call):
        """``layer(x)``: a local called; position -1 is the called object itself."""
        return isinstance(call.func, gast.Name) and call.func.id in self.resolver.locals

    def node_active(self, node):
        return any(isinstance(n, gast.Name) and self.active(n.id) for n in gast.walk(node))

    def active_parameters(self, target, call):
        """The callee's parameters bound to active arguments, in the callee's order."""
        bound = self.bind(target, call)
        return tuple(p for p in own_signature(target).parameters
                     if p in bound and self.node_active(bound[p]))

    def bind(self, target, call):
        try:
            return own_signature(target).bind(
                *call.args, **{k.arg: k.value for k in call.keywords}).arguments
        except TypeError as e:
            raise self.source.error(call, f"this call does not match {_short_name(target)}"
                                          f"{own_signature(target)}", str(e)) from None

    # -- pullback

    # -- pullback

    def gradient_names(self):
        """The adjoints the pullback returns: the names its reader looks for, kept by copy propagation."""
        return {self.adjoints[p] for p in self.wrt if p in self.adjoints}

    def gradient_return(self):
        returns = []
        for param in self.wrt:
            if param in self.defined:
                returns.append(_name(self.adjoint(param)))
            else:
                returns.append(gast.parse(self.zero_text(param)).body[0].value)
        value = returns[0] if len(returns) == 1 else gast.Tuple(returns, gast.Load())
        return unparse(gast.Return(value=value))

    def reverse_block(self, statements, loop):
        """The pullback of a block: its statements' adjoints in reverse, with comments.

        `loop` is the innermost enclosing loop, or None.  Adjoints of the
        names a statement assigns are spent once its adjoint statements are
        written, so a loop's next (earlier) pass starts them afresh.
        """
        lines = []
        origin = None
        for stmt in reversed(statements):
            if isinstance(stmt, If):
                lines.extend(self.reverse_if(stmt, loop))
                origin = None
                continue
            if isinstance(stmt, Loop):
                lines.extend(self.reverse_loop(stmt))
                origin = None
                continue
            emitted = self.adjoint_statements(stmt, self.ops[id(stmt)])
            for name in targets(stmt):
                self.defined.discard(name)
                self.owned.discard(name)
            if emitted:
                if stmt.origin is not origin and not (isinstance(stmt, Assign) and stmt.copy):
                    origin = stmt.origin
                    lines.append(self.comment(origin))
                lines.extend(unparse(s) for s in emitted)
        return lines

    def forward_dropped(self, forward, pullback, result_text):
        """``a = b = None`` for the forward's values the pullback never reads.

        In the fused gradient function the forward's locals would otherwise
        live until it returns (in a value-with-pullback function they die when
        the forward returns): a loop's last value, a temporary of a line.
        """
        _, written = _names_used(forward)
        # What the pullback part reads before it binds it itself (a name a replayed tape binds
        # again, `for run, h_1 in replay(tape)`, is not the forward's `h_1`).
        reads = _read_before_bound(pullback) | _loads(result_text)
        # Not parameters (the caller holds them), floats, or what loop headers bind (indices,
        # elements of sequences the caller holds).
        kept = set(self.body.params) | self.known_floats | self.plain_numbers()
        for loop in loops(self.statements):
            kept.update(_loop_names(loop))
        names = {n for n in written if n not in reads and n not in kept}
        # A copy aliases a value another name holds: releasing it alone frees nothing.
        copies = {s.target: s.value.id for s in self.flat if isinstance(s, Assign) and isinstance(s.value, gast.Name)}
        names = sorted(n for n in names if n not in copies or copies[n] in names)
        return [" = ".join(names + ["None"])] if names else []

    def plain_numbers(self):
        """Locals that hold Python numbers or bools whatever the arguments: constants, conditions,
        counters (``it = it + 1``). Releasing one frees nothing."""
        found = set(self.known_floats)
        changed = True
        while changed:
            changed = False
            for stmt in self.flat:
                if not isinstance(stmt, Assign) or stmt.target in found:
                    continue
                value = stmt.value
                if isinstance(value, gast.Constant):
                    plain = value.value is None or isinstance(value.value, (bool, int, float))
                elif isinstance(value, (gast.Compare, gast.BoolOp, gast.BinOp, gast.UnaryOp, gast.Name)):
                    # Of plain numbers only (a comparison of arrays is an array).
                    plain = all(n.id in found for n in gast.walk(value)
                                if isinstance(n, gast.Name) and n.id in self.ssa)
                else:
                    plain = False
                if plain:
                    found.add(stmt.target)
                    changed = True
        return found

    def shape_stand_ins(self, pullback, d_result, result):
        """``h = shape_only(h)`` for each forward value the pullback reads only for its shape.

        ``np.sum(h)``'s pullback needs h's shape and dtype, not its numbers;
        a stand-in lets the forward's last activation be freed when it returns.
        """
        import ast

        helpers = {}
        for helper, positions in support.SHAPE_ARGUMENTS.items():
            cell = self.cell_ids.get(id(getattr(support, helper)))
            if cell is not None:
                helpers[cell] = positions
        if not helpers:
            return []
        tree = ast.parse("def pullback({}):\n{}".format(
            d_result, "\n".join("    " + line for line in pullback)))
        shaped, other = set(), set()
        allowed = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
                allowed.update(id(node.args[i]) for i in helpers[node.func.id] if i < len(node.args))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (shaped if id(node) in allowed and isinstance(node.ctx, ast.Load) else other).add(node.id)
        params = set(self.body.params)
        # Only names bound on every path: those the function's top-level statements assign.
        bound = {t for stmt in self.statements if not isinstance(stmt, (If, Loop))
                 for t in targets(stmt)}
        # A display is a list or a tuple, never an array: a stand-in would free nothing.
        displays = {s.target for s in self.flat
                    if isinstance(s, Assign) and isinstance(s.value, (gast.Tuple, gast.List, gast.Dict))}
        names = sorted(n for n in shaped - other
                       if n in bound and n not in params and n != result
                       and n not in self.known_floats and n not in displays)
        if not names:
            return []
        stand_in = self.helper("shape_only", support.shape_only)
        return [f"{n} = {stand_in}({n})" for n in names]

    def release_candidates(self, d_result, forward_names):
        """(which names ``del`` may release in the pullback, helpers that keep their argument,
        the `hand_over` helper and the pullbacks a cotangent may be handed over to, or None).

        Released: cotangents and the values the forward computed; not floats,
        values that carry no derivative (a loop index), items of the caller's
        sequences (a weight matrix of a list) or the pullback's parameter:
        someone else holds those. See `release`.
        """
        primal = {adjoint: name for name, adjoint in self.adjoints.items() if isinstance(name, str)}
        items = {s.target for s in self.flat
                 if isinstance(s, Assign) and self.ops[id(s)].kind == "subscript"}

        def worth_releasing(name):
            if name == d_result:
                return False
            if name in forward_names:
                return self.active(name) and name not in self.known_floats and name not in items
            return primal.get(name) not in self.known_floats

        keeps = {self.cell_ids[id(tangents.add_item)]} if id(tangents.add_item) in self.cell_ids else set()
        callees = self.hands_to - self.never_hand_to     # a name never stands for both; but if it did
        hands = (self.helper("hand_over", tangents.hand_over), callees) if callees else None
        return worth_releasing, keeps, hands

    def zero(self, name, like=None):
        return f"{self.adjoint(name)} = {self.zero_text(like or name)}"

    def zero_text(self, name):
        """A zero cotangent for local `name`: ``0.0`` for a float, else ``zeros_like(name)``."""
        if name in self.known_floats:
            return "0.0"
        if name in self.closures:
            return "{}"     # a closure's tangent: a dict by the names it reads, here none yet
        return f"{self.helper('zeros_like', tangents.zeros_like)}({name})"

    def reverse_if(self, stmt, loop):
        before = set(self.defined)
        body = self.reverse_block(stmt.body, loop)
        after_body, self.defined = self.defined, set(before)
        orelse = self.reverse_block(stmt.orelse, loop)
        after_else = self.defined
        for name in sorted(after_body - after_else):
            orelse.append(self.zero(name))
        for name in sorted(after_else - after_body):
            body.append(self.zero(name))
        self.defined = after_body | after_else
        if not body and not orelse:
            return []
        if loop is not None:
            body = self.restore_branch(stmt.body, body, loop)
            orelse = self.restore_branch(stmt.orelse, orelse, loop)
        lines = [self.comment(stmt.origin), f"if {unparse(stmt.test)}:"]
        lines.extend(_indent(body or ["pass"]))
        if orelse:
            lines.append("else:")
            lines.extend(_indent(orelse))
        return lines

    def restore_branch(self, block, lines, loop):
        """In a loop, a branch keeps the values its pullback reads on a tape of its own."""
        needed = _needed(lines, self._assigned_in(block))
        if not needed:
            return lines
        tape = self.namer.fresh("branch_tape")
        values = self.namer.fresh("branch_values")
        self.saves[id(block)] = (tape, needed)
        plan = self.loop_plans.setdefault(id(loop), _LoopPlan())
        plan.branch_tapes.append(tape)
        plan.branch_iterators.append((values, tape))
        return [f"{_tuple_text(needed, bare=True)} = next({values})"] + lines

    def reverse_loop(self, loop):
        inner = list(flatten(loop.condition)) + list(flatten(loop.body))
        assigned = set(_loop_names(loop))
        for stmt in inner:
            assigned.update(targets(stmt))
        for stmt in loops(loop.body):
            assigned.update(_loop_names(stmt))
        if not any(self.active(t) for s in inner for t in targets(s)):
            return []
        before = []
        after = []
        by_item = self.accumulated_by_item(inner)
        # Outer values the body reads get contributions on every pass: start them at zero.
        for name in self.outer_inputs(inner, assigned):
            if name not in self.defined and name in by_item:
                lazy = self.helper("lazy_zeros", tangents.lazy_zeros)
                before.append(f"{self.adjoint(name)} = {lazy}({name})")
                if self.outlined and name in self.body.params:
                    self.lazy_params.add(name)
                else:
                    fill = self.helper("filled", tangents.filled)
                    after.append(f"{self.adjoint(name)} = {fill}({self.adjoint(name)}, {name})")
                self.defined.add(name)
                self.owned.add(name)
            elif name not in self.defined:
                before.append(self.zero(name))
                self.defined.add(name)
                self.owned.add(name)
            elif name in by_item and name not in self.owned:
                copy_name = self.helper("owned_copy", tangents.owned_copy)
                before.append(f"{self.adjoint(name)} = {copy_name}({self.adjoint(name)})")
                self.owned.add(name)
        for header in loop.headers:
            if self.active(header) and header not in self.defined:
                before.append(self.zero(header, loop.exits.get(header)))
                self.defined.add(header)
        # A value the last pass leaves for code after the loop (not carried from pass to pass)
        # has its cotangent from that code in the last pass only: earlier passes start at zero.
        left = [name for name in loop.exits if name not in loop.headers and name in self.defined]
        plan = self.loop_plans.setdefault(id(loop), _LoopPlan())
        body = self.reverse_block(loop.body, loop)
        for header in loop.headers:
            if self.active(header) and header not in self.defined:
                body.append(self.zero(header))
                self.defined.add(header)
        for name in left:
            # Shaped like the value after the loop, as a header's zero is: zeros_like(name) would
            # keep each pass's value on the tape for its shape alone (a segmented run's output).
            body.append(self.zero(name, loop.exits[name]))
            self.defined.add(name)
        direct = self._assigned_in(loop.body) | set(_loop_names(loop)) | self._assigned_in(loop.condition)
        needed = _needed(body, direct)
        for values, tape in plan.branch_iterators:
            before.append(f"{values} = {self.helper('replay', tangents.replay)}({tape})")
            self.replays = True
        if needed:
            self.replays = True
            plan.tape = self.namer.fresh("tape")
            self.saves[id(loop.body)] = (plan.tape, needed)
            replay = self.helper("replay", tangents.replay)
            header = f"for {_tuple_text(needed, bare=True)} in {replay}({plan.tape}):"
        else:
            plan.counter = self.namer.fresh("iterations")
            header = f"for {self.namer.fresh('step')} in range({plan.counter}):"
        return [self.comment(loop.origin)] + before + [header] + _indent(body or ["pass"]) + after

    def outer_inputs(self, inner, assigned):
        """Active names from outside the loop that statements inside it read, in first-use order."""
        names = []
        for stmt in inner:
            for name in self.ops[id(stmt)].diff_inputs:
                if name not in assigned and self.active(name) and name not in names:
                    names.append(name)
        return names

    def accumulated_by_item(self, inner):
        """Names whose adjoints a subscript inside the loop adds into, item by item."""
        return {s.value.value.id for s in inner
                if isinstance(s, Assign) and self.ops[id(s)].kind == "subscript"
                and isinstance(s.value.value, gast.Name)}

    def _assigned_in(self, block):
        """Names a block assigns itself (not in blocks inside it), with the tapes made there."""
        names = set()
        for stmt in block:
            names.update(targets(stmt))
            if isinstance(stmt, Assign) and ("pullback", stmt.target) in self.adjoints:
                names.add(self.adjoints[("pullback", stmt.target)])   # a callee's pullback
            if isinstance(stmt, If):
                names.update(stmt.joined)      # assigned on every path through the branches
            if isinstance(stmt, Loop):
                plan = self.loop_plans.get(id(stmt))
                if plan is not None:
                    names.update(n for n in [plan.tape, plan.counter] + plan.branch_tapes if n)
        return names

    def adjoint_statements(self, stmt, op):
        """The statements that pull the cotangent of `stmt`'s result back to its operands."""
        if isinstance(stmt, Effect) and op.kind == "closure":
            name = stmt.stmt.name
            if not self.active(name) or name not in self.defined:
                return []
            if name in op.diff_inputs:
                raise self.source.error(
                    stmt.origin, f"'{stmt.origin.name}' calls itself and reads differentiated values of "
                                 "the function that defines it: such recursive closures are not supported yet",
                    "define it at module level and pass those values as arguments")
            return self.closure_adjoints(op, _name(self.adjoint(name)))
        if isinstance(stmt, (Return, Effect)):
            return []
        if isinstance(stmt, Unpack):
            if not any(self.active(t) for t in stmt.targets) or not self.active(stmt.source):
                return []
            parts = []
            zeros = None
            for t in stmt.targets:
                if t in self.defined:
                    parts.append(_name(self.adjoint(t)))
                elif t in stmt.flags:
                    parts.append(gast.Constant(None, None))     # a jump flag: a boolean, no cotangent
                else:
                    zeros = zeros or self.helper("zeros_like", tangents.zeros_like)
                    parts.append(_call(_name(zeros), _name(t)))
            return self.accumulate([(stmt.source, gast.Tuple(parts, gast.Load()))])
        target = stmt.target
        if not self.active(target):
            return []
        self.check_differentiable(stmt, op)
        if target not in self.defined:
            # Nothing reading it passed a cotangent (a configuration field given to a rule's
            # parameter without a derivative, such as with_derivative's hook): its adjoint is zero.
            return []
        d = _name(self.adjoint(target))
        kind = op.kind
        if kind == "constant":
            return []   # one branch gives a constant where another gives a varied value
        if kind == "copy":
            return self.accumulate([(stmt.value.id, d)])
        if kind == "rule":
            return self.rule_adjoints(stmt, op, d)
        if kind == "literal":
            return self.literal_adjoints(stmt, d)
        if kind == "subscript":
            base = stmt.value.value
            index = self.index_expression(stmt.value.slice)
            if base.id in self.owned and base.id in self.defined:
                # In a loop: add into the sequence's cotangent in place, not a full-size zero per pass.
                helper = _name(self.helper("add_item", tangents.add_item))
                return [_assign(self.adjoint(base.id), _call(helper, _name(self.adjoint(base.id)), index, d))]
            helper = _name(self.helper("subscript_cotangent", tangents.subscript_cotangent))
            return self.accumulate([(base.id, _call(helper, d, base, index))])
        if kind in ("vjp", "transform", "dynamic"):
            return self.call_adjoints(stmt, op, d)
        if kind == "checkpoint":
            return self.checkpoint_adjoints(stmt, op, d)
        if kind == "attribute":
            base = stmt.value.value
            helper = _name(self.helper("attribute_cotangent", tangents.attribute_cotangent))
            return self.accumulate([(base.id, _call(helper, d, base, gast.Constant(stmt.value.attr, None)))])
        if kind == "construct":
            return self.construct_adjoints(stmt, op, d)
        if kind == "closure":
            return self.closure_adjoints(op, d)
        raise AssertionError(f"unexpected active operation {kind}")

    def closure_adjoints(self, op, d):
        """A nested ``def`` or ``lambda``: its cotangent holds one for each local it reads, by name."""
        helper = _name(self.helper("captured_cotangent", tangents.captured_cotangent))
        return self.accumulate([(name, _call(helper, d, gast.Constant(key, None), _name(name)))
                                for key, name in op.binding.items()])

    def check_differentiable(self, stmt, op):
        if op.kind == "vjp":
            self.check_vjp_parameters(stmt, op)
        if op.kind == "integer":
            raise self.source.error(
                stmt.node, "expression is not differentiable",
                f"cannot differentiate through a non-differentiable result of '{op.description}'; "
                "do you want to use 'without_derivative'?")
        if op.kind == "opaque":
            raise self.source.error(
                stmt.node, f"{op.description} is not differentiable",
                "compute the value with differentiable operations, or wrap it in "
                "'without_derivative' if no derivative should flow through it")
        if op.kind == "unresolved":
            if not self.strict:
                raise op.callee
            raise self.source.error(stmt.node, f"name {op.description} is not defined")
        if op.kind == "unknown":
            name = op.description
            raise self.source.error(
                stmt.node, f"function '{name}' is not differentiable",
                "adtrans has no derivative for it and cannot read its source; register one with\n"
                f"    @adtrans.derivative(of={name})\n"
                f"    def {_short_name(op.callee)}_vjp(...):\n"
                "        return value, lambda cotangent: ...\n"
                "or wrap the call in 'without_derivative' if no derivative should flow through it")

    def check_vjp_parameters(self, stmt, op):
        """A derivative registered with `wrt` gives tangents for those parameters only: an argument
        carrying a derivative into another is an error, as it is when the function is differentiated
        directly (`api._from_vjp`)."""
        entry = registry.lookup_user_vjp(op.callee)
        if entry is None or entry.wrt is None or entry.signature is None:
            return
        call = stmt.value
        try:
            bound = entry.signature.bind(*call.args, **{k.arg: k.value for k in call.keywords}).arguments
        except TypeError:
            return
        for name, value in bound.items():
            # What '*args' collects is a tuple of nodes, and what '**kwargs' does a dict.
            nodes = value.values() if isinstance(value, dict) else value if isinstance(value, tuple) else [value]
            if name not in entry.wrt and any(self.node_active(node) for node in nodes):
                raise self.source.error(
                    stmt.node, f"the registered derivative of '{op.description}' gives no tangent for "
                    f"'{name}', but the argument passed for it carries a derivative",
                    f"register the derivative with wrt= naming '{name}' too, or wrap the argument in "
                    "'without_derivative' if no derivative should flow through it")

    def accumulate(self, contributions):
        """Add each (local, expression) contribution to that local's adjoint."""
        statements = []
        order = []
        by_name = {}
        for name, expr in contributions:
            if not self.active(name):
                continue
            if name not in by_name:
                order.append(name)
                by_name[name] = []
            by_name[name].append(expr)
        for name in order:
            exprs = by_name[name]
            target = self.adjoint(name)
            numeric = name in self.numeric
            total = exprs[0]
            for e in exprs[1:]:
                total = _add(total, e) if numeric else self.generic_add(total, e)
            if name in self.defined and numeric and name in self.owned and name not in self.known_floats:
                # An array this pullback made (a zero before a loop): add into it, no new array
                # per pass.
                self.defined.add(name)
                statements.append(gast.AugAssign(_store(target), gast.Add(), total))
                continue
            if name in self.defined and name in self.owned and name not in self.known_floats:
                # The same for a value not proved a number or an array (it may be a list).
                helper = _name(self.helper("add_into", tangents.add_into))
                statements.append(_assign(target, _call(helper, _name(target), total)))
                continue
            if name in self.defined:
                total = _add(_name(target), total) if numeric else self.generic_add(_name(target), total)
            self.defined.add(name)
            statements.append(_assign(target, total))
        return statements

    def generic_add(self, a, b):
        return _call(_name(self.helper("add_tangents", tangents.add)), a, b)

    def literal_adjoints(self, stmt, d):
        value = stmt.value
        contributions = []
        if isinstance(value, gast.Dict):
            for key, element in zip(value.keys, value.values):
                if isinstance(element, gast.Name):
                    contributions.append(
                        (element.id, gast.Subscript(d, clone(key), gast.Load())))
        else:
            for i, element in enumerate(value.elts):
                if isinstance(element, gast.Name):
                    contributions.append((element.id, gast.Subscript(d, gast.Constant(i, None), gast.Load())))
        return self.accumulate(contributions)

    def rule_adjoints(self, stmt, op, d):
        rule = op.rule
        constants = {}
        for param, node in op.binding.items():
            if isinstance(node, gast.Constant):
                constants[param] = node.value
            elif not isinstance(node, gast.AST):
                constants[param] = node
        case = rule.case_for(constants)
        broadcasting = _broadcast_params(rule, case)
        statements = []
        contributions = []
        for param, node in op.binding.items():
            if not isinstance(node, gast.AST) or not self.node_active(node):
                continue
            template = rule.template(case, param)
            if template is None and isinstance(node, gast.Name) and node.id in self.fields:
                continue    # a field of an active object used as configuration (a mode, a hook)
            if template is None and isinstance(node, gast.Name) and node.id in self.closures:
                continue    # a function the rule only calls to choose (a sort key): no derivative
            if template is None and rule.fn is with_item and param == "index":
                continue    # a key or an index: it came with differentiated values (d.items()), it has none
            if isinstance(template, gast.Constant) and template.value is None:
                continue    # read only for its shape (np.full_like's a): a zero, nothing to add
            if template is None:
                raise self.source.error(
                    stmt.node, f"{rule.name} is not differentiable with respect to its argument '{param}'",
                    "pass a constant there, or wrap the argument in 'without_derivative'")
            expr = self.instantiate(template, rule, op, stmt.target, d, param, broadcasting)
            statements += self.distribute(node, expr, f"d_{param}", contributions)
        return statements + self.accumulate(contributions)

    def distribute(self, node, expr, base, contributions):
        """Split a cotangent over a (possibly nested) literal tuple or list of arguments."""
        if isinstance(node, gast.Name):
            contributions.append((node.id, expr))
            return []
        if not isinstance(node, (gast.Tuple, gast.List)):
            return []
        parts = self.namer.fresh(base)
        statements = [_assign(parts, expr)]
        for i, element in enumerate(node.elts):
            if self.node_active(element):
                part = gast.Subscript(_name(parts), gast.Constant(i, None), gast.Load())
                statements += self.distribute(element, part, base, contributions)
        return statements

    def instantiate(self, template, rule, op, target, d, param, broadcasting):
        """The template with arguments, result, cotangent and helpers substituted."""
        binding = op.binding
        expr = clone(template)
        transformer = _Substitute(self, rule, binding, target, d)
        expr = _FoldConstants().visit(transformer.visit(expr))
        return _Unbroadcast(self, binding, broadcasting).visit(expr)

    def call_adjoints(self, stmt, op, d):
        call = stmt.value
        pullback = _call(_name(self.pullback_of(stmt.target)), d)
        if op.kind == "dynamic":
            nodes = self.argument_nodes(call)
            targets = [nodes[i] for i in self.active_positions(call)]
            self.never_hand_to.add(self.pullback_of(stmt.target))
        elif op.kind == "vjp":
            targets = self.vjp_targets(op.callee, call)
            pullback = self.checked_vjp_tangents(op.callee, op.description, targets, pullback)
            self.never_hand_to.add(self.pullback_of(stmt.target))
        else:
            target_fn = _python_function(op.callee)
            bound = self.bind(target_fn, call)
            wrt = self.active_parameters(target_fn, call)
            targets = [bound[p] for p in wrt]
            self.hand_to(self.pullback_of(stmt.target), self.derived_callee(op.callee, wrt, stmt))
        return self.unpack_cotangents(targets, pullback, stmt.target)

    def hand_to(self, name, derived):
        """Let the pullback part hand cotangents over to `name` if `derived` takes them over.

        `name` is a generated pullback, or a value-with-pullback function whose
        pullback is called at once; `derived` is that generated function (a
        late-bound stand-in while it is being transformed says nothing). Never
        a user's derivative or a rule: only code that calls `take_over`.
        """
        if getattr(derived, "takes_over", False):
            self.hands_to.add(name)

    def checkpoint_adjoints(self, stmt, op, d):
        """A checkpointed callee: the forward kept only its arguments; run its forward again now."""
        self.replays = True
        call = stmt.value
        target = _python_function(op.callee)
        if registry.lookup_user_vjp(target) is not None:
            # Its registered derivative runs again, as the transform of its source would.
            again = gast.Subscript(self.vjp_call(target, call, op.description), gast.Constant(1, None),
                                   gast.Load())
            targets = self.vjp_targets(target, call)
            pulled = self.checked_vjp_tangents(target, op.description, targets, gast.Call(again, [d], []))
            return self.unpack_cotangents(targets, pulled, stmt.target)
        wrt = self.active_parameters(target, call)
        derived = self.derived_callee(op.callee, wrt, stmt)
        func = _name(self.helper(f"{_short_name(op.callee)}_value_with_pullback", derived))
        self.hand_to(func.id, derived)
        bound = self.bind(target, call)
        again = gast.Subscript(self.replaying_random_states(func, call, bound), gast.Constant(1, None), gast.Load())
        targets = [bound[p] for p in wrt]
        lazy = getattr(derived, "lazy_params", ())
        filling = {i for i, p in enumerate(wrt) if p in lazy}
        # One expression: the recomputed pass's pullback (and what it keeps) is freed once used.
        return self.unpack_cotangents(targets, gast.Call(again, [d], []), stmt.target, filling)

    def replaying_random_states(self, func, call, bound):
        """``func(args)``, where a generator the call drew from is given again as it was before
        (``replayed(rng_state)``), and the global ones are set so (`randomness`)."""
        states = getattr(call, "adtrans_random", None)
        args, keywords = list(call.args), list(call.keywords)
        if not states:
            return gast.Call(func, args, keywords)
        replayed = {id(bound[p]): state for p, state in states.items() if p is not None}
        helper = _name(self.helper("replayed", randomness.replayed))

        def argument(node):
            return _call(clone(helper), _name(replayed[id(node)])) if id(node) in replayed else node

        args = [argument(a) for a in args]
        keywords = [gast.keyword(k.arg, argument(k.value)) for k in keywords]
        if None in states:
            wrapper = _name(self.helper("with_random_state", randomness.with_random_state))
            return gast.Call(wrapper, [_name(states[None]), func] + args, keywords)
        return gast.Call(func, args, keywords)

    def construct_adjoints(self, stmt, op, d):
        """``p = Point(x, y)``: each active argument gets the tangent of the field it sets."""
        call = stmt.value
        bound = self.bind(op.callee, call)
        active = [(name, node) for name, node in bound.items() if self.node_active(node)]
        helper = _name(self.helper("field_cotangents", tangents.field_cotangents))
        names = gast.Tuple([gast.Constant(name, None) for name, _ in active], gast.Load())
        pulled = _call(helper, d, clone(call.func), names)
        return self.unpack_cotangents([node for _, node in active], pulled, stmt.target)

    def vjp_targets(self, callee, call):
        """The argument nodes a user derivative's pullback returns cotangents for, in order."""
        signature, names = _vjp_tangent_names(callee)
        if signature is None:
            return list(call.args)
        bound = signature.bind(*call.args, **{k.arg: k.value for k in call.keywords})
        bound.apply_defaults()
        # A '*args' parameter's tangent is a tuple: one for each argument it collects.
        star = next((n for n, p in signature.parameters.items() if p.kind is p.VAR_POSITIONAL), None)
        return [gast.Tuple(list(bound.arguments.get(n, ())), gast.Load()) if n == star
                else bound.arguments.get(n) for n in names]

    def checked_vjp_tangents(self, callee, description, targets, pulled):
        """`pulled`, a call of the pullback of `callee`'s user derivative returning the cotangents of
        `targets`; when there are several (it is then indexed), ``checked_tangents(pulled, f_vjp,
        names)``: a pullback returning one array for several parameters is the user's mistake to
        report, not an array to index."""
        if len(targets) < 2:
            return pulled
        names = _vjp_tangent_names(callee)[1] or tuple(str(i) for i in range(len(targets)))
        check = _name(self.helper("checked_tangents", _checked_tangents()))
        return _call(check, pulled, self.vjp_name(callee, description),
                     gast.Tuple([gast.Constant(n, None) for n in names], gast.Load()))

    def unpack_cotangents(self, targets, pullback, base, filling=()):
        """Assign a pullback's cotangent(s) for `targets` and add them to the adjoints.

        The cotangents at positions in `filling` may hold None for zeros (`Generated.lazy_params`):
        added to an adjoint that is there they stay so, assigned to a new one they are filled.
        """
        def filled(i, node, part):
            if i in filling and (not isinstance(node, gast.Name) or node.id not in self.defined):
                return _call(_name(self.helper("filled", tangents.filled)), part, clone(node))
            return part

        if len(targets) == 1:
            node = targets[0]
            pullback = filled(0, node, pullback)
            if isinstance(node, gast.Name):
                return self.accumulate([(node.id, pullback)])
            return self.accumulate_structured(node, pullback, base)
        parts = self.namer.fresh(f"d_{base}_arguments")
        statements = [_assign(parts, pullback)]
        for i, node in enumerate(targets):
            part = filled(i, node, gast.Subscript(_name(parts), gast.Constant(i, None), gast.Load()))
            if isinstance(node, gast.Name):
                statements += self.accumulate([(node.id, part)])
            elif node is not None:
                statements += self.accumulate_structured(node, part, base)
        return statements

    def index_expression(self, index):
        """An index as a value: ``x[1:2, None]`` reads ``(slice(1, 2, None), None)``."""
        if isinstance(index, gast.Slice):
            parts = [p if p is not None else gast.Constant(None, None)
                     for p in (index.lower, index.upper, index.step)]
            return gast.Call(_name(self.helper("slice", slice)), parts, [])
        if isinstance(index, gast.Tuple):
            return gast.Tuple([self.index_expression(e) for e in index.elts], gast.Load())
        return index

    def accumulate_structured(self, node, expr, base):
        if isinstance(node, (gast.Tuple, gast.List)):
            parts = self.namer.fresh(f"d_{base}_parts")
            statements = [_assign(parts, expr)]
            contributions = [(e.id, gast.Subscript(_name(parts), gast.Constant(i, None), gast.Load()))
                             for i, e in enumerate(node.elts) if isinstance(e, gast.Name)]
            return statements + self.accumulate(contributions)
        return []


class _Substitute(gast.NodeTransformer):
    """Replaces a template's names: parameters by arguments, y and d_y, helpers by cells."""

    def __init__(self, transform, rule, binding, target, d):
        self.transform = transform
        self.rule = rule
        self.binding = binding
        self.target = target
        self.d = d

    def visit_Name(self, node):
        if node.id == "d_y":
            return clone(self.d)
        if node.id == "y":
            return _name(self.target)
        if node.id in self.binding:
            value = self.binding[node.id]
            if isinstance(value, gast.AST):
                return clone(value)
            return gast.Constant(value, None)
        if node.id in self.rule.namespace:
            return _name(self.transform.helper(node.id, self.rule.namespace[node.id]))
        raise AssertionError(f"rule {self.rule.name}: unknown name {node.id!r} in a template")


class _FoldConstants(gast.NodeTransformer):
    """``x ** (3 - 1)`` is ``x ** 2``: arithmetic on numbers a template was given, done once here
    (Python would do the same operation on the same numbers when the pullback runs)."""

    _OPERATORS = {gast.Add: operator.add, gast.Sub: operator.sub, gast.Mult: operator.mul}

    def visit_BinOp(self, node):
        self.generic_visit(node)
        fn = self._OPERATORS.get(type(node.op))
        if fn is not None and is_number(node.left) and is_number(node.right):
            return gast.Constant(fn(node.left.value, node.right.value), None)
        return node


class _Unbroadcast(gast.NodeTransformer):
    """Drops ``unbroadcast(g, x)`` where nothing can broadcast against x.

    That is when every other broadcasting operand is a Python scalar (a
    number, or a local known to hold a float) or x itself.
    """

    def __init__(self, transform, binding, broadcasting):
        self.transform = transform
        self.binding = binding
        self.broadcasting = broadcasting
        self.unbroadcast_names = {transform.cell_ids.get(id(unbroadcast)), "unbroadcast"}

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        if isinstance(func, gast.Name) and func.id in self.unbroadcast_names and len(node.args) == 2:
            # Only rules of several broadcasting operands (x + y), not broadcast_to-like ones.
            operand = node.args[1]
            others = [self.binding[p] for p in self.broadcasting
                      if p in self.binding and not _same_node(self.binding[p], operand)]
            if len(self.broadcasting) >= 2 and all(
                    isinstance(o, gast.AST) and self.transform.is_scalar(o) for o in others):
                return node.args[0]
            if isinstance(operand, gast.Name):
                root = self.transform.shape_root(operand.id)
                product = self.transform.matmul_sources.get(root)
                if product is not None:
                    # The shape of a @ b from a and b, which the matmul's own pullback keeps.
                    shape = _name(self.transform.helper("matmul_shape", matmul_shape))
                    node.args[1] = gast.Call(shape, [clone(n) for n in product], [])
                else:
                    node.args[1] = _name(root)
        return node


def _same_node(a, b):
    if isinstance(a, gast.Name) and isinstance(b, gast.Name):
        return a.id == b.id
    return a is b


def _broadcast_params(rule, case):
    """The parameters that appear as the target shape of an ``unbroadcast`` in a case's templates."""
    params = []
    for param in case.adjoints:
        template = rule.template(case, param)
        for node in gast.walk(template):
            if (isinstance(node, gast.Call) and isinstance(node.func, gast.Name)
                    and node.func.id == "unbroadcast" and len(node.args) == 2
                    and isinstance(node.args[1], gast.Name) and node.args[1].id not in params):
                params.append(node.args[1].id)
    return params


def _dispatch():
    from adtrans.api import call_with_pullback
    return call_with_pullback


def _spread_dispatch():
    from adtrans.api import spread_call_with_pullback
    return spread_call_with_pullback


def _vjp_tangent_names(callee):
    """(the signature of `callee`'s user derivative, or None; the parameters its pullback returns
    tangents for, in order, or None when it has no signature)."""
    entry = registry.lookup_user_vjp(callee)
    signature = entry.signature if entry is not None else _signature_or_none(callee.vjp)
    if entry is not None and entry.wrt is not None:
        return signature, entry.wrt
    return signature, None if signature is None else tuple(signature.parameters)


def _checked_tangents():
    from adtrans.api import checked_tangents
    return checked_tangents


def _user_vjp_of(callee):
    entry = registry.lookup_user_vjp(callee)
    if entry is not None:
        return entry.vjp
    return callee.vjp


def _python_function(callee):
    return getattr(callee, "function", callee)


def _short_name(fn):
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return "lambda" if name == "<lambda>" else name


def _signature_or_none(fn):
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


@dataclass
class _LoopPlan:
    """What a loop keeps for its pullback: a tape of values per pass, or just a count."""

    tape: str = None
    counter: str = None
    branch_tapes: list = field(default_factory=list)
    branch_iterators: list = field(default_factory=list)


def _insert_before(statements, inserted):
    """Put the statements ``inserted[id(s)]`` before each statement `s` of the blocks of `statements`."""
    for index in range(len(statements) - 1, -1, -1):
        stmt = statements[index]
        if isinstance(stmt, If):
            _insert_before(stmt.body, inserted)
            _insert_before(stmt.orelse, inserted)
        elif isinstance(stmt, Loop):
            _insert_before(stmt.condition, inserted)
            _insert_before(stmt.body, inserted)
        statements[index:index] = inserted.get(id(stmt), [])


def _structures(statements):
    for stmt in statements:
        if isinstance(stmt, If):
            yield stmt
            yield from _structures(stmt.body)
            yield from _structures(stmt.orelse)
        elif isinstance(stmt, Loop):
            yield stmt
            yield from _structures(stmt.condition)
            yield from _structures(stmt.body)


def _released(text, header, parameter, release, take=None):
    """`text` with ``del`` where the pullback's loop values die (`release.release_dead`).

    The pullback's body is the block after the line `header` (its ``def``);
    `take` names `tangents.take_over`, if its parameter may come handed over.
    Runs after copy propagation, which leaves names that ``del`` mentions alone.
    """
    lines = text.split("\n")
    start = lines.index(header) + 1
    depth = 8
    end = start
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" " * depth)):
        end += 1
    body = [line[depth:] for line in lines[start:end]]
    candidates, keeps, hands = release
    released = release_dead(body, parameter, candidates, keeps, hands, take)
    if released is body:
        return text
    return "\n".join(lines[:start] + [" " * depth + line if line else line for line in released]
                     + lines[end:])


def _expression_roots(statements):
    """(statement, expression) for every expression the IR of `statements` evaluates."""
    for stmt in statements:
        if isinstance(stmt, If):
            yield stmt, stmt.test
            yield from _expression_roots(stmt.body)
            yield from _expression_roots(stmt.orelse)
        elif isinstance(stmt, Loop):
            for root in (stmt.header, stmt.test, stmt.break_test):
                if root is not None:
                    yield stmt, root
            yield from _expression_roots(stmt.condition)
            yield from _expression_roots(stmt.body)
        elif isinstance(stmt, Unpack):
            yield stmt, _name(stmt.source)
        elif isinstance(stmt, Effect):
            yield stmt, stmt.stmt
        elif stmt.value is not None:
            yield stmt, stmt.value


def _loop_names(loop):
    """Names a loop's header binds on each pass."""
    names = [n.id for n in gast.walk(loop.target) if isinstance(n, gast.Name)] if loop.target else []
    if loop.index:
        names.append(loop.index)
    return names


def _statement_value(stmt):
    return {Assign: lambda s: s.value, Effect: lambda s: s.stmt, Return: lambda s: s.value,
            Unpack: lambda s: _name(s.source)}[type(stmt)](stmt)


def _statement_loads(stmt):
    return {n.id for n in gast.walk(_statement_value(stmt))
            if isinstance(n, gast.Name) and isinstance(n.ctx, gast.Load)}


def _structure_nodes(stmt):
    nodes = [stmt.test] if isinstance(stmt, If) else [stmt.header, stmt.test, stmt.break_test]
    return [node for node in nodes if node is not None]


def _structure_loads(stmt):
    return {n.id for node in _structure_nodes(stmt) for n in gast.walk(node)
            if isinstance(n, gast.Name) and isinstance(n.ctx, gast.Load)}


def _replace_name(tree, name, value):
    """A copy of `tree` with the name `name` read as `value`."""

    class Replace(gast.NodeTransformer):
        def visit_Name(self, node):
            if node.id == name and isinstance(node.ctx, gast.Load):
                return clone(value)
            return node

    return Replace().visit(clone(tree))


def _names_used(lines):
    """(names read, names written) by some lines of generated code, reads in first-use order."""
    import ast
    import textwrap

    tree = ast.parse(textwrap.dedent("\n".join(lines)))
    reads, writes = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                if node.id not in reads:
                    reads.append(node.id)
            else:
                writes.add(node.id)
    return reads, writes


def _read_before_bound(lines):
    """The names `lines` of generated code may read before they bind them: read on a line before
    (or on) the first line that binds them. Generated code binds a name it reads again before
    reading it (a replayed tape's ``for ..., h_1 in replay(tape)``), or reads the outer one first."""
    import ast
    import textwrap

    first_read, first_bound = {}, {}
    for node in ast.walk(ast.parse(textwrap.dedent("\n".join(lines)))):
        if isinstance(node, ast.Name):
            seen = first_read if isinstance(node.ctx, ast.Load) else first_bound
            seen[node.id] = min(seen.get(node.id, node.lineno), node.lineno)
    return {name for name, line in first_read.items() if line <= first_bound.get(name, line)}


def _loads(text):
    return set(_names_used(text.splitlines())[0]) if text.strip() else set()


def _needed(lines, direct):
    """The forward values `lines` read that `direct` says are assigned in the block being replayed."""
    if not lines:
        return []
    reads, writes = _names_used(lines)
    return [n for n in reads if n in direct and n not in writes]


def _indent(lines, levels=1):
    pad = "    " * levels
    return [pad + line if line else line for line in lines]


def _tuple_text(names, bare=False):
    if len(names) == 1:
        return names[0]
    text = ", ".join(names)
    return text if bare else f"({text})"


def _is_call(node, name):
    return isinstance(node, gast.Call) and isinstance(node.func, gast.Name) and node.func.id == name


def _without_repeated_comments(lines):
    """Drop a source-line comment that repeats the last one at the same indentation, or the one
    just above the block it is in (a loop and its body on one source line, a comprehension)."""
    last = {}
    previous = None     # the last comment written: (depth, text)
    out = []
    for line in lines:
        stripped = line.lstrip()
        depth = len(line) - len(stripped)
        if stripped.startswith("# ") and (last.get(depth) == stripped or (
                previous is not None and previous[0] < depth and previous[1] == stripped)):
            continue
        if stripped.startswith("# "):
            last[depth] = stripped
            previous = (depth, stripped)
        elif stripped.startswith("def "):
            last.clear()
            previous = None
        out.append(line)
    return out


def local_names_in(node):
    return [n for n in gast.walk(node) if isinstance(n, gast.Name)]


def _constant_value(node):
    if isinstance(node, gast.Constant):
        return node.value
    if isinstance(node, gast.UnaryOp) and isinstance(node.operand, gast.Constant):
        return -node.operand.value if isinstance(node.op, gast.USub) else node.operand.value
    return None
