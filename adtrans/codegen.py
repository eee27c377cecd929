"""Code generation: gast trees to text, and generated text to live functions.

Generated functions are compiled inside a small factory whose parameters are
the objects the code refers to (rules' helpers, transformed callees, the
user's closure variables), so they become closure cells: the user's module
globals are read as the user's code reads them and never written to.  The
text is registered in ``linecache`` so tracebacks and debuggers show it.
"""

import ast
import functools
import linecache
import types

import gast

_FACTORY = "__adtrans_factory__"


def unparse(node):
    """Source text of a gast node, on one line where Python allows it."""
    return unparse_ast(gast.gast_to_ast(node))


def unparse_ast(node):
    """Source text of an `ast` node, on one line where Python allows it."""
    tree = ast.fix_missing_locations(node)
    if hasattr(ast, "unparse"):
        return ast.unparse(tree)
    import io

    out = io.StringIO()
    _precedence_unparser()(tree, out)
    return out.getvalue().strip()


_PRECEDENCE = {
    "Or": 4, "And": 5, "Not": 6, "Compare": 7, "BitOr": 9, "BitXor": 10, "BitAnd": 11,
    "LShift": 12, "RShift": 12, "Add": 13, "Sub": 13, "Mult": 14, "Div": 14, "FloorDiv": 14,
    "Mod": 14, "MatMult": 14, "UAdd": 15, "USub": 15, "Invert": 15, "Pow": 16,
}
_TEST, _ATOM = 3, 18


@functools.lru_cache(maxsize=None)
def _precedence_unparser():
    """astunparse's printer (Python 3.8) with parentheses only where precedence needs them."""
    import astunparse

    class Unparser(astunparse.Unparser):
        def __init__(self, tree, file):
            self._required = [_TEST]
            self._next = None
            super().__init__(tree, file)

        def dispatch(self, tree):
            if isinstance(tree, list):
                return super().dispatch(tree)
            self._required.append(self._next if self._next is not None else _TEST)
            self._next = None
            try:
                super().dispatch(tree)
            finally:
                self._required.pop()

        def _child(self, node, precedence):
            self._next = precedence
            self.dispatch(node)

        def _open(self, precedence):
            needed = precedence < self._required[-1]
            if needed:
                self.write("(")
            return needed

        def _BinOp(self, t):
            p = _PRECEDENCE[type(t.op).__name__]
            needed = self._open(p)
            right_assoc = isinstance(t.op, ast.Pow)
            self._child(t.left, p + 1 if right_assoc else p)
            self.write(" " + self.binop[type(t.op).__name__] + " ")
            self._child(t.right, p if right_assoc else p + 1)
            if needed:
                self.write(")")

        def _UnaryOp(self, t):
            p = _PRECEDENCE[type(t.op).__name__]
            needed = self._open(p)
            self.write(self.unop[type(t.op).__name__])
            if isinstance(t.op, ast.Not):
                self.write(" ")
            self._child(t.operand, p)
            if needed:
                self.write(")")

        def _Compare(self, t):
            p = _PRECEDENCE["Compare"]
            needed = self._open(p)
            self._child(t.left, p + 1)
            for op, right in zip(t.ops, t.comparators):
                self.write(" " + self.cmpops[type(op).__name__] + " ")
                self._child(right, p + 1)
            if needed:
                self.write(")")

        def _BoolOp(self, t):
            p = _PRECEDENCE[type(t.op).__name__]
            needed = self._open(p)
            for i, value in enumerate(t.values):
                if i:
                    self.write(" " + self.boolops[type(t.op)] + " ")
                self._child(value, p + 1)
            if needed:
                self.write(")")

        def _IfExp(self, t):
            needed = self._open(_TEST)
            self._child(t.body, _TEST + 1)
            self.write(" if ")
            self._child(t.test, _TEST + 1)
            self.write(" else ")
            self._child(t.orelse, _TEST)
            if needed:
                self.write(")")

        def _Attribute(self, t):
            if isinstance(t.value, ast.Constant) and isinstance(t.value.value, int):
                return super()._Attribute(t)
            self._child(t.value, _ATOM)
            self.write("." + t.attr)

        def _Subscript(self, t):
            self._child(t.value, _ATOM)
            self.write("[")
            self.dispatch(t.slice)
            self.write("]")

        def _Call(self, t):
            self._next = _ATOM
            func, t.func = t.func, Placeholder(t.func)
            try:
                super()._Call(t)
            finally:
                t.func = func

        def _Placeholder(self, t):
            self._child(t.node, _ATOM)

    return Unparser


class Placeholder(ast.AST):
    """Lets the 3.8 printer give a call's function atom precedence."""

    _fields = ()

    def __init__(self, node):
        super().__init__()
        self.node = node


def compile_generated(generated, filename, name=None):
    """The code object of the function `generated` (a `reverse.Generated`) describes.

    With `name`, of one of its fused gradient functions instead (see `Generated.fused_text`).
    """
    source = generated.text if name is None else generated.fused_text(name)
    name = name or generated.name
    parameters = list(generated.cells) + [v for v in generated.user_freevars if v not in generated.cells]
    body = "".join("    " + line + "\n" if line else "\n" for line in source.splitlines())
    text = f"def {_FACTORY}({', '.join(parameters)}):\n{body}    return {name}\n"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    module = compile(text, filename, "exec")
    return _code_named(_code_named(module, _FACTORY), name)


def instantiate(code, generated, fn):
    """A live function running `code` in `fn`'s globals, reading `fn`'s closure cells."""
    function_name = code.co_name
    user_cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
    cells = tuple(types.CellType(generated.cells[name]) if name in generated.cells else user_cells[name]
                  for name in code.co_freevars)
    function = types.FunctionType(code, fn.__globals__, function_name, fn.__defaults__, cells)
    if fn.__kwdefaults__:
        function.__kwdefaults__ = dict(fn.__kwdefaults__)
    function.__qualname__ = function_name
    return function


def _code_named(code, name):
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == name:
            return const
    raise LookupError(name)
