"""Finding and parsing the source of a function, a method or a lambda.

adtrans reads the whole file a function comes from (through ``linecache``, so
Jupyter cells and generated code work too) and picks the definition whose
first line is the code object's, so line and column numbers in errors and
comments are the file's own. The file is parsed with ``ast`` once; only the
definition is converted to gast.
"""

import ast
import functools
import inspect
import linecache
import os
import re
from dataclasses import dataclass

import gast

from adtrans.errors import DifferentiationError, Location


@dataclass
class FunctionSource:
    """A function's definition as a gast tree, with where it came from."""

    fn: object
    node: gast.FunctionDef  # lambdas are turned into a def returning their body
    filename: str           # as shown to the user
    lines: list             # the file's lines, for comments in generated code
    is_lambda: bool

    def location(self, node):
        lineno = getattr(node, "lineno", None) or self.node.lineno
        col = getattr(node, "col_offset", 0) or 0
        if self.filename.startswith("<adtrans "):
            found = _user_location(self.lines, lineno)
            if found is not None:
                return found
        return Location(self.filename, lineno, col + 1)

    def line_text(self, lineno):
        if 1 <= lineno <= len(self.lines):
            return self.lines[lineno - 1].strip()
        return ""

    def error(self, node, message, *notes):
        return DifferentiationError(message, self.location(node), notes)


_ORIGIN_COMMENT = re.compile(r"^\s*# (.+):(\d+): ")


def _user_location(generated_lines, lineno):
    """Where in the user's file generated line `lineno` comes from: the source-line comment of the
    block holding it. A nested ``def`` or ``lambda`` is transformed from the copy in the generated
    code; its errors belong at the user's line."""
    for line in reversed(generated_lines[:lineno]):
        match = _ORIGIN_COMMENT.match(line)
        if match:
            return Location(match.group(1), int(match.group(2)), 1)
    return None


def display_filename(path):
    """A path relative to the working directory when it is below it, like compilers print."""
    if path.startswith("<"):
        return path
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def function_location(fn):
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    if code.co_filename.startswith("<adtrans "):
        # A lambda or nested def the generated code made: the user's line of it.
        found = _user_location(linecache.getlines(code.co_filename), code.co_firstlineno)
        if found is not None:
            return found
    return Location(display_filename(code.co_filename), code.co_firstlineno, 1)


def _source_unavailable(fn, why, note=None):
    name = getattr(fn, "__qualname__", repr(fn))
    return DifferentiationError(
        f"cannot read the source of '{name}' ({why})",
        function_location(fn),
        [note or "adtrans differentiates Python source: define the function in a file (or a notebook "
                 "cell), or register its derivative with @adtrans.derivative(of=...)"],
    )


class _ParsedFile:
    """A file parsed once by ``ast`` (fast, in C), with its definitions indexed by first line.

    Only the definition asked for is converted to gast, so the cost of a first
    gradient does not grow with the size of the file it lives in. Definitions
    are found by walking statements only; lambdas (which can be anywhere in an
    expression) by a full walk, done the first time a lambda is asked for.
    """

    def __init__(self, module, filename, text):
        self.module = module
        self.filename, self.text = filename, text
        self.definitions = {}   # (name, line) -> [FunctionDef]; the def's line and its first decorator's
        self._lambdas = None
        self._compiled = None
        self._index(module.body)

    def _index(self, statements):
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for line in {node.lineno, _first_line(node)}:
                    self.definitions.setdefault((node.name, line), []).append(node)
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                block = getattr(node, field, None)
                if isinstance(block, list):
                    self._index(block)

    def lambdas(self, line):
        """The lambdas starting on `line`, outer before inner, left to right: the order Python
        compiles them in."""
        if self._lambdas is None:
            self._lambdas = {}
            for node in _preorder(self.module):
                if isinstance(node, ast.Lambda):
                    self._lambdas.setdefault(node.lineno, []).append(node)
        return self._lambdas.get(line, ())

    def compiled_lambdas(self, line):
        """The code objects of `lambdas(line)`, in the same order, compiling the file anew (once)."""
        if self._compiled is None:
            self._compiled = {}
            try:
                module = compile(self.text, self.filename, "exec", dont_inherit=True)
            except (SyntaxError, ValueError):
                module = None
            pending = [module] if module is not None else []
            while pending:
                code = pending.pop()
                if code.co_name == "<lambda>":
                    self._compiled.setdefault(code.co_firstlineno, []).append(code)
                pending.extend(reversed([c for c in code.co_consts if inspect.iscode(c)]))
        return self._compiled.get(line, ())


def _preorder(node):
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _preorder(child)


@functools.lru_cache(maxsize=64)
def _parse_file(filename, text):
    return _ParsedFile(ast.parse(text), filename, text)


# Functions adtrans makes from parts of the user's code (a recomputed block), by code object.
synthetic_sources = {}


def parse_function(fn) -> FunctionSource:
    """The definition of `fn` as a `FunctionSource`, or a located `DifferentiationError`.

    A function a decorator made with ``functools.wraps`` is read as it is, not as the function it
    wraps (``inspect.unwrap``): the wrapper's code is what runs."""
    code = getattr(fn, "__code__", None)
    if code in synthetic_sources:
        return synthetic_sources[code]
    if code is None:
        raise _source_unavailable(fn, "it is not a Python function")
    filename = code.co_filename
    lines = linecache.getlines(filename, getattr(fn, "__globals__", None))
    if not lines:
        raise _source_unavailable(fn, "it was made by exec or typed at an interactive prompt")
    try:
        parsed = _parse_file(filename, "".join(lines))
    except SyntaxError as e:
        raise _source_unavailable(fn, f"its file does not parse: {e.msg}") from None
    try:
        node = _find_definition(parsed, code)
    except _Ambiguous as several:
        raise _source_unavailable(fn, f"{several} different lambdas on line {code.co_firstlineno} could "
                                  "be it", "put each lambda on a line of its own, or make them defs") from None
    if node is None:
        raise _source_unavailable(fn, "its definition was not found in its file, which may have changed "
                                  "since it was imported")
    node = gast.ast_to_gast(node)       # a fresh tree: later phases may annotate it
    is_lambda = isinstance(node, gast.Lambda)
    if is_lambda:
        node = _lambda_as_def(node)
    return FunctionSource(fn, node, display_filename(filename), [l.rstrip("\n") for l in lines], is_lambda)


def own_signature(fn):
    """`fn`'s signature as its code has it, for a function whose source is read: a decorator's
    ``wrapper(*args, **kwargs)`` made with ``functools.wraps`` takes its own parameters, not those
    of the function it wraps (which ``inspect.signature`` reports)."""
    return inspect.signature(fn, follow_wrapped=False)


def _first_line(node):
    decorators = getattr(node, "decorator_list", None)
    if decorators:
        return min(d.lineno for d in decorators)
    return node.lineno


def _find_definition(parsed, code):
    if code.co_name == "<lambda>":
        candidates = list(parsed.lambdas(code.co_firstlineno))
        if len(candidates) > 1 and not hasattr(code, "co_positions"):
            candidates = _by_order(parsed, candidates, code) or candidates
    else:
        candidates = list(parsed.definitions.get((code.co_name, code.co_firstlineno), ()))
    if len(candidates) > 1:
        candidates = [c for c in candidates if _same_parameters(c, code)] or candidates
    if len(candidates) > 1:
        candidates = (_enclosing(candidates, code) or [c for c in candidates if _same_code(c, code)]
                      or [c for c in candidates if _same_names(c, code)])
    if len({ast.dump(c) for c in candidates}) > 1:
        raise _Ambiguous(len(candidates))
    return candidates[0] if candidates else None


class _Ambiguous(Exception):
    """Several definitions on one line could be the function, and they differ."""


def _by_order(parsed, candidates, code):
    """The lambda `code` was compiled from, by its place among the line's lambdas when the file
    is compiled anew (before Python 3.11, which records columns): code objects compare equal when
    compiled from the same text."""
    compiled = parsed.compiled_lambdas(code.co_firstlineno)
    if len(compiled) != len(candidates):
        return []
    return [c for c, again in zip(candidates, compiled) if again == code]


def _enclosing(candidates, code):
    """Of the definitions on a line, the innermost holding every column `code` was compiled
    from (Python 3.11+ records them); empty where columns are not known."""
    if not hasattr(code, "co_positions"):
        return []
    spans = [(line, column, end_line, end_column)
             for line, end_line, column, end_column in code.co_positions()
             if line is not None and column is not None and (end_line, end_column) > (line, column)]
    if not spans:
        return []
    holding = [c for c in candidates
               if all((c.lineno, c.col_offset) <= (line, column)
                      and (end_line, end_column) <= (c.end_lineno, c.end_col_offset)
                      for line, column, end_line, end_column in spans)]
    holding.sort(key=lambda c: (c.end_lineno - c.lineno, c.end_col_offset - c.col_offset))
    return holding[:1]


def _same_parameters(node, code):
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    if args.vararg:
        names.append(args.vararg.arg)
    if args.kwarg:
        names.append(args.kwarg.arg)
    count = (code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & inspect.CO_VARARGS)
             + bool(code.co_flags & inspect.CO_VARKEYWORDS))
    return len(names) == count and tuple(names) == code.co_varnames[:count]


def _same_code(node, code):
    """Tell lambdas on one line apart by compiling each and comparing the bytecode."""
    try:
        expr = ast.fix_missing_locations(ast.Expression(body=node))
        compiled = compile(expr, code.co_filename, "eval")
    except (SyntaxError, ValueError, TypeError):
        return False
    for const in compiled.co_consts:
        if inspect.iscode(const):
            return (const.co_code == code.co_code and const.co_names == code.co_names
                    and _constants(const) == _constants(code))
    return False


def _same_names(node, code):
    """Do `node` and `code` (with the code nested in it) read the same names and attributes?
    Where the bytecode differs only by how a name is loaded (a global, a closure cell)."""
    written = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    written |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    written |= {n.arg for n in ast.walk(node) if isinstance(n, ast.arg)}
    compiled = set()
    pending = [code]
    while pending:
        c = pending.pop()
        compiled.update(c.co_names, c.co_varnames, c.co_freevars, c.co_cellvars)
        pending.extend(const for const in c.co_consts if inspect.iscode(const))
    return written == {n for n in compiled if not n.startswith(".")}


def _constants(code):
    return tuple(c for c in code.co_consts if not inspect.iscode(c))


def _lambda_as_def(node):
    body = gast.Return(value=node.body)
    gast.copy_location(body, node.body)
    definition = gast.FunctionDef(
        name="lambda", args=node.args, body=[body], decorator_list=[], returns=None,
        type_comment=None, type_params=[])
    gast.copy_location(definition, node)
    definition.end_lineno = getattr(node, "end_lineno", node.lineno)
    definition.end_col_offset = getattr(node, "end_col_offset", 0)
    return definition
