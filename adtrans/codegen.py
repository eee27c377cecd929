"""Code generation: gast trees to text, and generated text to live functions.

Generated functions are compiled inside a small factory whose parameters are
the objects the code refers to (rules' helpers, transformed callees, the
user's closure variables), so they become closure cells: the user's module
globals are read as the user's code reads them and never written to.  The
text is registered in ``linecache`` so tracebacks and debuggers show it.
"""

import ast
import linecache
import types

import gast

_FACTORY = "__adtrans_factory__"


def unparse(node):
    """Source text of a gast node, on one line where Python allows it."""
    tree = ast.fix_missing_locations(gast.gast_to_ast(node))
    if hasattr(ast, "unparse"):
        return ast.unparse(tree)
    import astunparse  # Python 3.8 only

    return astunparse.unparse(tree).strip()


def compile_generated(generated, filename):
    """The code object of the function `generated` (a `reverse.Generated`) describes."""
    parameters = list(generated.cells) + [v for v in generated.user_freevars if v not in generated.cells]
    body = "".join("    " + line + "\n" if line else "\n" for line in generated.text.splitlines())
    text = f"def {_FACTORY}({', '.join(parameters)}):\n{body}    return {generated.name}\n"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    module = compile(text, filename, "exec")
    return _code_named(_code_named(module, _FACTORY), generated.name)


def instantiate(code, generated, fn):
    """A live function running `code` in `fn`'s globals, reading `fn`'s closure cells."""
    user_cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or ()))
    cells = tuple(types.CellType(generated.cells[name]) if name in generated.cells else user_cells[name]
                  for name in code.co_freevars)
    function = types.FunctionType(code, fn.__globals__, generated.name, fn.__defaults__, cells)
    if fn.__kwdefaults__:
        function.__kwdefaults__ = dict(fn.__kwdefaults__)
    function.__qualname__ = generated.name
    return function


def _code_named(code, name):
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == name:
            return const
    raise LookupError(name)
