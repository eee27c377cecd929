"""Hunting in the language of SPEC section 5 as numeric programmers write it, in combinations.

Loops (while with compound conditions, convergence loops with break, nested break/continue,
for-else, enumerate(zip), reversed ranges, negative steps, rows of 2-D arrays, dict loops),
early returns, conditional expressions, chained comparisons, and/or values, lambdas, nested
defs, recursion, defaults and keyword-only parameters, *args/**kwargs, comprehensions,
unpacking, swaps, augmented assignment to subscripts and attributes, lists built then
stacked, assert/print/isinstance/len/float(), and the constructs SPEC says are located
errors.

Each program is checked against central finite differences through the three entry points
(``assert_gradient``), its value against the plain run bit for bit, and its pullback called
twice.
"""

import math
from dataclasses import dataclass

import numpy as np
import pytest

import adtrans
from structured_check import _flat, _flat_tangent, assert_gradient


RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape)


def check(f, *args, wrt=None, **kw):
    """assert_gradient, then the pullback called twice gives the same tangents."""
    grads = assert_gradient(f, *args, wrt=wrt, **kw)
    positions = wrt if wrt is not None else tuple(i for i, a in enumerate(args) if _flat(a).size)
    value, pull = adtrans.value_with_pullback(f, *args, wrt=positions, **kw)
    first = pull(1.0)
    second = pull(1.0)
    for i, a, b in zip(positions, first, second):
        np.testing.assert_array_equal(_flat_tangent(a, args[i]), _flat_tangent(b, args[i]))
    return grads


def line_of(fn, offset):
    """The line `offset` lines below `fn`'s def."""
    return fn.__code__.co_firstlineno + offset


def assert_located(error, fn, offset, *fragments):
    """`error` is a DifferentiationError at `fn`'s line `offset` in this file, mentioning `fragments`."""
    assert isinstance(error, adtrans.DifferentiationError)
    assert error.filename is not None and error.filename.endswith("test_hunt6_language.py"), error.filename
    assert error.lineno == line_of(fn, offset), (error.lineno, line_of(fn, offset), str(error))
    for fragment in fragments:
        assert fragment in str(error), f"{fragment!r} not in {str(error)!r}"


def compiles(f, **kw):
    """generated_source(f) is valid Python; returns the text."""
    text = adtrans.generated_source(f, **kw)
    compile(text, "<generated>", "exec")
    return text


# == 1. While loops and convergence loops =====================================================

def fixed_point_cos(a):
    # x = cos(a x) solved by iteration; derivative via the unrolled iteration
    x = 0.5
    err = 1.0
    it = 0
    while err > 1e-12 and it < 200:
        x_new = math.cos(a * x)
        err = abs(x_new - x)
        x = x_new
        it += 1
    return x


def test_fixed_point_while_with_compound_condition():
    a = 0.7
    g = adtrans.gradient(fixed_point_cos, a)
    x = fixed_point_cos(a)
    # implicit function: x = cos(a x)  =>  dx/da = -sin(a x) x / (1 + a sin(a x))
    want = -math.sin(a * x) * x / (1 + a * math.sin(a * x))
    assert g == pytest.approx(want, rel=1e-8)
    check(fixed_point_cos, a)


def newton_sqrt(c):
    x = c
    for it in range(50):
        step = (x * x - c) / (2 * x)
        x = x - step
        if abs(step) < 1e-14:
            break
    return x


def test_newton_with_break_on_convergence():
    g = adtrans.gradient(newton_sqrt, 3.0)
    assert g == pytest.approx(0.5 / math.sqrt(3.0), rel=1e-9)
    check(newton_sqrt, 3.0)


def while_true_break(x, n):
    y = x
    k = 0
    while True:
        y = y * 0.9 + math.sin(y)
        k += 1
        if k >= n or y > 10.0:
            break
    return y


def test_while_true_with_break():
    check(while_true_break, 0.3, 5, wrt=(0,))


def while_with_or_condition(x):
    y = x
    i = 0
    while not (y > 4.0 or i >= 6):
        y = y * 1.3 + 0.1
        i = i + 1
    return y * i


def test_while_not_or_condition():
    check(while_with_or_condition, 0.5)
    check(while_with_or_condition, 5.0)


def newton_return_inside_while(c, x0):
    x = x0
    k = 0
    while k < 100:
        fx = x ** 3 - c
        if abs(fx) < 1e-13:
            return x
        x = x - fx / (3 * x * x)
        k += 1
    return x


def test_early_return_inside_if_inside_while():
    c = 5.0
    d_c, d_x0 = adtrans.gradient(newton_return_inside_while, c, 1.0)
    assert d_c == pytest.approx(1 / (3 * c ** (2 / 3)), rel=1e-8)
    assert abs(d_x0) < 1e-8
    check(newton_return_inside_while, c, 1.0)


# == 2. Nested loops, break/continue at both levels, for-else ============================

def nested_break_continue(A, w):
    total = 0.0
    for i in range(A.shape[0]):
        if i == 1:
            continue
        for j in range(A.shape[1]):
            if A[i, j] < -1.0:
                break
            if j % 2 == 1:
                continue
            total = total + A[i, j] * w[j]
        if total > 5.0:
            break
    return total


def test_nested_loops_with_break_and_continue_at_both_levels():
    A = np.array([[0.5, 1.0, -2.0, 0.3], [1.0, 2.0, 3.0, 4.0], [0.2, 0.1, 0.7, -1.5], [9.0, 1.0, 1.0, 1.0]])
    w = np.array([1.0, 2.0, 3.0, 4.0])
    check(nested_break_continue, A, w)


def find_first_above(xs, t):
    for i, x in enumerate(xs):
        if x > t:
            found = x * x
            break
    else:
        found = t * 2.0
    return found


def test_for_else_is_a_located_error():
    # SPEC 5 does not list a loop's `else`; it is refused at the `else` block's first line.
    # (docs/control_flow.md's list of refused constructs does not name it.)
    xs = np.array([0.1, 0.5, 0.9, 1.2])
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(find_first_above, xs, 0.7)
    assert_located(info.value, find_first_above, 6, "'else' block is not supported", "flag")


def nested_for_else(A):
    total = 0.0
    for row in A:
        for v in row:
            if v < 0:
                break
            total = total + v ** 2
        else:
            total = total + row.sum()
    return total


def test_nested_for_else_is_a_located_error():
    A = np.array([[1.0, 2.0], [-1.0, 3.0], [0.5, 0.25]])
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(nested_for_else, A)
    assert_located(info.value, nested_for_else, 8, "'else' block is not supported")


def while_else(x):
    y = x
    n = 0
    while n < 4:
        y = y * y
        if y > 100.0:
            break
        n += 1
    else:
        y = y + 1.0
    return y


def test_while_else_is_a_located_error():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(while_else, 1.1)
    assert_located(info.value, while_else, 9, "'else' block is not supported")


def early_return_in_nested_loops(A, t):
    acc = 0.0
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            acc = acc + A[i, j] * A[j, i]
            if acc > t:
                return acc * t
    return acc


def test_early_return_inside_nested_loops():
    A = np.arange(9.0).reshape(3, 3) / 4.0
    check(early_return_in_nested_loops, A, 2.0)
    check(early_return_in_nested_loops, A, 100.0)


# == 3. Iteration shapes ======================================================================

def enumerate_zip(xs, ys):
    total = 0.0
    for i, (x, y) in enumerate(zip(xs, ys)):
        total = total + (i + 1) * x * y
    return total


def test_enumerate_of_zip():
    check(enumerate_zip, randn(4), randn(4))
    check(enumerate_zip, [1.0, 2.0, 3.0], [0.5, -0.5, 2.0])


def reversed_range_backsub(U, b):
    n = b.shape[0]
    x = np.zeros(n)
    for i in reversed(range(n)):
        s = b[i]
        for j in range(i + 1, n):
            s = s - U[i, j] * x[j]
        x[i] = s / U[i, i]
    return np.sum(x ** 2)


def test_back_substitution_with_reversed_range():
    U = np.triu(randn(4, 4)) + 3 * np.eye(4)
    b = randn(4)
    check(reversed_range_backsub, U, b)
    # compare with solve
    g_b = adtrans.gradient(reversed_range_backsub, U, b, wrt="b")
    x = np.linalg.solve(U, b)
    np.testing.assert_allclose(g_b, np.linalg.solve(U.T, 2 * x), rtol=1e-10)


def negative_step(xs):
    acc = 0.0
    for i in range(len(xs) - 1, -1, -2):
        acc = acc * 0.5 + xs[i] ** 2
    return acc


def test_range_with_negative_step():
    check(negative_step, randn(7))


def range_start_stop_step(xs):
    acc = 1.0
    for i in range(1, len(xs), 3):
        acc = acc * xs[i] + xs[i - 1]
    return acc


def test_range_with_start_stop_step():
    check(range_start_stop_step, randn(8))


def loop_over_rows(A, w):
    out = []
    for row in A:
        out.append(np.tanh(row @ w))
    return np.sum(np.array(out) ** 2)


def test_loop_over_rows_then_np_array():
    check(loop_over_rows, randn(3, 4), randn(4))


def rows_stacked(A, w):
    rows = []
    for k, row in enumerate(A):
        rows.append(row * w[k])
    M = np.stack(rows)
    return np.sum(M @ M.T)


def test_loop_over_rows_then_np_stack():
    check(rows_stacked, randn(3, 2), randn(3))


def dict_items_loop(params, x):
    total = 0.0
    for name, p in params.items():
        if name.startswith("b"):
            total = total + p
        else:
            total = total + p * x
    for v in params.values():
        total = total + 0.1 * v ** 2
    return total


def test_loop_over_dict_items_and_values():
    check(dict_items_loop, {"w1": 1.5, "b1": -0.5, "w2": 2.0}, 0.3)


def dict_of_arrays_loop(params, x):
    h = x
    for key in sorted(params):
        h = np.tanh(params[key] @ h)
    return np.sum(h)


def test_loop_over_sorted_dict_keys():
    check(dict_of_arrays_loop, {"a": randn(3, 3), "b": randn(3, 3)}, randn(3))


def loop_variable_after(xs):
    for i, x in enumerate(xs):
        y = x * 2.0
    return y * x + i


def test_loop_variables_read_after_the_loop():
    check(loop_variable_after, [1.0, 2.0, 3.5])


def first_assigned_in_if(xs):
    for x in xs:
        if x > 0:
            last_positive = x
    return last_positive ** 2


def test_variable_first_assigned_inside_if_inside_loop():
    check(first_assigned_in_if, [0.5, -1.0, 2.0, -3.0])


def tuple_targets(pairs, w):
    total = 0.0
    for i, (a, b) in enumerate(pairs):
        total = total + w[i] * a * b
    return total


def test_tuple_unpacking_in_for_targets():
    check(tuple_targets, [(1.0, 2.0), (0.5, -1.0), (3.0, 0.25)], randn(3))


def nested_unpack_targets(triples):
    total = 0.0
    for (a, (b, c)) in triples:
        total = total + a * b - c
    return total


def test_nested_tuple_targets():
    check(nested_unpack_targets, [(1.0, (2.0, 3.0)), (0.5, (1.5, -2.0))])
