"""Property-based: random small programs, differentiated, against finite differences.

Each program mixes arithmetic, NumPy functions, branches on data, loops with
``break``/``continue``, ``while`` loops and updates of an array.  For each
one we check that adtrans computes the same value as plain execution (bit
for bit), that its gradient matches central finite differences, and that
nothing but a `DifferentiationError` could ever come out of the compiler.

Branches on data make a program piecewise smooth; comparisons go through
`cmp`, which records how close each one came to flipping, and a draw whose
finite differences could cross a branch is discarded.
"""

import importlib.util
import itertools
import math
import os
import random
import sys

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings, strategies as st  # noqa: E402

import adtrans  # noqa: E402
from adtrans import registry  # noqa: E402

MARGINS = []
EPS = 1e-6
EXAMPLES = int(os.environ.get("ADTRANS_RANDOM_PROGRAMS", "600"))


def cmp(a, b):
    """``a > b``, remembering how far apart they were."""
    MARGINS.append(abs(float(np.sum(a)) - float(np.sum(b))))
    return a > b


registry.constant_function(cmp)


class Program:
    """Writes the source of one random program from a seed."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.lines = []
        self.counter = itertools.count()

    def constant(self):
        return repr(round(self.rng.uniform(-2.0, 2.0), 2))

    def expr(self, scope, depth=0):
        r = self.rng.random()
        if depth > 2 or r < 0.3:
            return self.rng.choice(scope) if self.rng.random() < 0.8 else self.constant()
        a = self.expr(scope, depth + 1)
        b = self.expr(scope, depth + 1)
        return self.rng.choice(self.operations(a, b))

    def operations(self, a, b):
        return [
            f"({a} + {b})", f"({a} - {b})", f"np.tanh({a} * {b})", f"np.sin({a})", f"0.5 * {a}",
            f"np.cos({a}) * {b}", f"arr[{self.rng.randrange(3)}]", f"np.sum(arr * {a})",
            f"({a} if cmp({b}, {self.constant()}) else {b})",
            f"np.sum(np.stack([arr * w for w in ({a}, {b})]))",
            # Closures over the function's values, map, reversed, a spread call.
            f"(lambda t: t * {a})({b})", f"sum(map(lambda t: np.sin(t) * {a}, ({b}, {self.constant()})))",
            f"sum(reversed(({a}, {b})))", f"np.multiply(*({a}, {b}))",
        ]

    def block(self, scope, indent, depth, in_loop):
        count = self.rng.randint(1, 3)
        for _ in range(count):
            self.statement(scope, indent, depth, in_loop)

    def statement(self, scope, indent, depth, in_loop):
        pad = "    " * indent
        r = self.rng.random()
        if depth < 2 and r < 0.2:
            self.lines.append(f"{pad}if cmp({self.expr(scope)}, {self.constant()}):")
            inner = list(scope)
            self.block(inner, indent + 1, depth + 1, in_loop)
            if self.rng.random() < 0.6:
                self.lines.append(f"{pad}else:")
                self.block(list(scope), indent + 1, depth + 1, in_loop)
        elif depth < 2 and r < 0.35:
            loop_var = f"i{next(self.counter)}"
            self.lines.append(f"{pad}for {loop_var} in range({self.rng.randint(1, 4)}):")
            inner = scope + [loop_var]
            self.block(inner, indent + 1, depth + 1, True)
            if self.rng.random() < 0.5:
                jump = self.rng.choice(["break", "continue"])
                self.lines.append(f"{pad}    if cmp({self.expr(inner)}, {self.constant()}):")
                self.lines.append(f"{pad}        {jump}")
                self.block(inner, indent + 1, depth + 1, True)
        elif depth < 2 and r < 0.42:
            counter = f"n{next(self.counter)}"
            self.lines.append(f"{pad}{counter} = 0")
            self.lines.append(f"{pad}while {counter} < {self.rng.randint(1, 3)}:")
            self.lines.append(f"{pad}    {counter} += 1")     # first, so 'continue' cannot skip it
            self.block(list(scope), indent + 1, depth + 1, True)
        elif r < 0.55:
            self.update(scope, pad)
        elif in_loop and r < 0.6 and depth > 0:
            self.lines.append(f"{pad}if cmp({self.expr(scope)}, {self.constant()}):")
            self.lines.append(f"{pad}    {self.rng.choice(['break', 'continue'])}")
        else:
            target = self.rng.choice([v for v in scope if not v.startswith("i")] + [f"v{next(self.counter)}"])
            self.lines.append(f"{pad}{target} = {self.expr(scope)}")
            if target not in scope and indent == 1:
                scope.append(target)

    def update(self, scope, pad):
        op = self.rng.choice(["=", "+="])
        self.lines.append(f"{pad}arr[{self.rng.randrange(3)}] {op} {self.expr(scope)}")

    def source(self):
        scope = ["x", "y"]
        self.lines = ["def program(x, y, arr):", "    arr = arr * 1.0"]
        self.block(scope, 1, 0, False)
        self.lines.append(f"    return np.sum(arr) * {self.constant()} + {self.expr(scope)}")
        return "import numpy as np\nfrom test_random_programs import cmp\n\n\n" + "\n".join(self.lines) + "\n"


def load(source, directory):
    name = f"random_program_{abs(hash(source))}"
    path = os.path.join(directory, name + ".py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.program


@pytest.fixture(scope="module")
def program_directory(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("programs"))
    sys.path.insert(0, os.path.dirname(__file__))
    yield directory


def finite_differences(f, args, index, direction, eps=EPS):
    def shifted(step):
        moved = list(args)
        moved[index] = args[index] + step * direction
        return f(*moved)

    return (shifted(eps) - shifted(-eps)) / (2 * eps)


@settings(max_examples=EXAMPLES, deadline=None, derandomize="ADTRANS_RANDOM_PROGRAMS_EXPLORE" not in os.environ,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), x=st.floats(-1.5, 1.5), y=st.floats(-1.5, 1.5),
       a=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3))
def test_random_program(program_directory, seed, x, y, a):
    source = Program(seed).source()
    program = load(source, program_directory)
    arr = np.array(a)
    if seed % 2:
        x = np.float64(x)     # half the programs take the general (not float-specialised) code
    MARGINS.clear()
    with np.errstate(all="ignore"):
        expected = program(x, y, arr.copy())
    assume(not MARGINS or min(MARGINS) > 1e-3)
    assume(np.isfinite(expected))
    try:
        value, back = adtrans.value_with_pullback(program, x, y, arr, wrt=("x", "y", "arr"))
    except adtrans.DifferentiationError as e:       # allowed, but this grammar should never need it
        pytest.fail(f"DifferentiationError on a supported program:\n{source}\n{e}")
    assert value == expected, source
    dx, dy, darr = back(1.0)
    assert isinstance(dx, float) and isinstance(dy, float) and darr.shape == (3,), source
    # gradient() runs the fused value-and-gradient function: the same operations, so the same bits.
    fused_value, (fx, fy, farr) = adtrans.value_with_gradient(program, x, y, arr, wrt=("x", "y", "arr"))
    assert fused_value == value and type(fx) is type(dx) and type(fy) is type(dy), source
    np.testing.assert_array_equal([fx, fy], [dx, dy], err_msg=source)
    np.testing.assert_array_equal(farr, darr, err_msg=source)
    rng = np.random.default_rng(seed % 1000)
    for index, tangent in enumerate([dx, dy, darr]):
        direction = 1.0 if index < 2 else rng.normal(size=3)
        MARGINS.clear()
        numeric = finite_differences(program, [x, y, arr], index, direction)
        if (MARGINS and min(MARGINS) < 1e-4) or not np.isfinite(numeric):
            continue   # the differences crossed a branch, or overflowed
        analytic = float(np.sum(tangent * direction))
        if analytic != pytest.approx(numeric, rel=1e-4, abs=1e-5):
            # Before calling it wrong, check the oracle: on a steep program (derivatives of 1e7
            # compounding through loops) central differences do not converge, and a step ten
            # times smaller gives another number. Only converged differences judge.
            with np.errstate(all="ignore"):
                finer = finite_differences(program, [x, y, arr], index, direction, EPS / 10)
            if analytic == pytest.approx(finer, rel=1e-4, abs=1e-5):
                continue    # the finer step agrees: the first had not converged
            if finer != pytest.approx(numeric, rel=1e-5, abs=1e-6):
                continue    # neither has converged (4e-4 apart on a 5e8 derivative: seen)
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-5), (
            f"argument {index}: adtrans {analytic}, finite differences {numeric}\n{source}")


class ScalarProgram(Program):
    """A program of two Python floats and `math`: what runs through the fused float code."""

    def operations(self, a, b):
        return [
            f"({a} + {b})", f"({a} - {b})", f"math.tanh({a} * {b})", f"math.sin({a})",
            f"0.5 * {a}", f"math.cos({a}) * {b}", f"math.sin(math.sin({a}))", f"-{a}",
            f"math.sqrt(1.0 + {a} * {a})", f"math.atan({a}) * {b}",
            f"({a} if cmp({b}, {self.constant()}) else {b})",
            f"sum(w * {a} for w in ({b}, {self.constant()}))",
            f"(lambda t: t * {a})({b})", f"sum(map(lambda t: math.sin(t) * {a}, ({b}, {self.constant()})))",
            f"math.atan2(*({a}, 1.5 + {b} * {b}))",
        ]

    def update(self, scope, pad):
        target = self.rng.choice([v for v in scope if not v.startswith("i")])
        self.lines.append(f"{pad}{target} {self.rng.choice(['=', '+='])} {self.expr(scope)}")

    def source(self):
        scope = ["x", "y"]
        self.lines = ["def program(x, y):"]
        self.block(scope, 1, 0, False)
        self.lines.append(f"    return {self.expr(scope)} * {self.constant()} + {self.expr(scope)}")
        return "import math\nfrom test_random_programs import cmp\n\n\n" + "\n".join(self.lines) + "\n"


@settings(max_examples=EXAMPLES // 2, deadline=None,
          derandomize="ADTRANS_RANDOM_PROGRAMS_EXPLORE" not in os.environ,
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), x=st.floats(-1.5, 1.5), y=st.floats(-1.5, 1.5))
def test_random_scalar_program(program_directory, seed, x, y):
    # gradient() runs a function that returns the gradient alone, with the seed folded in, dead
    # forward code removed and single-use temporaries nested: the same numbers, bit for bit, as
    # the general pullback, and float gradients.
    source = ScalarProgram(seed).source()
    program = load(source, program_directory)
    MARGINS.clear()
    expected = program(x, y)
    assume(not MARGINS or min(MARGINS) > 1e-3)
    value, back = adtrans.value_with_pullback(program, x, y)
    assert value == expected, source
    want = back(1.0)
    for got in (adtrans.gradient(program, x, y), adtrans.gradient(program, x, y),
                adtrans.gradient_of(program)(x, y), adtrans.value_with_gradient(program, x, y)[1]):
        assert got == want and all(type(g) is float for g in got), source
    assert adtrans.value_with_gradient(program, x, y)[0] == value, source
    for index, tangent in enumerate(want):
        MARGINS.clear()
        numeric = finite_differences(program, [x, y], index, 1.0)
        if (MARGINS and min(MARGINS) < 1e-4) or not math.isfinite(numeric):
            continue
        if tangent != pytest.approx(numeric, rel=1e-4, abs=1e-5):
            finer = finite_differences(program, [x, y], index, 1.0, EPS / 10)
            if tangent == pytest.approx(finer, rel=1e-4, abs=1e-5):
                continue    # the finer step agrees: the first had not converged
            if finer != pytest.approx(numeric, rel=1e-5, abs=1e-6):
                continue    # neither has converged
        assert tangent == pytest.approx(numeric, rel=1e-4, abs=1e-5), (
            f"argument {index}: adtrans {tangent}, finite differences {numeric}\n{source}")
