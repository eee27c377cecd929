"""The ``adtrans`` command: print generated code, or check a file for differentiation errors.

    adtrans dump FILE.py:FUNC [--wrt x,y] [--mode reverse|forward] [--gradient] [--floats x,y]
    adtrans check FILE.py [FUNC ...]

The file is imported as a module (its ``if __name__ == "__main__":`` block
does not run) so that names resolve exactly as they do when the user's own
code calls adtrans.

Exit codes: 0 success, 1 differentiation errors (reported like a compiler),
2 usage errors (missing file or function, a module that fails to import),
3 an internal error in adtrans.
"""

import argparse
import importlib.util
import inspect
import re
import sys
import traceback
import warnings
from pathlib import Path

import adtrans
from adtrans.api import check_nested_functions

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit code 2."""


def main(argv=None):
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as err:
        print(f"adtrans: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _parser():
    parser = argparse.ArgumentParser(
        prog="adtrans",
        description="Source-to-source automatic differentiation for Python and NumPy.",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the Python traceback of an internal error",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    dump = commands.add_parser(
        "dump",
        help="print the code generated for a function",
        description="Print the value-with-pullback code adtrans generates for FUNC.",
    )
    dump.add_argument("target", metavar="FILE.py:FUNC", help="a function in a file; FUNC may be dotted (Class.method)")
    dump.add_argument(
        "--wrt",
        type=_parse_wrt,
        default=None,
        metavar="x,y",
        help="parameters (names or positions) to differentiate with respect to; default: all",
    )
    dump.add_argument("--mode", choices=("reverse", "forward"), default="reverse")
    dump.add_argument(
        "--gradient",
        action="store_true",
        help="print the fused functions gradient() and value_with_gradient() run instead",
    )
    dump.add_argument(
        "--floats",
        type=_parse_wrt,
        default=(),
        metavar="x,y",
        help="parameters to take as Python floats (the code run for float arguments)",
    )
    dump.set_defaults(run=_dump)

    check = commands.add_parser(
        "check",
        help="report every differentiation error in a file",
        description="Transform functions of FILE and report every differentiation error; exit 1 if any.",
    )
    check.add_argument("file", metavar="FILE.py")
    check.add_argument(
        "functions",
        nargs="*",
        metavar="FUNC",
        help="functions to check (default: every function defined in FILE)",
    )
    check.set_defaults(run=_check)
    return parser


def _parse_wrt(text):
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected parameter names or positions, such as 'x,y' or '0,1'")
    return tuple(int(name) if name.isdigit() else name for name in names)


# --- commands ---------------------------------------------------------------------


def _dump(args):
    path, _, name = args.target.rpartition(":")
    if not path or not name:
        raise UsageError(f"expected FILE.py:FUNC, got '{args.target}'")
    module = _import_file(path)
    if isinstance(module, adtrans.DifferentiationError):
        print(module, file=sys.stderr)
        return EXIT_ERRORS
    fn = _resolve(module, name, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            source = adtrans.generated_source(fn, wrt=args.wrt, mode=args.mode, gradient=args.gradient,
                                              floats=args.floats)
        except adtrans.DifferentiationError as err:
            print(err, file=sys.stderr)
            return EXIT_ERRORS
        except NotImplementedError as err:
            print(f"adtrans: error: {err or 'not implemented'}", file=sys.stderr)
            return EXIT_ERRORS
        except Exception as err:  # a bug in adtrans, not in the user's code
            return _internal_error(err, name, args.traceback)
    _report_warnings(caught, sys.stderr)
    sys.stdout.write(source if source.endswith("\n") else source + "\n")
    return EXIT_OK


def _check(args):
    module = _import_file(args.file)
    if isinstance(module, adtrans.DifferentiationError):
        print(module)
        print(f"1 error while importing {args.file}")
        return EXIT_ERRORS
    # A sweep over every function differentiates each with respect to all its
    # parameters, which many (hooks, helpers) were never meant for: their
    # ZeroDerivativeWarnings are noise, so only named functions show them.
    named = bool(args.functions)
    if named:
        targets = [(name, _resolve(module, name, args.file)) for name in args.functions]
    else:
        targets = _functions_defined_in(module)

    errors = 0
    internal = 0
    for name, fn in targets:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                adtrans.generated_source(fn)
                check_nested_functions(fn)
            except adtrans.DifferentiationError as err:
                print(err)
                errors += 1
            except Exception as err:  # a bug in adtrans, not in the user's code
                _internal_error(err, name, args.traceback)
                internal += 1
        if named:
            _report_warnings(caught, sys.stdout)

    checked = _plural(len(targets), "function")
    if errors or internal:
        problems = [_plural(errors, "error")] + ([_plural(internal, "internal error")] if internal else [])
        print(f"{', '.join(problems)} in {checked} checked")
        return EXIT_INTERNAL if internal and not errors else EXIT_ERRORS
    print(f"{args.file}: {checked} checked, no errors")
    return EXIT_OK


# --- helpers ------------------------------------------------------------------------


def _import_file(path):
    """Import the file at `path` as a module, not as ``__main__``.

    Returns the module, or the `DifferentiationError` raised while importing
    it (a decorator such as ``@adtrans.differentiable`` checks at import time).
    """
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"no such file: '{path}'")
    file = file.resolve()
    name = _module_name(file)
    spec = importlib.util.spec_from_file_location(name, str(file))
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import '{path}' as a Python module")
    module = importlib.util.module_from_spec(spec)

    directory = str(file.parent)
    sys.path.insert(0, directory)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except adtrans.DifferentiationError as err:
        return err
    except KeyboardInterrupt:
        raise
    except SystemExit as err:
        sys.modules.pop(name, None)
        raise UsageError(f"importing '{path}' called sys.exit({err.code!r})") from None
    except BaseException as err:
        sys.modules.pop(name, None)
        raise UsageError(f"importing '{path}' failed: {_describe(err)}") from None
    finally:
        if sys.path and sys.path[0] == directory:
            del sys.path[0]
    return module


def _module_name(file):
    """A module name for `file`: its stem, unless that would shadow a module already imported."""
    stem = re.sub(r"\W", "_", file.stem)
    if stem and not stem[0].isdigit() and stem not in sys.modules:
        return stem
    return f"_adtrans_cli_{stem}"


def _resolve(module, dotted, path):
    """The object named `dotted` (``f`` or ``Class.method``) in `module`."""
    obj = module
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            owner = ".".join(parts[:i])
            detail = f" ('{owner}' has no attribute '{part}')" if owner else ""
            raise UsageError(f"no function '{dotted}' in '{path}'{detail}") from None
    if not callable(obj):
        raise UsageError(f"'{dotted}' in '{path}' is not a function (it is {type(obj).__name__})")
    return obj


def _functions_defined_in(module):
    """(name, function) for every function the module defines, in source order.

    Methods of the classes it defines count, as ``Class.method``. Plain
    functions whose parameters all have defaults (such as ``main(steps=10)``)
    are entry points, not differentiable code, and are skipped, as are
    functions imported from elsewhere; name a function to check it anyway.
    """
    found = []
    for name, obj in vars(module).items():
        found += _checked(name, obj, module, method=False)
        if inspect.isclass(obj) and obj.__module__ == module.__name__:
            for attribute, member in vars(obj).items():    # its methods, as Class.method
                if attribute.startswith("__") and attribute != "__call__":
                    continue        # __init__, __repr__ and the like: not differentiable code
                found += _checked(f"{name}.{attribute}", member, module, method=True)
    return found


def _checked(name, obj, module, method):
    """[(name, obj)] if `obj` is a function of `module` to check, else []."""
    if _is_differentiable_function(obj):
        # One made from a VJP alone (``differentiable_function``) has no code to check.
        wrapped = getattr(obj, "function", None)
        if wrapped is not None and getattr(wrapped, "__module__", None) == module.__name__:
            return [(name, obj)]
    elif (inspect.isfunction(obj) and obj.__module__ == module.__name__
          and obj.__code__.co_filename == getattr(module, "__file__", None)):
        parameters = list(inspect.signature(obj, follow_wrapped=False).parameters.values())[method:]
        if any(p.default is p.empty and p.kind is not p.VAR_KEYWORD for p in parameters):
            return [(name, obj)]
    return []


def _is_differentiable_function(obj):
    """True for the objects ``@adtrans.differentiable`` and ``differentiable_function`` make."""
    cls = getattr(adtrans, "DifferentiableFunction", None)
    return cls is not None and isinstance(obj, cls)


def _report_warnings(caught, stream):
    for w in caught:
        if issubclass(w.category, adtrans.ZeroDerivativeWarning):
            print(f"{w.filename}:{w.lineno}: warning: {w.message}", file=stream)
        else:
            print(warnings.formatwarning(w.message, w.category, w.filename, w.lineno).rstrip(), file=stream)


def _internal_error(err, name, show_traceback):
    if show_traceback:
        traceback.print_exception(type(err), err, err.__traceback__)
    print(
        f"adtrans: internal error while differentiating '{name}': {_describe(err)}\n"
        "adtrans: this is a bug in adtrans; please report it (run with --traceback for details)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def _describe(err):
    message = str(err)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _plural(count, noun):
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


if __name__ == "__main__":
    sys.exit(main())
