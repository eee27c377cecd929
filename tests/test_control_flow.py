"""Control flow, mutation and loops in the reverse transform, each against finite differences."""

from dataclasses import dataclass

import math

import numpy as np
import pytest

import adtrans

RNG = np.random.default_rng(7)


def branches(x, y):
    if x > 0:
        z = x * y
        w = z + 1.0
    elif x > -1:
        z = x + y
    else:
        z = np.sin(x) * y
        q = z * 2.0
        z = q + x
    return z * z


@pytest.mark.parametrize("x", [1.5, -0.5, -2.5])
def test_if_elif_else_assigning_different_variables(x):
    adtrans.check_gradient(branches, x, 0.7)


def conditional_expressions(x, y):
    z = x * y if x > 0 else np.sin(x) + y
    return z * (x if y > 1 else y)


@pytest.mark.parametrize("x,y", [(1.5, 2.0), (-1.5, 0.5), (1.5, 0.5), (-1.5, 2.0)])
def test_conditional_expressions(x, y):
    adtrans.check_gradient(conditional_expressions, x, y)


def euler(x0, v0, c):
    x, v = x0, v0
    dt = 0.01
    for i in range(1000):
        a = -x - c * v
        x = x + dt * v
        v = v + dt * a
    return x


def test_euler_integration_over_range():
    adtrans.check_gradient(euler, 1.0, 0.0, 0.3)


def test_euler_matches_handwritten_reverse_mode():
    x, v, c, dt = 1.0, 0.2, 0.3, 0.01
    xs = []
    for _ in range(1000):
        xs.append((x, v))
        x, v = x + dt * v, v + dt * (-x - c * v)
    dx, dv, dc = 1.0, 0.0, 0.0
    for (x, v) in reversed(xs):
        # x' = x + dt v ; v' = v + dt (-x - c v)
        dx, dv, dc = dx - dt * dv, dt * dx + dv * (1 - dt * c), dc - dt * v * dv
    assert adtrans.gradient(euler, 1.0, 0.2, 0.3) == pytest.approx((dx, dv, dc), rel=1e-10)


def over_sequences(xs, ys, w):
    total = 0.0
    for x in xs:
        total = total + np.sin(x * w)
    for i, y in enumerate(ys):
        total = total + y * i
    for a, b in zip(xs, ys):
        total = total + a * b
    for row in np.stack([xs, ys]):
        total = total + np.sum(row ** 2) * w
    return total


def test_for_over_arrays_lists_enumerate_and_zip():
    xs = RNG.normal(size=4)
    ys = RNG.normal(size=4)
    adtrans.check_gradient(over_sequences, xs, ys, 1.3)
    adtrans.check_gradient(over_sequences, list(xs), list(ys), 1.3)


def break_continue(xs, w):
    total = 0.0
    for x in xs:
        if x < 0:
            continue
        total = total + np.sin(x * w)
        if total > 2.0:
            break
    return total


@pytest.mark.parametrize("w", [0.4, 1.3, 3.0])
def test_break_and_continue(w):
    adtrans.check_gradient(break_continue, np.array([0.5, -1.0, 0.7, 1.9, 0.3, 2.2]), w)


def early_return(x):
    for i in range(10):
        x = x * 1.5
        if x > 5.0:
            return x * 2.0
    return x


@pytest.mark.parametrize("x", [1.0, 0.01])
def test_early_return_from_a_loop(x):
    adtrans.check_gradient(early_return, x)


def return_in_branch(x):
    if x > 0:
        return x * x
    y = np.exp(x)
    return y * 3.0


@pytest.mark.parametrize("x", [0.5, -0.5])
def test_early_return_from_a_branch(x):
    adtrans.check_gradient(return_in_branch, x)


def while_loop(x):
    n = 0
    while x < 10.0:
        x = x * 2.0 + 1.0
        n += 1
    return x * n


def test_while_loop():
    adtrans.check_gradient(while_loop, 1.5)
    assert adtrans.gradient(while_loop, 1.5) == 24.0


def nested(x, w):
    total = 0.0
    for i in range(3):
        acc = x
        for j in range(i + 1):
            if j % 2 == 0:
                acc = acc * w
            else:
                acc = np.tanh(acc) + w
        total = total + acc
    return np.sum(total)


def test_nested_loops_with_branches():
    adtrans.check_gradient(nested, RNG.normal(size=3), 0.8)


def rnn(h0, W, U, xs):
    h = h0
    for t in range(xs.shape[0]):
        h = np.tanh(h @ W + xs[t] @ U)
    return np.sum(h)


def test_rnn_over_time_steps():
    adtrans.check_gradient(rnn, np.zeros(3), RNG.normal(size=(3, 3)) * 0.5, RNG.normal(size=(2, 3)),
                           RNG.normal(size=(5, 2)))


def fills(x, v):
    out = np.zeros((4, 2))
    for i in range(4):
        out[i] = v * x * i
    out[:, 0] += x
    out[1:3, 1] = out[1:3, 1] * x
    items = [x, x * 2.0]
    items[1] = items[0] * v[0]
    return np.sum(out ** 2) + items[1]


def test_assignment_to_subscripts_of_arrays_and_lists():
    adtrans.check_gradient(fills, 1.5, np.array([0.5, -1.0]))


def test_subscript_assignment_does_not_change_the_callers_array():
    def f(x):
        x[0] = 0.0
        return np.sum(x * x)

    x = np.array([1.0, 2.0, 3.0])
    assert np.allclose(adtrans.gradient(f, x), [0.0, 4.0, 6.0])
    assert x[0] == 1.0    # differentiated code updates a copy (value semantics, like JAX)


def augmented(x, y):
    z = x
    z += y
    z *= x
    z -= 1.0
    z /= y
    z **= 2
    return z


def test_augmented_assignment():
    adtrans.check_gradient(augmented, 1.3, 0.7)


def loop_variable_after_loop(x):
    for i in range(3):
        y = x * i
    return y * i


def test_values_left_by_a_loop_are_readable_after_it():
    assert adtrans.gradient(loop_variable_after_loop, 2.0) == 4.0


def test_loop_generated_code_keeps_only_what_the_pullback_reads():
    text = adtrans.generated_source(euler)
    assert "tape.append(" in text and "in replay(tape):" in text
    forward = text.split("def pullback")[0]
    assert forward.count("tape.append(") == 1


def test_reverse_loop_does_not_copy_the_sequence_per_step():
    text = adtrans.generated_source(rnn, wrt=("W", "U", "xs"))
    assert "add_item(d_xs, t, " in text


def test_pullback_of_a_loop_can_be_called_twice():
    value, back = adtrans.value_with_pullback(break_continue, np.array([0.5, -1.0, 0.7]), 1.3)
    first = back(1.0)
    second = back(1.0)
    assert np.allclose(first[0], second[0]) and first[1] == second[1]


def test_deep_loops_do_not_hit_the_recursion_limit():
    def long(x):
        for i in range(20000):
            x = x * 1.0001
        return x

    assert adtrans.gradient(long, 1.0) == pytest.approx(1.0001 ** 20000)


def test_generated_code_is_the_same_across_runs_for_loops():
    assert adtrans.generated_source(break_continue) == adtrans.generated_source(break_continue)


@dataclass
class State:
    pos: float
    vel: float


def attribute_steps(s, dt):
    for i in range(3):
        s.pos = s.pos + dt * s.vel
        s.vel *= 0.9
    return s.pos * s.vel


def test_assignment_to_attributes_of_a_dataclass():
    state = State(1.0, 2.0)
    g = adtrans.gradient(attribute_steps, state, 0.1)
    assert state == State(1.0, 2.0)     # value semantics: the caller's object is unchanged
    eps = 1e-6
    for field in ("pos", "vel"):
        up = attribute_steps(State(**{**vars(state), field: getattr(state, field) + eps}), 0.1)
        down = attribute_steps(State(**{**vars(state), field: getattr(state, field) - eps}), 0.1)
        assert getattr(g[0], field) == pytest.approx((up - down) / (2 * eps), rel=1e-6)
    adtrans.check_gradient(lambda p, v, dt: attribute_steps(State(p, v), dt), 1.0, 2.0, 0.1)


def with_nested_def(x, w):
    scale = 2.0

    def helper(t):
        u = t * scale
        return np.sin(u) * u

    y = helper(x) + helper(x * w)
    return y * scale


def test_nested_function_definitions():
    adtrans.check_gradient(with_nested_def, 0.7, 1.3)
    text = adtrans.generated_source(with_nested_def)
    assert "def helper(t):" in text and "call_with_pullback(helper, (0,), x)" in text


def branch_keeps_one_array(x, arr):
    s = 0.0
    for i in range(4):
        if i % 2 == 0:
            arr = np.sin(arr) * x      # the branch's tape keeps one bare array per pass
        else:
            s = s + x
    return s + np.sum(arr)


def test_gradient_replays_a_branch_tape_of_bare_arrays():
    # gradient() pops tapes as it replays them; an entry that is an array has no truth
    # value, so popping must not compare entries with a sentinel.
    arr = np.array([0.1, 0.2, 0.3])
    assert "branch_tape.append(sin_arr_1)" in adtrans.generated_source(branch_keeps_one_array)
    value, back = adtrans.value_with_pullback(branch_keeps_one_array, 0.5, arr)
    expected = back(1.0)
    dx, darr = adtrans.gradient(branch_keeps_one_array, 0.5, arr)
    assert dx == expected[0]
    np.testing.assert_array_equal(darr, expected[1])
    adtrans.check_gradient(branch_keeps_one_array, 0.5, arr)


@dataclass
class Scale:
    w: float

    def __call__(self, x):
        return np.sin(x * self.w)


def through_layers(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def test_first_pass_of_a_layer_loop_asks_no_input_gradient():
    # `x` is data on the first pass only: the first layer's input gradient would go nowhere.
    from adtrans import api

    source = adtrans.generated_source(through_layers, wrt="layers")
    assert "call_with_pullback(layer, (-1, 0) if x_1_varied else (-1, None), x_1)" in source
    assert "x_1_varied = True" in source
    layers = [Scale(0.7), Scale(1.3), Scale(-0.4)]
    grads = adtrans.gradient(through_layers, layers, 0.9, wrt="layers")
    adtrans.check_gradient(through_layers, layers, 0.9, wrt="layers")
    asked = {key[0] for key in api._instances[Scale.__call__]}     # (wrt, mode, floats, lifted)
    assert asked == {("self",), ("self", "x")}      # the first pass; the others
    # Both passes agree with differentiating every layer's input too (x a varied value).
    both = adtrans.gradient(lambda layers, x: through_layers(layers, x * 1.0), layers, 0.9, wrt="layers")
    assert [g.w for g in grads] == pytest.approx([g.w for g in both])


# -- and / or over values: Python's meaning, short-circuit included

def both(x, y):
    return (x and y) * 2.0


def first_true(x, y, z):
    return (x or y or z) * x


def with_default(x, scale):
    s = scale or 1.0
    return math.sin(x) * s


def condition_stays(x, y):
    if x > 0 and y > 0:
        return x * y
    return x + y


CALLS = []


def short_circuit(x, y):
    return x or CALLS.append(1) or y


@pytest.mark.parametrize("f,args,want", [
    (both, (1.5, 2.0), (0.0, 2.0)), (both, (0.0, 2.0), (2.0, 0.0)),
    (first_true, (0.0, 0.0, 3.0), (3.0, 0.0, 0.0)), (first_true, (2.0, 0.5, 3.0), (4.0, 0.0, 0.0)),
    (with_default, (0.5, 0.0), (math.cos(0.5), 0.0)),
    (with_default, (0.5, 3.0), (3.0 * math.cos(0.5), math.sin(0.5))),
])
def test_and_or_choose_an_operand(f, args, want):
    assert adtrans.gradient(f, *args) == pytest.approx(want)
    if all(a != 0 for a in args):
        adtrans.check_gradient(f, *args)


def test_and_or_short_circuit_and_conditions_stay_as_written():
    CALLS.clear()
    assert adtrans.gradient(short_circuit, 2.0, 3.0) == (1.0, 0.0) and CALLS == []
    assert adtrans.gradient(short_circuit, 0.0, 3.0) == (0.0, 1.0) and CALLS == [1]
    assert "condition = x > 0 and y > 0" in adtrans.generated_source(condition_stays)


def carried_without_a_start(xs, w):
    h = 0.5
    for x in xs:
        if x > 0.25:
            h = h + prev * x        # the previous pass's prev; the first pass does not read it
        prev = x * w
    return h


def found_in_some_passes(xs, w):
    h = w
    for x in xs:
        h = math.sin(h * x)
        if h > 0.3:
            found = h * w
    return found + h


def found_in_some_while_passes(xs, w):
    h, i = w, 0
    while i < len(xs):
        h = math.sin(h * xs[i])
        if h > 0.3:
            found = h * w
        i += 1
    return found + h


@pytest.mark.parametrize("f, xs", [(carried_without_a_start, [0.1, 0.3, 0.5, 0.2, 0.7]),
                                   (found_in_some_passes, [0.9, 1.3, 0.5, 0.2]),
                                   (found_in_some_while_passes, [0.9, 1.3, 0.5, 0.2])])
def test_a_loop_carries_what_had_no_value_before_it(f, xs):
    # Both gave silently wrong gradients (d/dw 0.0 for 0.32, 0.053 for 0.636): what a pass reads
    # of the previous one, or what the last pass that assigned it left, was not carried.
    value, g = adtrans.value_with_gradient(f, xs, 0.8, wrt=1)
    assert value == f(xs, 0.8)
    eps = 1e-6
    assert g == pytest.approx((f(xs, 0.8 + eps) - f(xs, 0.8 - eps)) / (2 * eps), rel=1e-6)
    adtrans.check_gradient(f, xs, 0.8)
