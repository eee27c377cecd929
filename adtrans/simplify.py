"""Scalar simplification of a fused gradient function: the seed folded in, dead forward code gone.

For a function whose result is a Python float, the fused gradient function
starts its pullback with the constant seed ``d_result = 1.0``, and its
forward computes values the pullback never reads: the result itself and the
last operations before it, which `gradient` (the gradient alone) throws
away.  This pass, run on the finished text of that function:

* infers which locals hold Python floats: parameters known to be floats,
  float constants, `math` functions that return floats, arithmetic on
  floats -- the largest set consistent with every binding, so a
  loop-carried float stays a float;
* propagates a float constant bound once (``d_result = 1.0``) into its
  reads and folds ``1.0 * e``, ``e * 1.0``, ``e / 1.0`` and
  ``-1.0 * e`` when `e` is a float (each exact in IEEE arithmetic);
* removes a top-level assignment nothing reads when computing its value
  has no effect and cannot raise: ``+ - *`` of floats, and `math`
  functions on arguments they are defined for (``tanh`` of any float,
  ``sin`` of a value known to be finite, such as another ``sin``).
  Anything that may raise (a division, ``exp``, ``log``, ``sin`` of an
  unknown float, which raises for infinity) stays, so a function that
  fails at a point still fails there.

It also says whether the function's returned gradients are all floats, so
the API can hand them back without checking their types.

The text is edited in place (whole lines deleted, a changed statement's
value re-printed), so the layout and the ``# file.py:LINE:`` comments stay.
"""

import ast
import collections
import copy
import math

from adtrans.codegen import unparse_ast
from adtrans.copyprop import comments_still_used

__all__ = ["simplify_scalar"]

# `math` functions that return a float for float arguments (not the integer-valued ones, the
# predicates, `frexp`/`modf` (tuples) or `prod` (1 for an empty sequence)).
_FLOAT_VALUED = frozenset(
    name for name in dir(math) if callable(getattr(math, name)) and not name.startswith("_")
) - {"ceil", "floor", "trunc", "factorial", "gcd", "lcm", "isqrt", "comb", "perm", "isnan",
     "isinf", "isfinite", "isclose", "frexp", "modf", "prod", "sumprod", "fsum"}
# Defined for every float, infinities and NaN included: they never raise.
_TOTAL = {"tanh": 1.0, "atan": math.pi / 2, "erf": 1.0, "erfc": 2.0, "fabs": None, "copysign": None}
# Defined for every finite float (infinity raises ValueError; NaN gives NaN).
_FINITE_INPUT = {"sin": 1.0, "cos": 1.0, "tan": None}
_LARGE = 1e300     # a bound below this keeps sums and products of a few such values finite


class Scalar:
    """The simplified text, and whether every returned gradient is a Python float."""

    def __init__(self, text, returns_floats):
        self.text = text
        self.returns_floats = returns_floats


def simplify_scalar(text, float_names, resolve):
    """Simplify the one generated function in `text`; see the module docstring.

    `float_names` names the parameters and forward locals the generator knows
    hold Python floats (a replay loop re-binds them from a tape);
    `resolve(name)` is the object a free name of the function stands for
    (or None), so ``math.sin`` can be recognised however it was imported.
    """
    function = ast.parse(text).body[0]
    facts = _Facts(function, set(float_names), resolve)
    constants = facts.single_constants()
    edits = {}          # statement -> its value with the constants folded in
    folder = _Folder(facts, constants)

    def fold(value):
        return folder.visit(copy.deepcopy(value))

    for node in ast.walk(function):
        if (isinstance(node, (ast.Assign, ast.AugAssign, ast.Return)) and node.value is not None
                and node.lineno == node.end_lineno):
            value = fold(node.value)
            if ast.dump(value) != ast.dump(node.value):
                edits[node] = value
    nested = _nest(function, edits, facts, fold)
    deleted = list(nested)
    live = set()
    for stmt in reversed(function.body):
        if stmt in nested:
            continue
        target = _single_target(stmt)
        if target is not None and target not in live and facts.harmless(edits.get(stmt, stmt.value),
                                                                         constants):
            deleted.append(stmt)
            continue
        live.update(_reads(stmt, edits))
    returned = function.body[-1]
    returns_floats = isinstance(returned, ast.Return) and returned.value is not None and all(
        facts.is_float(e) for e in _elements(edits.get(returned, returned.value)))
    return Scalar(_apply(text, edits, deleted), returns_floats)


def _nest(function, edits, facts, fold):
    """Write a float temporary read once, by the next line, into that line; the statements gone.

    ``d_b = -math.sin(b)`` then ``d_a = d_b * math.cos(a)`` becomes
    ``d_a = -math.sin(b) * math.cos(a)``, as the forward writes one source
    line's operations nested.  Both values are arithmetic on floats and
    `math` calls, so evaluating the first later changes nothing.
    """
    loads = collections.Counter()
    for stmt in function.body:
        loads.update(_read_list(stmt, edits))
    gone = set()
    for block in _blocks(function):
        for first, second in zip(block, block[1:]):
            name = _single_target(first)
            if (name is None or len(facts.bindings.get(name, ())) != 1 or loads[name] != 1
                    or not isinstance(second, (ast.Assign, ast.AugAssign))
                    or second.lineno != first.end_lineno + 1 or second.lineno != second.end_lineno):
                continue
            value, into = edits.get(first, first.value), edits.get(second, second.value)
            if (sum(1 for n in ast.walk(into) if isinstance(n, ast.Name) and n.id == name) != 1
                    or not facts.pure(value) or not facts.pure(into)):
                continue
            edits[second] = fold(_Replace(name, value).visit(copy.deepcopy(into)))
            gone.add(first)
    return gone


class _Replace(ast.NodeTransformer):
    def __init__(self, name, value):
        self.name = name
        self.value = value

    def visit_Name(self, node):
        return self.value if node.id == self.name else node


def _blocks(function):
    """Every statement list in `function`, its own body first (not nested functions')."""
    found = [function.body]
    for node in ast.walk(function):
        if node is function or isinstance(node, (ast.FunctionDef, ast.Lambda)):
            continue
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                found.append(block)
    return found


def _read_list(node, edits):
    """Every read (or deletion) of a name in `node`, edited statements' new values instead."""
    if node in edits:
        targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
        found = [n for t in targets if t is not None for n in _read_list(t, edits)]
        found += _read_list(edits[node], edits)
        if isinstance(node, ast.AugAssign):
            found += _stored(node.target)
        return found
    found = [node.id] if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store) else []
    if isinstance(node, ast.AugAssign):
        found += _stored(node.target)     # ``t += v`` reads t
    for child in ast.iter_child_nodes(node):
        found += _read_list(child, edits)
    return found


def _reads(node, edits):
    return set(_read_list(node, edits))


def _elements(node):
    """The leaves of a (nested) tuple display."""
    if isinstance(node, ast.Tuple):
        return [leaf for element in node.elts for leaf in _elements(element)]
    return [node]


def _single_target(stmt):
    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)):
        return stmt.targets[0].id
    return None


class _Facts:
    """Which locals are floats, and what bounds their magnitudes."""

    def __init__(self, function, float_names, resolve):
        self.function = function
        self.resolve = resolve
        self.bindings = {}      # name -> [value expression, "float" for a float parameter, or None]
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                simple = _single_target(node) is not None
                for target in node.targets:
                    for name in _stored(target):
                        self._bind(name, node.value if simple else None)
            elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                self._bind(node.target.id,
                           ast.BinOp(ast.Name(node.target.id, ast.Load()), node.op, node.value))
            else:
                for name in _other_bindings(node):
                    self._bind(name, None)
        args = function.args
        for p in args.posonlyargs + args.args + args.kwonlyargs:
            self._bind(p.arg, None)
        # The largest set of names every binding of which makes a float.
        self.floats = set(self.bindings)
        changed = True
        while changed:
            changed = False
            for name in list(self.floats):
                if name not in float_names and not all(
                        isinstance(v, ast.AST) and self.is_float(v) for v in self.bindings[name]):
                    self.floats.discard(name)
                    changed = True

    def _bind(self, name, value):
        self.bindings.setdefault(name, []).append(value)

    def callee(self, node):
        """The `math` function name a call's func stands for, or None."""
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            obj = getattr(self.resolve(func.value.id), func.attr, None)
        elif isinstance(func, ast.Name):
            obj = self.resolve(func.id)
        else:
            return None
        name = getattr(obj, "__name__", None)
        if name is not None and getattr(math, name, None) is obj:
            return name
        return None

    def is_float(self, node):
        if isinstance(node, ast.Constant):
            return type(node.value) is float
        if isinstance(node, ast.Name):
            return node.id in self.floats
        if isinstance(node, ast.UnaryOp):
            return isinstance(node.op, (ast.USub, ast.UAdd)) and self.is_float(node.operand)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                return self.is_float(node.left) and _is_int(node.right)
            if isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
                sides = (node.left, node.right)
                return (any(self.is_float(s) for s in sides)
                        and all(self.is_float(s) or _is_int(s) for s in sides))
            return False
        if isinstance(node, ast.IfExp):
            return self.is_float(node.body) and self.is_float(node.orelse)
        if isinstance(node, ast.Call):
            return (not node.keywords and self.callee(node) in _FLOAT_VALUED
                    and all(self.is_float(a) or _is_int(a) for a in node.args))
        return False

    def single_constants(self):
        """Locals bound once, at the top level, to a float constant: name -> value."""
        found = {}
        for stmt in self.function.body:
            name = _single_target(stmt)
            if name is None or len(self.bindings.get(name, ())) != 1:
                continue
            value = _constant(stmt.value)
            if type(value) is float:
                found[name] = value
        return found

    def bound(self, node, constants, depth=0):
        """An upper bound of ``abs(node)`` (NaN aside), or None."""
        if depth > 20:
            return None
        if isinstance(node, ast.Constant):
            value = node.value
            return abs(value) if type(value) in (int, float) and abs(value) < _LARGE else None
        if isinstance(node, ast.Name):
            if node.id in constants:
                return abs(constants[node.id])
            values = self.bindings.get(node.id, ())
            if len(values) != 1 or not isinstance(values[0], ast.AST):
                return None
            return self.bound(values[0], constants, depth + 1)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self.bound(node.operand, constants, depth + 1)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
            a = self.bound(node.left, constants, depth + 1)
            b = self.bound(node.right, constants, depth + 1)
            if a is None or b is None:
                return None
            total = a * b if isinstance(node.op, ast.Mult) else a + b
            return total if total < _LARGE else None
        if isinstance(node, ast.Call):
            name = self.callee(node)
            return _TOTAL.get(name) or _FINITE_INPUT.get(name)
        return None

    def pure(self, node):
        """Is `node` arithmetic on floats and `math` calls, which nothing else can observe?"""
        if isinstance(node, (ast.Constant, ast.Name)):
            return True
        if isinstance(node, (ast.UnaryOp, ast.BinOp)):
            return self.is_float(node) and all(self.pure(c) for c in ast.iter_child_nodes(node)
                                               if isinstance(c, ast.expr))
        if isinstance(node, ast.Call):
            return (not node.keywords and self.callee(node) is not None
                    and all(self.pure(a) for a in node.args))
        return False

    def harmless(self, node, constants):
        """Does computing `node` have no effect, and can it not raise?"""
        if isinstance(node, ast.Constant):
            return type(node.value) in (int, float)
        if isinstance(node, ast.Name):
            return True
        if isinstance(node, ast.UnaryOp):
            return (isinstance(node.op, (ast.USub, ast.UAdd)) and self.is_float(node.operand)
                    and self.harmless(node.operand, constants))
        if isinstance(node, ast.BinOp):
            return (isinstance(node.op, (ast.Add, ast.Sub, ast.Mult))
                    and all(self.is_float(s) and self.harmless(s, constants)
                            for s in (node.left, node.right)))
        if isinstance(node, ast.Call):
            name = self.callee(node)
            if node.keywords or not all(self.is_float(a) and self.harmless(a, constants)
                                        for a in node.args):
                return False
            if name in _TOTAL:
                return len(node.args) == (2 if name == "copysign" else 1)
            if name in _FINITE_INPUT:
                return len(node.args) == 1 and self.bound(node.args[0], constants) is not None
        return False


def _other_bindings(node):
    """Names `node` binds other than by plain or augmented assignment."""
    if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        return _stored(node.target)
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [n for item in node.items if item.optional_vars is not None
                for n in _stored(item.optional_vars)]
    if isinstance(node, (ast.NamedExpr, ast.AnnAssign)):
        return _stored(node.target)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return list(node.names)
    if isinstance(node, ast.ExceptHandler) and node.name:
        return [node.name]
    return []


def _stored(node):
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]


def _constant(node):
    if isinstance(node, ast.Constant):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) is float):
        return -node.operand.value
    return None


def _is_int(node):
    return isinstance(node, ast.Constant) and type(node.value) is int


class _Folder(ast.NodeTransformer):
    """Substitutes the constants, and folds multiplications by one and double negations."""

    def __init__(self, facts, constants):
        self.facts = facts
        self.constants = constants

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.constants:
            value = self.constants[node.id]
            if math.copysign(1.0, value) < 0:
                return ast.UnaryOp(ast.USub(), ast.Constant(-value, kind=None))
            return ast.Constant(value, kind=None)
        return node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        inner = node.operand
        if (isinstance(node.op, ast.USub) and isinstance(inner, ast.UnaryOp)
                and isinstance(inner.op, ast.USub) and self.facts.is_float(inner.operand)):
            return inner.operand
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Mult):
            for one, other in ((node.left, node.right), (node.right, node.left)):
                sign = _unit(one)
                if sign and self.facts.is_float(other):
                    return other if sign > 0 else ast.UnaryOp(ast.USub(), other)
        if isinstance(node.op, ast.Div) and _unit(node.right) == 1 and self.facts.is_float(node.left):
            return node.left
        right = node.right
        if (isinstance(node.op, (ast.Add, ast.Sub)) and self.facts.is_float(node.left)
                and self.facts.is_float(right)):
            # ``a + -b * c`` is ``a - b * c`` and ``a - -b`` is ``a + b``: negation is exact, and a
            # product or quotient rounds alike whatever its sign.
            positive = negation_removed(right)
            if positive is not None:
                op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
                return ast.BinOp(node.left, op, positive)
        return node


def negation_removed(node, trees=ast):
    """`node` without the ``-`` its leftmost factor starts with (``-b * c / d`` -> ``b * c / d``), or
    None; `trees` is the module of its node classes (``ast``, or ``gast`` for the generator's)."""
    if isinstance(node, trees.UnaryOp) and isinstance(node.op, trees.USub):
        return node.operand
    if isinstance(node, trees.BinOp) and isinstance(node.op, (trees.Mult, trees.Div)):
        left = negation_removed(node.left, trees)
        if left is not None:
            return trees.BinOp(left, node.op, node.right)
    return None


def _unit(node):
    """1 for the constant ``1.0``, -1 for ``-1.0``, else 0."""
    value = _constant(node)
    if type(value) is float and abs(value) == 1.0:
        return 1 if value > 0 else -1
    return 0


def _apply(text, edits, deleted):
    lines = text.split("\n")
    for stmt, value in edits.items():
        node = stmt.value
        data = lines[stmt.lineno - 1].encode("utf-8")
        lines[stmt.lineno - 1] = (data[:node.col_offset] + unparse_ast(value).encode("utf-8")
                                  + data[node.end_col_offset:]).decode("utf-8")
    gone = {i for stmt in deleted for i in range(stmt.lineno - 1, stmt.end_lineno)}
    keep_comment = comments_still_used(lines, gone)
    return "\n".join(line for i, line in enumerate(lines)
                     if i not in gone and keep_comment.get(i, True))
