"""The Swift "Custom differentiation" tutorial, ported in examples/, gives the tutorial's figures."""

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

import adtrans

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_differentiation.py"


def _import_example():
    name = "custom_differentiation"
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


tutorial = _import_example()


def _lines(capsys):
    return capsys.readouterr().out.splitlines()


# --- 1. Custom derivatives ------------------------------------------------------


def test_silly_exp_prints_and_returns_e_to_the_x(capsys):
    assert tutorial.silly_exp(3.0) == pytest.approx(math.e ** 3, rel=1e-15)
    assert _lines(capsys) == [f"Taking e({math.e}) to the power of 3.0!"]


def test_gradient_of_silly_exp_uses_the_registered_derivative(capsys):
    assert adtrans.gradient(tutorial.silly_exp, 3.0) == pytest.approx(math.e ** 3, rel=1e-15)
    assert _lines(capsys) == [f"Taking e({math.e}) to the power of 3.0!"]


def test_silly_exp_prints_once_per_gradient_call_even_when_cached(capsys):
    for _ in range(3):
        adtrans.gradient(tutorial.silly_exp, 3.0)
    assert len(_lines(capsys)) == 3


# --- 2. Stopping derivatives ------------------------------------------------------


def test_without_derivative_stops_the_gradient_of_y():
    dx, dy = adtrans.gradient(tutorial.sines_plus_stopped_cosines, 2.0, 3.0)
    assert dx == pytest.approx(-0.18009877594743354, rel=1e-14)
    assert dy == 0.0
    assert isinstance(dy, float)


def test_without_derivative_keeps_the_value():
    x, y = 2.0, 3.0
    expected = math.sin(math.sin(math.sin(x))) + math.cos(math.cos(math.cos(y)))
    assert tutorial.sines_plus_stopped_cosines(x, y) == expected
    value, _ = adtrans.value_with_gradient(tutorial.sines_plus_stopped_cosines, x, y)
    assert value == expected


# --- 3. Derivative surgery ----------------------------------------------------------


def test_derivative_surgery_hooks_run_in_pullback_order(capsys):
    grad = adtrans.gradient(tutorial.derivative_surgery, 30.0)
    assert grad == pytest.approx(math.cos(30.0) + 0.5, rel=1e-14)

    lines = _lines(capsys)
    assert len(lines) == 2
    rewritten = re.fullmatch(r"dlog/dx = (\S+), but rewritten to 0\.5", lines[0])
    assert rewritten, lines
    assert float(rewritten.group(1)) == pytest.approx(1.0 / 30.0, rel=1e-15)
    assert lines[1] == "d+/dsin = 1.0"


def test_derivative_surgery_hooks_do_not_run_in_the_forward_pass(capsys):
    value, pullback = adtrans.value_with_pullback(tutorial.derivative_surgery, 30.0)
    assert value == math.sin(30.0) + math.log(30.0)
    assert _lines(capsys) == []
    pullback(1.0)
    assert len(_lines(capsys)) == 2


# --- 4. Value and pullback ------------------------------------------------------------


def test_foo_value_and_pullback():
    value, pullback = adtrans.value_with_pullback(tutorial.foo, 3.0)
    assert value == 36.0
    assert pullback(1.0) == 24.0
    assert pullback(2.0) == 48.0  # a pullback can be called again


# --- 5. Recomputing activations during backpropagation --------------------------------


@pytest.mark.parametrize(
    "f",
    [lambda x: tutorial.square(math.cos(x)), tutorial.cos_squared],
    ids=["lambda", "def"],
)
def test_make_recomputed_in_gradient_recomputes_in_the_pullback(f, capsys):
    value, backprop = adtrans.value_with_pullback(f, 10.0)
    assert value == math.cos(10.0) * math.cos(10.0)
    assert _lines(capsys) == ["  Computing square..."]  # once forward

    grad = backprop(1.0)
    assert _lines(capsys) == ["  Computing square..."]  # once more, backward
    assert grad == pytest.approx(-math.sin(20.0), rel=1e-14)


# --- The whole tutorial ------------------------------------------------------------------


def test_main_prints_the_tutorial_in_order(capsys):
    tutorial.main()
    out = capsys.readouterr().out
    taking = f"Taking e({math.e}) to the power of 3.0!"
    expected_in_order = [
        "== Custom derivatives ==",
        taking,
        "exp(3) = ",
        taking,
        "gradient of exp at 3 = ",
        "== Stopping derivatives ==",
        "gradient at (2, 3) = (-0.18009877594743",
        "== Derivative surgery ==",
        "dlog/dx = 0.0333333",
        "d+/dsin = 1.0",
        "gradient at 30 = 0.65425144988758",
        "== Value and pullback ==",
        "foo(3) = 36.0",
        "pullback(1) = 24.0",
        "== Recomputing activations during backpropagation ==",
        "Running original computation...",
        "  Computing square...",
        "Output = ",
        "Running backpropagation...",
        "  Computing square...",
        "Gradient = -0.912945250727627",
    ]
    position = 0
    for fragment in expected_in_order:
        found = out.find(fragment, position)
        assert found >= 0, f"{fragment!r} missing after position {position} in:\n{out}"
        position = found + len(fragment)
    assert out.count("  Computing square...") == 2
    assert out.count(taking) == 2
