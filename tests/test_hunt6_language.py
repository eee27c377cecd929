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

import itertools
import math
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import adtrans
from structured_check import _flat, _flat_tangent, assert_gradient

if sys.version_info >= (3, 10):
    from programs_310 import uses_match      # 'match' is a syntax error before Python 3.10
else:
    uses_match = None


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
    own_file = fn.__code__.co_filename.replace("\\", "/").rsplit("/", 1)[-1]
    assert error.filename is not None and error.filename.endswith(own_file), error.filename
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


# == 4. Expressions: conditional, chained comparisons, and/or values ==========================

def cond_expr_branches(x, y):
    a = x * x if x > y else math.sin(y) * x
    b = (y ** 3 if 0.0 < y < 1.0 else -y) + (x if x else y)
    return a * b


def test_conditional_expressions_with_differentiated_branches():
    for x, y in ((1.5, 0.5), (0.3, 0.8), (-0.2, 2.0)):
        check(cond_expr_branches, x, y)


def chained_compare(xs, lo, hi):
    total = 0.0
    for x in xs:
        if lo < x <= hi:
            total = total + (x - lo) * (hi - x)
        elif x > hi > lo:
            total = total + hi * x
    return total


def test_chained_comparisons():
    check(chained_compare, np.array([0.1, 0.5, 0.9, 1.4]), 0.2, 1.0)


def or_default(x, scale=None):
    s = scale or 2.0
    t = (x > 0 and x) or -x
    return s * t * x


def test_or_default_and_and_or_values():
    check(or_default, 1.5)
    check(or_default, -1.5)
    check(or_default, 1.5, 3.0)
    # scale == 0.0 falls back to 2.0 (a kink there, so only the x gradient is compared)
    check(or_default, 1.5, 0.0, wrt=(0,))
    assert adtrans.gradient(or_default, 1.5, 0.0, wrt="scale") == 0.0


def and_or_with_arrays(w, mask_on):
    v = (mask_on and 2.0 or 1.0) * w
    u = mask_on and w                # w, or False (which multiplies as 0)
    return np.sum(v ** 2) + np.sum(u * v)


def test_and_or_choosing_arrays_on_a_flag():
    check(and_or_with_arrays, randn(3), True, wrt=(0,))
    check(and_or_with_arrays, randn(3), False, wrt=(0,))


# == 5. Lambdas, nested defs, recursion ======================================================

def lambdas_in_loop(xs, a):
    sq = lambda t: a * t * t
    shift = lambda t, c=1.0: t + c * a
    total = 0.0
    for x in xs:
        total = total + sq(shift(x))
    return total


def test_lambdas_assigned_to_names_and_called_in_a_loop():
    check(lambdas_in_loop, randn(4), 0.7)


def closure_modifies_outer(xs, w):
    scale = 1.0

    def term(x):
        return scale * math.tanh(w * x)

    total = 0.0
    for x in xs:
        total = total + term(x)
        scale = scale * 0.5
    return total


def test_nested_def_reads_an_outer_variable_that_changes():
    # term reads `scale` at call time: 1, 0.5, 0.25, ...
    check(closure_modifies_outer, [0.3, -0.2, 1.1], 0.9)


def closures_capture_loop_variable(xs, w):
    fs = []
    for k in range(3):
        def f(x, k=k):
            return w[k] * x ** (k + 1)
        fs.append(f)
    return sum(f(x) for f, x in zip(fs, xs))


def test_nested_def_capturing_a_loop_variable_by_default():
    check(closures_capture_loop_variable, [0.5, 1.5, -0.7], randn(3))


def late_binding_closure(w):
    fs = []
    for k in range(3):
        fs.append(lambda x: w[k] * x)
    return fs[0](1.0) + fs[1](2.0)


def test_lambdas_in_a_loop_bind_late_like_python():
    # Python semantics: all lambdas see the final k == 2, so result = w[2]*1 + w[2]*2
    w = randn(3)
    assert late_binding_closure(w) == pytest.approx(3 * w[2])
    check(late_binding_closure, w)


def power_rec(x, n):
    if n == 0:
        return 1.0
    if n % 2 == 0:
        h = power_rec(x, n // 2)
        return h * h
    return x * power_rec(x, n - 1)


def test_recursive_function_with_base_case():
    g = adtrans.gradient(power_rec, 1.3, 7, wrt="x")
    assert g == pytest.approx(7 * 1.3 ** 6, rel=1e-12)
    check(power_rec, 1.3, 7, wrt=(0,))


def tree_sum(node, w):
    # node: float leaf or (left, right) tuple
    if isinstance(node, tuple):
        return w * tree_sum(node[0], w) + tree_sum(node[1], w)
    return math.sin(node)


def test_recursion_over_a_nested_tuple_with_isinstance():
    tree = ((0.3, 0.4), (1.0, (0.2, -0.5)))
    check(tree_sum, tree, 0.8)


def helper_with_defaults(x, w, *, bias=0.5, power=2):
    return (w * x + bias) ** power


def keyword_only_caller(xs, w, b):
    total = 0.0
    for x in xs:
        total = total + helper_with_defaults(x, w) + helper_with_defaults(x, w, bias=b, power=3)
    return total


def test_helpers_with_defaults_and_keyword_only_parameters():
    check(keyword_only_caller, [0.2, -0.4, 1.0], 0.9, 0.1)


def forward_args(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def affine(x, w, b=0.0, *, act=None):
    y = w * x + b
    return act(y) if act is not None else y


def star_forwarding(x, w, b):
    y = forward_args(affine, x, w, b=b, act=np.tanh)
    z = forward_args(affine, y, w)
    return np.sum(z ** 2)


def test_star_args_kwargs_forwarding():
    check(star_forwarding, randn(3), 0.7, 0.2)


def varargs_sum(*xs, scale=1.0):
    total = 0.0
    for x in xs:
        total = total + scale * x * x
    return total


def calls_varargs(a, b, c):
    return varargs_sum(a, b, c, scale=c) + varargs_sum(*[a, b])


def test_calling_a_varargs_helper():
    check(calls_varargs, 0.5, -1.5, 2.0)


# == 6. Comprehensions ========================================================================

def comprehension_sums(xs, w):
    a = sum(w * x ** 2 for x in xs)
    b = sum([math.exp(-x) for x in xs if x > 0])
    c = sum(x * y for x, y in zip(xs, xs[1:]))
    return a + b + c


def test_generator_and_list_comprehensions_in_sum():
    check(comprehension_sums, [0.5, -0.3, 1.2, 0.8], 1.7)


def dict_comprehension(xs, ws):
    d = {f"k{i}": x * w for i, (x, w) in enumerate(zip(xs, ws))}
    total = 0.0
    for k, v in d.items():
        total = total + v ** 2
    return total + d["k0"]


def test_dict_comprehension():
    check(dict_comprehension, [1.0, 2.0, 3.0], [0.5, -0.2, 0.3])


def nested_comprehension(A, v):
    rows = [[A[i, j] * v[j] for j in range(A.shape[1])] for i in range(A.shape[0])]
    return sum(sum(r) ** 2 for r in rows)


def test_nested_comprehension():
    A, v = randn(3, 2), randn(2)
    check(nested_comprehension, A, v)
    # equals ||A v||^2
    np.testing.assert_allclose(adtrans.gradient(nested_comprehension, A, v, wrt="v"), 2 * A.T @ (A @ v), rtol=1e-10)


def flattening_comprehension(M, w):
    flat = [x * w for row in M for x in row if x > 0]
    return sum(flat) + len(flat)


def test_comprehension_with_two_fors_and_a_filter():
    check(flattening_comprehension, randn(3, 3), 0.6)


def comprehension_to_array(xs, a):
    arr = np.array([math.sin(a * x) for x in xs])
    return float(arr @ arr)


def test_comprehension_into_np_array_and_float():
    check(comprehension_to_array, [0.3, 0.9, -1.2], 0.8)


def closures_appended_one_called(w):
    fs = []
    fs.append(lambda x: w * x)
    fs.append(lambda x: w * x * x)
    return fs[0](2.0)


def test_minimal_list_of_appended_closures_not_all_called():
    assert adtrans.gradient(closures_appended_one_called, 1.5) == 2.0


def pair_or_number(v, w):
    if len(v) == 2:
        return v[0] * v[1] * w
    return -v * w


def test_minimal_parameter_a_tuple_on_one_branch_and_a_number_on_the_other():
    d_v, d_w = adtrans.gradient(pair_or_number, (0.5, 1.5), 2.0)
    assert d_v == (3.0, 1.0) and d_w == 0.75


def concatenated_on_one_branch(node):
    if isinstance(node, tuple):
        y = node + node
        return y[0] * y[3]
    return node * 3.0


def test_minimal_concatenation_on_a_branch_where_the_other_multiplies():
    assert adtrans.gradient(concatenated_on_one_branch, (0.3, 0.4)) == (0.4, 0.3)


# == 7. Assignment forms =====================================================================

def fib_like(a, b, n):
    for _ in range(n):
        a, b = b, a + b * 0.5
    return a * b


def test_swap_with_tuple_assignment():
    check(fib_like, 0.3, 0.7, 6, wrt=(0, 1))


def rotate_three(x, y, z):
    for _ in range(4):
        x, y, z = y * 1.1, z, x - y
    return x * y + z


def test_three_way_rotation():
    check(rotate_three, 0.3, -0.7, 1.2)


def augmented_subscripts(x, A):
    xs = np.zeros(4)
    for i in range(4):
        xs[i] += x * (i + 1)
        xs[i] *= xs[i]
    B = A.copy()
    for i in range(B.shape[0]):
        for j in range(B.shape[1]):
            B[i, j] *= x
            if i == j:
                B[i, j] -= xs[i]
    B[:, 0] /= 2.0
    B[1] **= 2
    return np.sum(B) + np.sum(xs)


def test_augmented_assignment_on_subscripts():
    check(augmented_subscripts, 0.7, randn(3, 3))


def augmented_list_items(ws, x):
    acc = [0.0, 0.0, 0.0]
    for k in range(5):
        acc[k % 3] += ws[k] * x
        acc[0] *= 0.9
    acc[-1] -= x
    return acc[0] * acc[1] + acc[2] ** 2


def test_augmented_assignment_on_list_items():
    check(augmented_list_items, list(randn(5)), 0.6)


@dataclass
class Particle:
    pos: np.ndarray
    vel: np.ndarray
    mass: float


def integrate_particle(p, force, dt):
    p = Particle(p.pos.copy(), p.vel.copy(), p.mass)     # plain Python would change the caller's arrays
    for _ in range(3):
        p.vel += dt * force / p.mass
        p.pos += dt * p.vel
        p.mass *= 0.99
    return np.sum(p.pos ** 2) + p.mass


def test_augmented_assignment_on_attributes():
    p = Particle(randn(2), randn(2), 1.3)
    check(integrate_particle, p, randn(2), 0.1)
    # the caller's object is not changed
    pos = p.pos.copy()
    adtrans.gradient(integrate_particle, p, randn(2), 0.1)
    np.testing.assert_array_equal(p.pos, pos)


class Counter:
    def __init__(self, v):
        self.v = v


def plain_class_attribute(x):
    c = Counter(x)
    for _ in range(3):
        c.v += c.v * x
    return c.v


def test_a_plain_class_is_a_located_error():
    # SPEC 2: only dataclasses are differentiable objects; a plain class is refused at its construction.
    # (The note says adtrans "cannot read its source", which is not why: Counter's source is readable.)
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(plain_class_attribute, 0.4)
    assert_located(info.value, plain_class_attribute, 1, "'Counter'")


def build_list_then_stack(x, W):
    hs = []
    h = x
    for t in range(3):
        h = np.tanh(W @ h + t)
        hs.append(h)
    H = np.stack(hs)
    A = np.array(hs)
    return np.sum(H * A[::-1]) + np.sum(np.array([np.sum(h) for h in hs]))


def test_append_then_np_stack_and_np_array():
    check(build_list_then_stack, randn(3), randn(3, 3) * 0.5)


def build_list_of_floats(x):
    ys = []
    for k in range(4):
        ys.append(x ** k)
    ys.extend([2 * x, 3 * x])
    arr = np.array(ys)
    return float(np.sum(arr * np.arange(6.0)))


def test_append_floats_then_np_array():
    check(build_list_of_floats, 0.8)


# == 8. assert, print, globals, isinstance, len, float(), formatting ==========================

TOL = 1e-3
WEIGHTS = np.array([0.5, -1.0, 2.0])


def uses_globals(x):
    assert x.shape == WEIGHTS.shape, "shape mismatch"
    assert np.all(np.isfinite(x))
    y = np.sum(WEIGHTS * x ** 2)
    assert y == y
    if isinstance(x, np.ndarray) and len(x) > 2:
        y = y + TOL * x[2]
    return y


def test_assert_global_constants_isinstance_and_len():
    x = randn(3)
    check(uses_globals, x)
    np.testing.assert_allclose(adtrans.gradient(uses_globals, x), 2 * WEIGHTS * x + TOL * np.eye(3)[2], rtol=1e-12)


def failing_assert(x):
    assert x > 0, "x must be positive"
    return x * x


def test_a_failing_assert_raises_assertion_error_from_the_forward():
    with pytest.raises(AssertionError, match="x must be positive"):
        adtrans.gradient(failing_assert, -1.0)


def prints_values(x, w):
    y = 0.0
    for i in range(2):
        y = y + w * math.sin(x * i)
        print(f"step {i}: y={y:.4f}", "x =", x)
    print("done: %.3f" % y, "{:.2f}".format(w))
    return y


def test_print_runs_once_per_forward_call(capsys):
    x, w = 0.7, 1.3
    prints_values(x, w)
    expected = capsys.readouterr().out
    v, pb = adtrans.value_with_pullback(prints_values, x, w)
    assert capsys.readouterr().out == expected
    pb(1.0)
    pb(1.0)
    assert capsys.readouterr().out == ""
    adtrans.gradient(prints_values, x, w)
    assert capsys.readouterr().out == expected
    adtrans.value_with_gradient(prints_values, x, w)
    assert capsys.readouterr().out == expected
    d_x, d_w = adtrans.gradient(prints_values, x, w)
    capsys.readouterr()
    assert d_x == pytest.approx(w * math.cos(x), rel=1e-12)
    assert d_w == pytest.approx(math.sin(x), rel=1e-12)


def formatted_label(x):
    label = f"{x:.3f}"
    name = "value=" + str(round(x, 2)) + "%d" % 3
    return x * len(label) + len(name)


def test_string_formatting_of_differentiated_values():
    check(formatted_label, 1.23456)


def float_conversion(x, arr):
    a = float(x * 2.0)
    b = float(np.sum(arr ** 2))
    c = float(arr[0])
    return a * b + c


def test_float_conversion_keeps_the_derivative():
    # like jax (float() is a no-op on the value's derivative here) and torch's .item() would not:
    # adtrans's docs/rules list float as differentiable.
    check(float_conversion, 0.5, randn(3))


def int_conversions_of_constants(x, n):
    k = int(n / 2)
    m = int(len([1, 2, 3]))
    return x ** k + m * x


def test_int_of_constants_is_fine():
    check(int_conversions_of_constants, 1.3, 5.0, wrt=(0,))


def numpy_scalar_conversion(x):
    y = np.float64(x) * 2.0
    z = np.asarray(x) + y
    return float(z) ** 2


def test_numpy_scalar_conversions():
    check(numpy_scalar_conversion, 0.8)


# == 9. More loops, recursion and call forms ===================================================

def columns_rows_and_indices(A, w):
    total = 0.0
    for col in A.T:
        total = total + np.dot(col, w) ** 2
    for row in A[1:]:
        total = total + row[0] * row[-1]
    for i, x in enumerate(w, start=1):
        total = total + i * x
    for i in range(len(w))[::-1]:
        total = total * 0.9 + w[i]
    return total


def test_columns_row_slices_enumerate_start_and_reversed_range_slice():
    check(columns_rows_and_indices, randn(2, 3), randn(2))


def while_index_condition(xs, w):
    i = 0
    acc = 0.0
    while i < len(xs) and xs[i] > 0:
        acc = acc + w * xs[i]
        i += 1
    return acc * i


def test_while_with_an_index_and_a_data_condition():
    check(while_index_condition, [0.5, 1.0, -1.0, 2.0], 0.7)


def matmul_augmented(h, W):
    h = h.copy()
    for _ in range(2):
        h @= W
        h = np.tanh(h)
    return np.sum(h)


@pytest.mark.skipif(np.lib.NumpyVersion(np.__version__) < "1.25.0", reason="'a @= b' needs NumPy 1.25")
def test_matmul_augmented_assignment():
    check(matmul_augmented, randn(2, 2), randn(2, 2))


def options_get(x, **opts):
    scale = opts.get("scale", 1.0)
    shift = opts["shift"] if "shift" in opts else 0.0
    return scale * x * x + shift


def calls_options_get(x, s):
    return options_get(x, scale=s) + options_get(x, shift=s) + options_get(x)


def test_kwargs_get_and_membership():
    check(calls_options_get, 0.6, 1.7)


def sum_with_start_min_max(xs, x0):
    return sum(xs, x0) + sum((x * x for x in xs), start=x0 * 2.0) + max(xs) * min(xs[0], x0)


def test_sum_with_start_and_min_max():
    check(sum_with_start_min_max, [0.5, 1.2, -0.3], 0.25)


def mutual_even(x, n):
    if n == 0:
        return x
    return mutual_odd(x * 1.5, n - 1)


def mutual_odd(x, n):
    if n == 0:
        return math.sin(x)
    return mutual_even(x + x * x, n - 1)


def test_mutual_recursion():
    check(mutual_even, 0.3, 5, wrt=(0,))
    check(mutual_even, 0.3, 4, wrt=(0,))


def split_product(xs):
    if len(xs) == 1:
        return xs[0]
    mid = len(xs) // 2
    return split_product(xs[:mid]) * split_product(xs[mid:]) + xs[0]


def test_recursion_on_list_slices():
    check(split_product, [0.5, 1.5, 2.0, -0.5, 0.7])
    check(split_product, randn(5))


def iterate_map(x, depth):
    if depth == 0:
        return x
    return iterate_map(np.sin(x) * x, depth - 1) + 0.1 * x


def sum_iterate_map(x, depth):
    return np.sum(iterate_map(x, depth))


def test_recursion_over_arrays():
    check(sum_iterate_map, randn(3), 4, wrt=(0,))


def swap_arrays(a, b):
    for _ in range(3):
        a, b = b * 0.5, a + b
    return np.sum(a * b)


def test_swap_of_arrays():
    check(swap_arrays, randn(2), randn(2))


def closure_defined_after_loop(xs, w):
    total = 0.0
    for x in xs:
        total = total + w * x

    def f(t):
        return t * total
    return f(2.0) + f(w)


def test_closure_defined_after_a_loop_reads_its_result():
    check(closure_defined_after_loop, [0.5, 1.5], 0.8)


def assigned_in_if_used_next_pass(xs, w):
    total = 0.0
    prev = w
    for x in xs:
        if x > 0:
            cur = prev * x
        else:
            cur = prev + x
        total = total + cur
        prev = cur
    return total


def test_value_assigned_in_both_branches_carried_to_the_next_pass():
    check(assigned_in_if_used_next_pass, [0.5, -1.5, 0.7], 0.8)


def for_inside_while_with_return(xs, w):
    k = 0
    acc = w
    while k < 3:
        for x in xs:
            if x * acc > 10.0:
                return acc
            acc = acc * 1.5 + x
        k += 1
    return -acc


def test_return_from_a_for_inside_a_while():
    check(for_inside_while_with_return, [0.5, -1.5, 0.7], 0.8)
    check(for_inside_while_with_return, [0.5, 1.5, 2.7], 0.8)


def lambda_map(xs, a):
    f = lambda t, s=a: s * t * t
    return sum(map(f, xs)) + sum(map(lambda t: t * a, xs))


def test_lambdas_with_defaults_mapped():
    check(lambda_map, [0.5, -1.5, 0.7], 0.8)


def conditional_in_comprehension(xs, a):
    ys = [x * a if x > 0 else x / a for x in xs]
    return sum(ys) + len(ys)


def test_conditional_expression_in_a_comprehension():
    check(conditional_in_comprehension, [0.5, -1.5, 0.7], 0.8)


def zip_star_unzip(pairs):
    a, b = zip(*pairs)
    return sum(x * y for x, y in zip(a, b[::-1]))


def test_zip_star_then_reverse():
    check(zip_star_unzip, [(0.5, 1.0), (1.5, -2.0), (0.3, 0.2)])


def sorted_dict_items(d, w):
    total = 0.0
    for k, v in sorted(d.items()):
        total = total * w + v
    return total


def test_sorted_dict_items():
    check(sorted_dict_items, {"b": 1.0, "a": 2.0, "c": -0.5}, 0.7)


@dataclass
class Lin:
    W: np.ndarray

    def __call__(self, x):
        return np.tanh(self.W @ x)


def layers_twice(layers, x):
    for rep in range(2):
        for layer in layers:
            x = layer(x)
    return np.sum(x)


def test_layers_applied_twice_in_nested_loops_from_data():
    # x starts as data: the inner loop's first pass of the second outer pass must still ask x's gradient
    check(layers_twice, [Lin(randn(2, 2)), Lin(randn(2, 2))], randn(2), wrt=(0,))


# -- tuple targets that are subscripts or attributes

def gauss_pivot_solve(A, b):
    A = A.copy()
    b = b.copy()
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(A[k:, k])))
        if p != k:
            A[[k, p]] = A[[p, k]]
            b[k], b[p] = b[p], b[k]
        for i in range(k + 1, n):
            m = A[i, k] / A[k, k]
            A[i, k:] -= m * A[k, k:]
            b[i] -= m * b[k]
    x = np.zeros(n)
    for i in range(n - 1, -1, -1):
        x[i] = (b[i] - A[i, i + 1:] @ x[i + 1:]) / A[i, i]
    return np.sum(x * np.arange(1.0, n + 1))


def test_gaussian_elimination_with_a_row_swap():
    A = np.array([[0.1, 2.0, 1.0], [3.0, 1.0, -1.0], [1.0, -2.0, 4.0]])
    b = np.array([1.0, -0.5, 2.0])
    check(gauss_pivot_solve, A, b)
    n = 3
    x = np.linalg.solve(A, b)
    np.testing.assert_allclose(adtrans.gradient(gauss_pivot_solve, A, b, wrt="b"),
                               np.linalg.solve(A.T, np.arange(1.0, n + 1)), rtol=1e-10)


def swap_items(x):
    x = x.copy()
    x[0], x[2] = x[2], x[0] * 2.0
    return np.sum(x * np.arange(1.0, 4.0))


def test_minimal_swap_of_array_items():
    # value [2 x0, x1, x2 ... ] -> d/dx = [3*2, 2, 1]
    np.testing.assert_array_equal(adtrans.gradient(swap_items, np.array([1.0, 2.0, 3.0])), [6.0, 2.0, 1.0])


@dataclass
class Pair:
    a: float
    b: float


def swap_fields(s):
    s = Pair(s.a, s.b)
    s.a, s.b = s.b, s.a * 2.0
    return s.a * 3.0 + s.b


def test_minimal_swap_of_dataclass_fields():
    g = adtrans.gradient(swap_fields, Pair(1.0, 2.0))
    assert (g.a, g.b) == (2.0, 3.0)


# == 10. Constructs SPEC 5 refuses: a located DifferentiationError, never a crash or an answer ==

def uses_with_errstate(x):
    y = x * 2.0
    with np.errstate(divide="ignore"):
        y = np.log(y)
    return np.sum(y)


def uses_try_finally(x):
    try:
        y = x * 2.0
    finally:
        pass
    return y


def uses_del(x):
    y = x * 2.0
    z = y * y
    del y
    return z


def uses_walrus_in_comprehension(xs):
    return sum(y for x in xs if (y := x * 2.0) > 0.5)


def uses_walrus_in_lambda(x):
    g = lambda t: (u := t * 2.0) + u
    return g(x)


def uses_raise(x):
    if x < 0:
        raise ValueError("negative")
    return x * x


def uses_class(x):
    class Box:
        pass
    return x


def uses_import(x):
    import math as m
    return m.sin(x)


def uses_nonlocal_counter(x):
    total = x

    def bump():
        nonlocal total
        total = total * 2.0
    bump()
    return total


def uses_async_inner(x):
    async def inner():
        return x
    return x


def uses_generator_helper(x):
    def gen():
        for k in range(3):
            yield x * k
    return sum(gen())


def uses_int(x):
    return int(x) * x


def uses_floor_div(x):
    return (x // 1.0) * x


@pytest.mark.parametrize("fn, args, offset, fragment", [
    (uses_with_errstate, (np.array([1.0, 2.0]),), 2, "'with' statement"),
    (uses_try_finally, (1.0,), 1, "'try' statement"),
    (uses_del, (1.0,), 3, "'del' statement"),
    (uses_walrus_in_comprehension, ([1.0, 0.2],), 1, ":="),
    (uses_walrus_in_lambda, (1.0,), 1, ":="),
    *([(uses_match, (1.0, "square"), 1, "'match' statement")] if uses_match else []),
    (uses_raise, (1.0,), 2, "'raise' statement"),
    (uses_class, (1.0,), 1, "class definition"),
    (uses_import, (1.0,), 1, "'import' statement"),
    (uses_nonlocal_counter, (1.0,), 4, "'nonlocal'"),
    (uses_async_inner, (1.0,), 1, "async"),
    (uses_generator_helper, (1.0,), 3, "'yield'"),
    (uses_int, (1.5,), 1, "'int'"),
    (uses_floor_div, (1.5,), 1, "floordiv"),
])
def test_refused_constructs_are_located(fn, args, offset, fragment):
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(fn, *args, wrt=0)
    assert_located(info.value, fn, offset, fragment)
    assert info.value.col >= 1
    # `adtrans check`-style: the decorator reports it at definition
    with pytest.raises(adtrans.DifferentiationError) as again:
        adtrans.differentiable(fn)
        adtrans.gradient(fn, *args, wrt=0)
    assert again.value.lineno == info.value.lineno


async def async_square(x):
    return x * x


def test_async_function_is_a_located_error():
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.value_with_gradient(async_square, 1.0)
    assert_located(info.value, async_square, 0, "async")


def test_a_generator_function_itself_is_a_located_error():
    def gen_top(x):
        yield x * x
    with pytest.raises(adtrans.DifferentiationError) as info:
        adtrans.gradient(gen_top, 1.0)
    assert_located(info.value, gen_top, 1, "'yield'")


def test_operations_that_are_fine_on_values():
    # bool(), % and str/len of values are not refused and differentiate as Python computes them
    def mixed(x):
        return (x % 1.0) * x + bool(x) * x + x * len(",".join([str(x)]))
    x = 1.5
    # d/dx[(x mod 1) x] = x + (x mod 1); bool(x) = 1; len("1.5") = 3
    assert adtrans.gradient(mixed, x) == pytest.approx(x + 0.5 + 1.0 + 3.0, rel=1e-12)


# == 11. Augmented assignment through nested targets ===========================================

def dict_items_augmented(x, w):
    d = {"a": x, "b": 0.0}
    for k in range(3):
        d["a"] += w * d["b"]
        d["b"] += x * k
        d["a"] *= 0.5
    return d["a"] + d["b"] ** 2


def test_augmented_assignment_on_dict_items():
    check(dict_items_augmented, 0.7, 1.3)


def list_of_arrays_sgd_step(params, grads, lr):
    params = [p.copy() for p in params]
    for i in range(len(params)):
        params[i] -= lr * grads[i]
    return sum(np.sum(p ** 2) for p in params)


def test_augmented_assignment_on_a_list_of_arrays():
    check(list_of_arrays_sgd_step, [randn(2), randn(3)], [randn(2), randn(3)], 0.1)


def works_or_is_located(fn, args, offset, want_gradient):
    """Either the gradient is right, or a located DifferentiationError: never an internal crash."""
    try:
        g = adtrans.gradient(fn, *args, wrt=0)
    except adtrans.DifferentiationError as error:
        assert_located(error, fn, offset)
    else:
        np.testing.assert_allclose(g, want_gradient, rtol=1e-12)


def nested_list_item_set(x):
    m = [[0.0, 1.0], [2.0, 3.0]]
    m[0][1] = x * 2.0
    return m[0][1] * m[1][1]


def nested_list_item_augmented(x):
    m = [[0.0, 1.0], [2.0, 3.0]]
    m[0][1] += x
    return m[0][1] * m[1][1]


def test_nested_list_item_assignment_works_or_is_located():
    works_or_is_located(nested_list_item_set, (0.4,), 2, 6.0)


def test_nested_list_item_augmented_assignment_works_or_is_located():
    # d/dx (1 + x) * 3 = 3
    works_or_is_located(nested_list_item_augmented, (0.4,), 2, 3.0)


def chained_array_subscript_augmented(x, A):   # x first: works_or_is_located differentiates wrt=0
    B = A.copy()
    for i in range(2):
        B[i][0] += x
    return np.sum(B * B)


def test_chained_array_subscript_augmented_works_or_is_located():
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    # d/dx sum over column 0 of (A[i,0] + x)^2 = 2 (A00 + x) + 2 (A10 + x)
    works_or_is_located(chained_array_subscript_augmented, (0.3, A), 3,
                        2 * (1.0 + 0.3) + 2 * (3.0 + 0.3))


@dataclass
class Buffer:
    v: np.ndarray
    s: float


def field_item_augmented(x, st):
    st = Buffer(st.v.copy(), st.s)
    st.v[0] += x * st.s
    return np.sum(st.v ** 2)


def field_item_set(x, st):
    st = Buffer(st.v.copy(), st.s)
    st.v[0] = x * st.s
    return np.sum(st.v ** 2)


def test_field_item_assignment_works_or_is_located():
    st = Buffer(np.array([1.0, 2.0]), 0.5)
    works_or_is_located(field_item_set, (0.3, st), 2, 2 * 0.3 * 0.5 * 0.5)


def test_field_item_augmented_assignment_works_or_is_located():
    st = Buffer(np.array([1.0, 2.0]), 0.5)
    # d/dx (1 + 0.5 x)^2 = 2 (1 + 0.5 x) 0.5
    works_or_is_located(field_item_augmented, (0.3, st), 2, 2 * (1.0 + 0.5 * 0.3) * 0.5)


# == 12. Closures over changing variables, more iterables, user errors ========================

def closure_called_before_and_after_a_loop(xs, w):
    acc = w

    def read():
        return acc * acc
    first = read()
    for x in xs:
        acc = acc * x + 1.0
    return read() + first


def closure_in_nested_loops(xs, w):
    scale = w

    def f(t):
        return scale * t
    total = 0.0
    for i in range(2):
        for x in xs:
            total = total + f(x)
            scale = scale + x
    return total


def closure_of_closure(x, w):
    def g(t):
        return w * t

    def h(t):
        return g(t) * g(t) + w
    return h(x) + h(2.0 * x)


def closure_defined_in_branches(x, w):
    if x > 0:
        def g(t):
            return t * w
    else:
        def g(t):
            return t / w
    return g(x) + g(1.0)


def closure_default_then_rebound(x, w):
    def g(t, c=w):
        return t * c
    w = w * 10.0
    return g(x) + w


def closure_factory(w):
    def make(a):
        def f(t):
            return a * t + w
        return f
    fs = [make(w * k) for k in range(3)]
    return sum(f(1.5) for f in fs)


@pytest.mark.parametrize("f, args", [
    (closure_called_before_and_after_a_loop, ([0.5, 1.5], 0.7)),
    (closure_in_nested_loops, ([0.5, -0.3], 0.7)),
    (closure_of_closure, (0.4, 1.1)),
    (closure_defined_in_branches, (0.4, 1.1)),
    (closure_defined_in_branches, (-0.4, 1.1)),
    (closure_default_then_rebound, (0.4, 1.1)),
    (closure_factory, (0.6,)),
])
def test_closures_over_variables_that_change(f, args):
    check(f, *args)


def product_of_ranges(A, w):
    total = 0.0
    for i, j in itertools.product(range(2), range(3)):
        total = total + A[i, j] * w[j]
    return total


def ndindex_loop(A):
    total = 0.0
    for idx in np.ndindex(*A.shape):
        total = total + A[idx] ** 2
    return total


def enumerate_reversed(xs):
    total = 0.0
    for i, x in enumerate(reversed(xs)):
        total = total + i * x * x
    return total


def zip_of_three(xs, ys, zs):
    return sum(x * y - z for x, y, z in zip(xs, ys, zs))


def keys_loop(d):
    total = 0.0
    for k in d.keys():
        total = total + d[k] ** 2
    return total


def ravel_loop(A):
    total = 0.0
    for v in A.ravel():
        total = total + v ** 3
    return total


@pytest.mark.parametrize("f, args", [
    (product_of_ranges, (randn(2, 3), randn(3))),
    (ndindex_loop, (randn(2, 2),)),
    (enumerate_reversed, ([0.5, 1.5, -2.0],)),
    (zip_of_three, ([1.0, 2.0], [0.5, 0.3], [0.1, 0.2])),
    (keys_loop, ({"a": 1.0, "b": 2.0},)),
    (ravel_loop, (randn(2, 2),)),
])
def test_more_iterables(f, args):
    check(f, *args)


def flat_loop(A):
    total = 0.0
    for v in A.flat:
        total = total + v ** 3
    return total


def test_loop_over_flat_works_or_names_flat():
    A = np.array([[1.0, 2.0], [3.0, -1.0]])
    try:
        g = adtrans.gradient(flat_loop, A)
    except adtrans.DifferentiationError as error:
        assert_located(error, flat_loop, 2, "flat")
    else:
        np.testing.assert_allclose(g, 3 * A ** 2, rtol=1e-12)


def unbound_in_branch(x):
    if x > 10.0:
        y = x * 2.0
    return y


def unbound_after_empty_loop(xs, w):
    for x in xs:
        y = x * w
    return y


def test_unbound_after_an_empty_loop_is_pythons_error():
    with pytest.raises(UnboundLocalError, match="'y'"):
        adtrans.gradient(unbound_after_empty_loop, [], 1.0, wrt=1)


def test_unbound_after_an_untaken_branch_is_an_error_in_gradient():
    with pytest.raises(UnboundLocalError):
        g = adtrans.gradient(unbound_in_branch, 1.0)
        pytest.fail(f"no error; gradient {g}")


def test_unbound_after_an_untaken_branch_names_the_users_variable():
    with pytest.raises(UnboundLocalError, match="'y'"):
        adtrans.value_with_gradient(unbound_in_branch, 1.0)


# == 13. One parameter, two types: the flow-insensitive "is a number" proof ===================

def squared_radius_weighted(p, w):
    # p: a point (x, y) or a radius
    if isinstance(p, tuple):
        r2 = p[0] ** 2 + p[1] ** 2
    else:
        r2 = p ** 2
    return w * r2


def test_helper_taking_a_point_or_a_radius():
    check(squared_radius_weighted, (0.3, 0.5), 1.5)
    check(squared_radius_weighted, 0.3, 1.5)


def carried_pair_then_number(x):
    v = (x, 2.0 * x)
    for i in range(3):
        if i == 0:
            s = v[0] * v[1]
        else:
            s = -v
        v = s * 1.5
    return v


def test_loop_carried_value_a_tuple_then_a_number():
    # v after pass 0 = 1.5 * 2 x^2; then negated and scaled twice: 1.5^3 * 2 x^2 -> d/dx = 1.5^3 * 4 x
    x = 0.7
    assert carried_pair_then_number(x) == pytest.approx(1.5 ** 3 * 2 * x * x)
    assert adtrans.gradient(carried_pair_then_number, x) == pytest.approx(1.5 ** 3 * 4 * x, rel=1e-12)


# == 14. Keyword-only parameters and **extra named in wrt ======================================

def keyword_only_loss(x, *, scale, shift=0.5):
    return scale * x * x + shift * x


def varargs_loss(*xs, scale=1.0, **extra):
    return scale * sum(x * x for x in xs) + extra.get("bias", 0.0)


def test_keyword_only_and_extra_keywords_by_name():
    x = 1.5
    assert adtrans.gradient(keyword_only_loss, x, scale=2.0) == pytest.approx((2 * 2.0 * x + 0.5, x * x))
    assert adtrans.gradient(keyword_only_loss, x, scale=2.0, wrt=("x", "shift")) == pytest.approx((6.5, x))
    assert adtrans.gradient_of(keyword_only_loss, wrt="scale")(x, scale=2.0) == pytest.approx(x * x)
    assert adtrans.gradient(varargs_loss, 1.0, 2.0, scale=3.0) == pytest.approx((6.0, 12.0, 5.0))
    assert adtrans.gradient(varargs_loss, 1.0, 2.0, scale=3.0, bias=1.0, wrt="bias") == pytest.approx(1.0)
    v, _ = adtrans.value_with_gradient(varargs_loss, 1.0, 2.0, scale=3.0, bias=1.0)
    assert v == varargs_loss(1.0, 2.0, scale=3.0, bias=1.0)
