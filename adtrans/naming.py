"""Names in generated code: derived from the user's, never colliding with them.

Every name the generator introduces goes through one `Namer`, which starts
out knowing every name the user's function mentions, so a generated name can
neither shadow a user variable nor a global the user reads.
"""

import builtins
import keyword
import re

import gast

_OPERATOR_WORDS = {
    gast.Add: "plus", gast.Sub: "minus", gast.Mult: "times", gast.Div: "over",
    gast.Pow: "pow", gast.MatMult: "matmul", gast.FloorDiv: "floordiv", gast.Mod: "mod",
    gast.USub: "neg", gast.UAdd: "pos",
}
_COMPARISON_WORDS = {gast.Lt: "lt", gast.LtE: "le", gast.Gt: "gt", gast.GtE: "ge", gast.Eq: "eq",
                     gast.NotEq: "ne"}
# Numbers in names: digits after a name (``x_pow_2``), a word first (``one_minus_y``, which no
# identifier could begin with a digit), `half`; numbers with neither (0.01) are left out.
_NUMBER_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
                 8: "eight", 9: "nine", 10: "ten", 0.5: "half"}
_MAX_DERIVED = 28
# A generated local never hides a builtin (`tuple = (a, b)` would break a later `tuple(...)`).
_BUILTINS = frozenset(dir(builtins))


class Namer:
    def __init__(self, taken=()):
        self.taken = set(taken)

    def fresh(self, base):
        """`base` if it is free, else `base_1`, `base_2`, ... ; the name is then taken."""
        base = _identifier(base)
        name = base
        count = 0
        while name in self.taken or keyword.iskeyword(name) or name in _BUILTINS:
            count += 1
            name = f"{base}_{count}"
        self.taken.add(name)
        return name

    def reserve(self, name):
        self.taken.add(name)


def _identifier(text):
    text = re.sub(r"\W", "_", text).strip("_") or "t"
    if text[0].isdigit():
        text = "t" + text
    return text


def names_in(tree):
    """Every identifier a tree mentions (names, parameters, attributes' roots)."""
    found = set()
    for node in gast.walk(tree):
        if isinstance(node, gast.Name):
            found.add(node.id)
        elif isinstance(node, (gast.FunctionDef, gast.ClassDef)):
            found.add(node.name)
    return found


def _short(node, first=True):
    if isinstance(node, gast.Name):
        return node.id
    if is_number(node):
        value = node.value
        if not first and value == int(value) and abs(value) < 1000:
            return str(int(value)).replace("-", "neg")
        return _NUMBER_WORDS.get(value)
    return None


def is_number(node):
    """Is `node` a number written out (not a bool)?"""
    return (isinstance(node, gast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def _fractional(node, first=True):
    """A number a name cannot spell (0.01, 3.7): it reads badly (``t0_01``), so it is left out."""
    return is_number(node) and _short(node, first) is None


def operator_word(op):
    return _OPERATOR_WORDS.get(type(op), "op")


def name_for(expr, method=False):
    """A readable base name for the value of an expression: `sin_x`, `out_minus_Y`, `W1_T`.

    `method` says a call's function is an attribute of a local value
    (`x.sum()` gives `x_sum`) rather than of a module (`np.sum(x)` gives `sum_x`).
    """
    if isinstance(expr, gast.Call):
        func = expr.func
        fname = func.attr if isinstance(func, gast.Attribute) else _short(func) or "call"
        receiver = _short(func.value) if isinstance(func, gast.Attribute) else None
        first = _short(expr.args[0]) if expr.args else None
        if method and receiver:
            return _fit(f"{receiver}_{fname}", fname)
        return _fit(f"{fname}_{first}", fname) if first and not first[0].isdigit() else fname
    if isinstance(expr, gast.BinOp):
        word = operator_word(expr.op)
        left, right = _short(expr.left), _short(expr.right, first=False)
        if left and right:
            return _fit(f"{left}_{word}_{right}", word)
        named = left or _short(expr.right)
        return _fit(f"{word}_{named}", word) if named else word
    if isinstance(expr, gast.UnaryOp):
        operand = _short(expr.operand)
        word = operator_word(expr.op)
        return _fit(f"{word}_{operand}", word) if operand else word
    if isinstance(expr, gast.Attribute):
        base = _short(expr.value)
        return _fit(f"{base}_{expr.attr}", expr.attr) if base else expr.attr
    if isinstance(expr, gast.Subscript):
        if getattr(expr.value, "attr", getattr(expr.value, "id", None)) in ("r_", "c_"):
            return "joined"     # np.r_[a, x, b]: NumPy's concatenation by subscript
        base = _short(expr.value) or "item"
        backwards = expr.slice
        if (isinstance(backwards, gast.Slice) and backwards.lower is None and backwards.upper is None
                and isinstance(backwards.step, gast.UnaryOp) and _short(backwards.step.operand) == "one"):
            return _fit(f"{base}_reversed", "reversed_items")
        index = _short(expr.slice)
        return _fit(f"{base}_{index}", f"{base}_item") if index else f"{base}_item"
    if isinstance(expr, gast.Compare) and len(expr.ops) == 1 and type(expr.ops[0]) in _COMPARISON_WORDS:
        left, right = _short(expr.left), _short(expr.comparators[0])
        word = _COMPARISON_WORDS[type(expr.ops[0])]
        return _fit(f"{left}_{word}_{right}", "condition") if left and right else "condition"
    if isinstance(expr, gast.Tuple):
        return "elements"       # what it holds, as "items" for a list
    if isinstance(expr, gast.List):
        return "items"
    if isinstance(expr, gast.Lambda):
        return "function"
    return "t"


def _fit(text, fallback):
    return text if len(text) <= _MAX_DERIVED else fallback
