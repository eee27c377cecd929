"""The rules for Python's operators and built-in functions, and the checker itself."""

import dataclasses
import builtins
import operator

from adtrans.rules.support import (
    added, appended, assigned, enumerated, extended, flat_items, listed_items, listed_values, merged, multiplied,
    rebound, starred_parts, unpacked, with_field, with_item, zipped)

import numpy as np
import pytest
from gradcheck import case, check_rule_vjp, module_rules, run_case, template_problems, untested

import adtrans
from adtrans import registry
from adtrans.registry import rules_for

rng = np.random.default_rng(1)
A = rng.standard_normal((3, 4))
COL = rng.standard_normal((3, 1))
ROW = rng.standard_normal((1, 4))
VEC = rng.standard_normal(4)
POS = rng.uniform(0.5, 2.0, (3, 4))
POS_COL = rng.uniform(0.5, 2.0, (3, 1))

CASES = [
    case(with_item, A, (0, slice(1, 3)), np.array([0.5, -1.5])), case(with_item, A, 1, 2.0),
    case(with_item, [1.5, -0.5, 2.0], 1, 0.25),
    # A repeated index: the last write wins, an earlier one gets no cotangent.
    case(with_item, A, (np.array([0, 2, 0]), 1), np.array([0.5, -1.5, 2.0])),
    case(with_item, A, np.array([1, 1]), VEC), case(with_item, VEC, np.array([True, False, True, True]), 2.0),
    # xs.append(v) / xs.extend(vs) on a local list.
    case(appended, [1.5, -0.5], 0.25), case(appended, [A, VEC], VEC), case(appended, [], A),
    case(extended, [1.5, -0.5], [0.25, 2.0]), case(extended, [VEC], (VEC, 0.5)), case(extended, [2.0], []),
    # options.get(key, default): from the mapping, or the default.
    case(dict.get, {"a": 1.5, "b": A}, "b", VEC), case(dict.get, {"a": 1.5, "b": A}, "c", VEC),
    case(dict.get, {"a": 1.5}, "a"),
    # d.items() and d.values() in differentiated code run as lists.
    case(listed_items, {"a": 1.5, "b": A}), case(listed_values, {"a": 1.5, "b": A}),
    case(flat_items, A), case(flat_items, A.T),
    # {**a, **b} and dict(a): later items win.
    case(merged, {"a": 1.5, "b": A}, {"b": A, "c": VEC}), case(merged, {"a": 1.5}), case(dict, {"a": 1.5, "b": A}),
    # A + or * whose operands may be lists or tuples: concatenation, repetition, or arithmetic after all.
    case(added, [1.5, A], [VEC, -0.5]), case(added, (1.5,), (2.0, VEC)), case(added, COL, ROW),
    case(added, 2.0, VEC), case(multiplied, [1.5, A], 2), case(multiplied, 3, (1.5, VEC)),
    case(multiplied, COL, ROW), case(multiplied, 2.0, A),
    # [x, *rest], (*a, *b), [*rows, x]: displays with * unpacking.
    case(unpacked, ("", "*"), 1.5, [A, VEC]), case(unpacked, ("*", "*"), (1.5, 2.0), [VEC]),
    case(unpacked, ("*", ""), A, VEC),
    # first, *rest, last = xs: lists, tuples, the rows of an array, an empty middle.
    case(starred_parts, [1.5, A, VEC, -0.5], 1, 1), case(starred_parts, (1.5, 2.0, VEC), 0, 1),
    case(starred_parts, A, 1, 0), case(starred_parts, [A, VEC], 1, 1),
    # zip(...), enumerate(...) used as values: lists of tuples; zip stops at the shortest sequence.
    case(zipped, [1.5, A], (VEC, 2.0)), case(zipped, [1.5, 2.5, 0.5], [A]), case(zipped, A, VEC),
    case(enumerated, [1.5, A]), case(enumerated, (VEC, 2.0), start=1),
    # a + b and friends: same shapes, (3, 1) with (1, 4), array with scalar, Python floats.
    case(operator.add, 1.5, -0.25), case(operator.add, A, A), case(operator.add, COL, ROW),
    case(operator.add, A, 2.0), case(operator.add, 2.0, VEC),
    case(operator.sub, 1.5, -0.25), case(operator.sub, COL, ROW), case(operator.sub, A, VEC),
    case(operator.mul, 1.5, -0.25), case(operator.mul, COL, ROW), case(operator.mul, 3.0, A),
    case(operator.mul, A, np.float64(0.5)),
    case(operator.truediv, 1.5, -0.25), case(operator.truediv, COL, POS), case(operator.truediv, A, 2.5),
    case(operator.pow, 1.3, 2), case(operator.pow, A, 2), case(operator.pow, 1.3, 2.0),
    case(operator.pow, 1.3, 3), case(operator.pow, POS, 1.7), case(operator.pow, POS_COL, ROW),
    case(operator.pow, 2.5, VEC), case(operator.pow, 0.0, 0), case(operator.pow, np.zeros(3), np.arange(3)),
    case(operator.matmul, A, A.T), case(operator.matmul, VEC, A.T), case(operator.matmul, A, VEC),
    case(operator.matmul, VEC, VEC), case(operator.matmul, rng.standard_normal((2, 3, 4)), A.T),
    case(operator.matmul, rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((5, 4, 2))),
    case(operator.mod, 7.3, 2.1), case(operator.mod, -7.3, 2.1), case(operator.mod, A * 5, POS_COL),
    case(operator.neg, 1.5), case(operator.neg, A), case(operator.pos, A),
    case(operator.abs, -1.5), case(operator.abs, A),
    case(builtins.abs, -1.5), case(builtins.abs, 2.0), case(builtins.abs, A),
    case(builtins.pow, 1.3, 2), case(builtins.pow, 1.3, 2.0), case(builtins.pow, 1.3, 0.7),
    case(builtins.pow, POS, ROW), case(builtins.pow, 0.0, 0),
    case(builtins.divmod, 7.3, 2.1), case(builtins.divmod, -7.3, 2.1),
    case(builtins.float, 2.5), case(builtins.float, np.float64(2.5)), case(builtins.float, np.array(2.5)),
    case(builtins.max, 1.5, 2.5), case(builtins.max, 2.5, 1.5, -3.0), case(builtins.max, [1.5, 2.5, 0.5]),
    case(builtins.max, (1.5, -2.5), key=abs), case(builtins.max, VEC),
    case(builtins.min, 1.5, 2.5), case(builtins.min, [1.5, 2.5, 0.5]), case(builtins.min, VEC),
    case(builtins.sum, [1.5, 2.5, 0.5]), case(builtins.sum, (1.5, 2.5), 0.25), case(builtins.sum, [A, VEC, ROW]),
    case(builtins.sum, A), case(builtins.sum, [A, A], np.zeros((3, 4))),
    case(builtins.sorted, [2.5, -1.0, 0.5]), case(builtins.sorted, (2.5, -1.0, 0.5), reverse=True),
    case(builtins.sorted, [2.5, -1.0, 0.5], key=abs), case(builtins.sorted, VEC),
    case(builtins.list, (1.5, 2.5)), case(builtins.list, A), case(builtins.tuple, [1.5, 2.5]),
    case(assigned, 1.5), case(assigned, A),
]


@pytest.mark.parametrize("c", CASES)
def test_rule_matches_finite_differences(c):
    run_case(c)


@dataclasses.dataclass
class _Point:
    x: float
    y: float


# Rules of structured values, checked by their own tests below rather than by check_rule_vjp.
def _closure_over(k, m):
    return lambda v: v * k + m


STRUCTURED = [case(with_field, _Point(1.0, 2.0), "x", 0.5), case(rebound, _closure_over(1.0, 2.0), ("k",), 3.0)]


def test_rebound_gives_a_closure_new_values_and_splits_its_cotangent():
    rule = registry.lookup_rule(rebound)
    g = _closure_over(1.5, 2.0)
    made, pullback = registry.vjp_from_rule(rule, (g, ("k",), 4.0), {})
    assert made(3.0) == 3.0 * 4.0 + 2.0 and g(3.0) == 3.0 * 1.5 + 2.0     # g itself is unchanged
    out = pullback({"k": 0.25, "m": 0.5})      # the closure's cotangent, by free variable
    assert out["values"] == (0.25,) and out["function"] == {"m": 0.5}
    # Through differentiation: d/dk of rebound(g, ("k",), k)(3.0) is 3.0, against finite differences.
    eps = 1e-6
    numeric = (rebound(g, ("k",), 4.0 + eps)(3.0) - rebound(g, ("k",), 4.0 - eps)(3.0)) / (2 * eps)
    assert numeric == pytest.approx(3.0)

    def f(k):
        h = _closure_over(1.5, 2.0)
        return rebound(h, ("k",), k)(3.0)

    assert adtrans.gradient(f, 4.0) == pytest.approx(numeric)


def test_every_builtin_rule_and_case_is_tested():
    assert untested("adtrans.rules.builtins", CASES + STRUCTURED) == []


def test_with_field_rule_matches_finite_differences():
    rule = registry.lookup_rule(with_field)
    point = _Point(1.5, -0.5)
    y, pullback = registry.vjp_from_rule(rule, (point, "x", 0.25), {})
    assert y == _Point(0.25, -0.5) and point == _Point(1.5, -0.5)    # a copy: the input is unchanged
    d_y = _Point(3.0, 7.0)                 # a cotangent of the result, field by field
    out = pullback(d_y)
    # value: d/dvalue <d_y, with_field(p, "x", value)> = d_y.x
    assert out["value"] == pytest.approx(3.0)
    # obj: the overwritten field gets nothing, the other passes through
    assert out["obj"].x is None and out["obj"].y == 7.0
    eps = 1e-6
    numeric = (d_y.x * with_field(point, "x", 0.25 + eps).x - d_y.x * with_field(point, "x", 0.25 - eps).x) / (2 * eps)
    assert out["value"] == pytest.approx(numeric)


@pytest.mark.parametrize("rule", module_rules("adtrans.rules.builtins"), ids=lambda r: r.name)
def test_templates_are_well_formed(rule):
    assert template_problems(rule) == []


def test_every_rule_takes_a_y_free_signature_and_names_real_parameters():
    for rule in registry.all_rules():
        names = [p.name for p in rule.params]
        assert "y" not in names and "d_y" not in names, rule.name
        assert rule.differentiable_params <= set(names), rule.name


# -- Conventions --------------------------------------------------------------------

def pull(fn, *args, d_y=1.0, **kwargs):
    rule = registry.lookup_rule(fn)
    return registry.vjp_from_rule(rule, args, kwargs)[1](d_y)


def test_ties_in_max_share_the_cotangent():
    assert pull(builtins.max, 2.0, 2.0) == {"args": (0.5, 0.5)}
    assert pull(builtins.max, [1.0, 3.0, 3.0]) == {"args": ([0.0, 0.5, 0.5],)}
    assert pull(builtins.min, 1.0, 1.0, 4.0) == {"args": (0.5, 0.5, 0.0)}


def test_max_with_a_key_gives_the_cotangent_to_the_element_returned():
    assert pull(builtins.max, [2.0, -2.0], key=abs) == {"args": ([1.0, 0.0],)}


def test_abs_has_zero_derivative_at_zero():
    assert pull(builtins.abs, 0.0) == {"x": 0.0}
    assert pull(builtins.abs, -0.0) == {"x": 0.0}


def test_sequence_cotangents_keep_the_sequence_type():
    assert pull(builtins.sum, [1.0, 2.0]) == {"iterable": [1.0, 1.0], "start": 1.0}
    assert pull(builtins.sum, (1.0, 2.0))["iterable"] == (1.0, 1.0)
    assert pull(builtins.sorted, [3.0, 1.0, 2.0], d_y=[10.0, 20.0, 30.0]) == {"iterable": [30.0, 10.0, 20.0]}


def test_operator_cotangents_of_python_floats_are_floats():
    x32 = np.ones(3, dtype=np.float32)
    cotangents = pull(operator.mul, x32, 2.0, d_y=np.ones(3, np.float32))
    assert cotangents["a"].dtype == np.float32
    assert type(cotangents["b"]) is float


def test_float32_stays_float32_when_mixed_with_float64():
    x32 = np.ones((2, 3), dtype=np.float32)
    w64 = np.full((1, 3), 2.0)
    cotangents = pull(operator.mul, x32, w64, d_y=np.ones((2, 3)))
    assert cotangents["a"].dtype == np.float32
    assert cotangents["b"].dtype == np.float64 and cotangents["b"].shape == (1, 3)


def test_no_derivative_functions():
    assert registry.is_constant_function(operator.floordiv)
    assert registry.is_constant_function(len) and registry.is_constant_function(print)
    assert registry.integer_valued_name(int) == "int"
    assert registry.integer_valued_name(round) == "round"


# -- The checker catches wrong rules ------------------------------------------------------

def _square(x):
    return x * x


def _halve(x):
    return np.asarray(x) / 2


_rule = rules_for(globals())
_rule(_square, "x", x="d_y * x")                        # wrong: misses the factor 2
_rule(_halve, "x", x="(d_y / 2).astype(np.float64)")    # right value, but widens float32


def test_a_wrong_rule_is_caught():
    with pytest.raises(AssertionError, match="does not match central finite differences"):
        check_rule_vjp(_square, np.array([1.0, 2.0]))


def test_a_widening_rule_is_caught():
    check_rule_vjp(_halve, np.array([1.0, 2.0]), float32=False)
    with pytest.raises(AssertionError, match="float32"):
        check_rule_vjp(_halve, np.array([1.0, 2.0]))


def test_docs_list_every_rule():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text()
    missing = [rule.name for rule in registry.all_rules()
               if rule.namespace.get("__name__", "").startswith("adtrans.rules.")
               and f"`{rule.name.replace('_operator.', 'operator.')}`" not in text]
    assert missing == [], "docs/rules.md does not list these rules (regenerate its tables)"
