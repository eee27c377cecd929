"""Lists and tuples of differentiated values as users write them.

``a + b`` concatenates lists and tuples and ``xs * n`` repeats them, as in
JAX, where list and tuple manipulation is transparent to differentiation:
the cotangent of a concatenation is cut back into the operands' runs, that
of a repetition summed over the copies. Which a ``+`` is may depend on the
arguments, so where the compiler cannot prove its operands are numbers the
pullback decides when it runs (`adtrans.sequences`).

Every program is checked against central finite differences through
``gradient``, ``value_with_gradient`` and ``value_with_pullback``
(`structured_check.assert_gradient`), with floats, arrays and nested
structures, in loops and branches.
"""

import itertools
from typing import NamedTuple

import numpy as np
import pytest

import adtrans
from structured_check import assert_gradient

RNG = np.random.default_rng(7)


def randn(*shape):
    return RNG.standard_normal(shape)


# -- a + b: concatenation -----------------------------------------------------------------------

def tuple_concatenation(x, y):
    t = (x,) + (y, x)
    return t[0] * t[1] * t[2]


def list_concatenation(xs, ys):
    zs = xs + ys
    return zs[0] * zs[-1]


def summed_concatenation(xs, ys):
    zs = xs + ys
    return np.sum(zs[0] * zs[-1]) + np.sum(zs[1])


def concatenation_used_twice(xs, ys):
    zs = xs + ys
    ws = zs + xs
    return sum(np.sum(z * w) for z, w in zip(zs, ws)) + np.sum(zs[1])


def concatenated_in_a_branch(xs, ys, flip):
    if flip:
        zs = ys + xs
    else:
        zs = xs + ys
    return np.sum(zs[0] * zs[1]) + np.sum(zs[-1] ** 2)


def grown_in_a_loop(x, ws):
    out = [x]
    for w in ws:
        out = out + [out[-1] * w]
    return np.sum(sum(out))


def grown_by_augmented_assignment(x, ws):
    out = []
    for w in ws:
        out += [np.sin(x * w)]
        if np.sum(w) > 0:
            out += [x * x]
    return sum(np.sum(o) for o in out)


def test_concatenating_tuples_and_lists_of_floats():
    assert adtrans.gradient(tuple_concatenation, 1.5, 2.0) == (2 * 1.5 * 2.0, 1.5 * 1.5)
    assert_gradient(tuple_concatenation, 1.5, 2.0)
    grads = assert_gradient(list_concatenation, [1.0, 2.0], [3.0, 4.0])
    assert grads == ([4.0, 0.0], [0.0, 1.0])
    assert all(type(g) is list for g in grads)


def test_concatenating_tuples_of_arrays_keeps_the_tuple_type():
    grads = assert_gradient(summed_concatenation, (randn(3), randn(3)), (randn(3),))
    assert all(type(g) is tuple for g in grads)


def test_a_concatenation_used_twice_adds_its_cotangents_item_by_item():
    assert_gradient(concatenation_used_twice, [1.5, randn(2)], [randn(2), -0.5])


@pytest.mark.parametrize("flip", [True, False])
def test_concatenation_in_branches(flip):
    assert_gradient(concatenated_in_a_branch, [randn(2, 3)], [randn(3), randn(1, 3)], flip, wrt=(0, 1))


def test_concatenation_in_loops():
    assert_gradient(grown_in_a_loop, 0.7, [1.5, -0.5, 2.0])
    assert_gradient(grown_in_a_loop, randn(3), [randn(3), randn(3)])
    assert_gradient(grown_by_augmented_assignment, randn(2), [randn(2), -np.ones(2), randn(2)])


class Pair(NamedTuple):
    left: float
    right: np.ndarray


def nested_concatenation(pairs, more, scale):
    everything = pairs + more
    total = 0.0
    for W, extra in everything:
        total = total + np.sum(W * extra["b"]) * scale
    return total + everything[0][1]["b"][0]


def named_tuples_added(p, q):
    joined = p + q          # a plain tuple of the four fields
    return joined[0] * joined[3][0] + np.sum(joined[1] * joined[2])


def test_nested_structures_and_named_tuples():
    pairs = [(randn(2), {"b": randn(2)})]
    more = ((randn(2), {"b": randn(2)}), (randn(2), {"b": randn(2), "c": 1.0}))
    assert_gradient(nested_concatenation, pairs, list(more), 1.5)
    grads = assert_gradient(named_tuples_added, Pair(1.5, randn(2)), Pair(-0.5, randn(2)))
    assert all(type(g) is Pair for g in grads)


def test_a_list_result_pulls_back_a_list_cotangent():
    def joined(xs, ys):
        return xs + ys

    xs, ys = [1.0, np.ones(2)], [np.arange(2.0)]
    value, pullback = adtrans.value_with_pullback(joined, xs, ys)
    assert len(value) == 3 and value[0] == 1.0 and value[2] is ys[0]
    d_xs, d_ys = pullback([2.0, np.full(2, 3.0), np.full(2, 4.0)])
    assert d_xs[0] == 2.0 and np.array_equal(d_xs[1], [3.0, 3.0]) and np.array_equal(d_ys[0], [4.0, 4.0])
    d_xs, d_ys = pullback([None, np.full(2, 3.0), None])        # None is a zero
    assert d_xs[0] == 0.0 and np.array_equal(d_ys[0], [0.0, 0.0])


def test_numbers_and_arrays_still_add_and_broadcast():
    def plus(x, y):
        return np.sum((x + y) ** 2)

    assert_gradient(plus, randn(3, 1), randn(4))
    assert_gradient(plus, 1.5, randn(2))
    assert_gradient(plus, 1.5, -0.25)


# -- xs * n: repetition -------------------------------------------------------------------------

def repeated(xs, n):
    ys = xs * n
    return sum(y * y * (k + 1) for k, y in enumerate(ys))


def summed_repeated(xs, n):
    ys = xs * n
    return sum(np.sum(y * y) * (k + 1) for k, y in enumerate(ys))


def repeated_on_the_left(x, y):
    t = 3 * (x, y)
    return t[0] * t[3] + t[5]


def initial_states(h0, W):
    hs = [h0] * 3
    for k in range(len(hs)):
        hs[k] = np.tanh(hs[k] @ W) * (k + 1)
    return np.sum(np.stack(hs))


def repeated_by_numpy_integer(xs):
    ys = xs * np.int64(2)
    return ys[0] * ys[-1]


def test_repeating_lists_and_tuples():
    assert adtrans.gradient(repeated_on_the_left, 1.5, 2.0) == (2.0, 2.5)     # x * y + y
    assert_gradient(repeated_on_the_left, 1.5, 2.0)
    assert_gradient(repeated, [1.5, -0.5], 3, wrt=(0,))
    assert_gradient(summed_repeated, (randn(2), 0.5), 2, wrt=(0,))
    assert_gradient(repeated, [1.5], 0, wrt=(0,))          # an empty list: a zero gradient
    assert_gradient(initial_states, randn(2, 3), randn(3, 3))
    assert adtrans.gradient(repeated_by_numpy_integer, [1.5, 2.0]) == [2.0, 1.5]


def test_numbers_and_arrays_still_multiply():
    def times(x, n):
        return np.sum(x * n + n * x)

    assert_gradient(times, randn(3), 2, wrt=(0,))
    assert_gradient(times, 1.5, 2, wrt=(0,))
    assert_gradient(times, randn(2, 3), randn(3), wrt=(0, 1))


# -- [x, *rest]: displays with * unpacking -------------------------------------------------------

def head_and_rest(x, rest):
    t = [x, *rest]
    return sum(t)


def both_unpacked(a, b, y):
    t = (*a, y, *b)
    return np.sum(t[0] * t[-1]) + np.sum(t[len(a)] ** 2) + np.sum(t[1])


def rows_unpacked(m, x):
    rows = [*m, x]
    return np.sum(np.stack(rows) ** 3)


def shape_unpacked(x):
    column = np.reshape(x, (*x.shape, 1))
    return np.sum(column * column[::-1])


def unpacked_in_a_branch(xs, y, first):
    if first:
        t = (y, *xs)
    else:
        t = (*xs, y)
    return t[0] * t[1] + t[-1]


def test_unpacking_in_displays():
    assert adtrans.gradient(head_and_rest, 1.0, [2.0, 3.0]) == (1.0, [1.0, 1.0])
    grads = assert_gradient(head_and_rest, 1.0, (2.0, 3.0))
    assert type(grads[1]) is tuple
    assert_gradient(both_unpacked, [randn(2), randn(2)], (randn(2),), randn(2))
    assert_gradient(both_unpacked, [], (randn(2), 1.5), randn(2))
    assert_gradient(rows_unpacked, randn(2, 3), randn(3))
    for first in (True, False):
        assert_gradient(unpacked_in_a_branch, [1.5, -0.5, 2.0], 0.25, first, wrt=(0, 1))


def test_unpacking_constants_needs_no_derivative():
    assert_gradient(shape_unpacked, randn(4))
    assert "unpacked_cotangents" not in adtrans.generated_source(shape_unpacked)
    text = adtrans.generated_source(head_and_rest)
    assert "t = [x, *rest]" in text             # the display runs as written
    assert "unpacked_cotangents(d_t, ('', '*'), (x, rest))" in text


# -- first, *rest = xs: starred assignment ---------------------------------------------------------

def head_times_rest(xs):
    first, *rest = xs
    return np.sum(first * sum(rest))


def ends_and_middle(v):
    *init, last = v
    a, *mid, b = init
    return np.sum(last * a) + 2.0 * np.sum(sum(mid)) + np.sum(b ** 2)


def starred_loop_target(rows):
    total = 0.0
    for a, *rest in rows:
        total = total + a * sum(rest)
    return total


def starred_nested_target(x):
    (a, *b), c = [x, 2.0 * x, np.sin(x)], x * x
    return a * c + sum(b)


def starred_empty_middle(x, y):
    a, *rest, b = (x, y)
    return a * b + len(rest)


def test_starred_assignment_binds_a_list_as_python_does():
    assert adtrans.gradient(head_times_rest, [2.0, 3.0, 4.0]) == [7.0, 2.0, 2.0]
    grads = assert_gradient(head_times_rest, (2.0, 3.0, 4.0))
    assert type(grads) is tuple
    assert_gradient(head_times_rest, randn(4))             # rows of an array: the gradient is an array
    assert_gradient(head_times_rest, [randn(3), randn(3), randn(3)])
    assert_gradient(ends_and_middle, randn(6))
    assert_gradient(ends_and_middle, randn(5, 2))
    assert_gradient(ends_and_middle, [randn(2) for _ in range(3)])   # nothing in the middle
    assert_gradient(starred_loop_target, [[1.0, 2.0, 3.0], [4.0, 5.0]])
    assert_gradient(starred_nested_target, 0.7)
    assert_gradient(starred_empty_middle, 1.5, -2.0)
    value, grads = adtrans.value_with_gradient(starred_empty_middle, 1.5, -2.0)
    assert value == starred_empty_middle(1.5, -2.0) and grads == (-2.0, 1.5)


def test_starred_assignment_runs_as_one_call_and_checks_the_length_as_python_does():
    text = adtrans.generated_source(ends_and_middle)
    assert "parts = starred_parts(v, 0, 1)" in text
    assert "a, mid, b = parts_1" in text
    with pytest.raises(ValueError) as expected:
        ends_and_middle(np.ones(1))
    with pytest.raises(ValueError) as got:
        adtrans.gradient(ends_and_middle, np.ones(1))
    assert str(got.value) == str(expected.value)


# -- zip(...) and enumerate(...) as values ---------------------------------------------------------

def summed_pairs(Ws, bs):
    pairs = list(zip(Ws, bs))
    return sum(np.sum(W * b) for W, b in pairs)


def weighted_by_position(Ws):
    total = 0.0
    for i, W in list(enumerate(Ws)):
        total = total + i * W
    return np.sum(total)


def counted_from_one(xs):
    pairs = list(enumerate(xs, start=1))
    return sum(k * x for k, x in pairs)


def transposed(pairs):
    xs, ys = zip(*pairs)
    return sum(x * y for x, y in zip(xs, ys)) + xs[0]


def zipped_into_a_dict(keys, values):
    d = dict(zip(keys, values))
    return np.sum(d["a"] * d["b"]) + np.sum(d["a"])


def sorted_by_the_first(xs, ys):
    ordered = sorted(zip(xs, ys), key=lambda p: p[0])
    return sum(y * (k + 1) for k, (x, y) in enumerate(ordered))


def zipped_tuple(xs, ys):
    t = tuple(zip(xs, ys))
    return t[0][0] * t[-1][1]


def zip_of_unequal_lengths(xs, ys):
    return sum(x * y for x, y in list(zip(xs, ys)))


def rows_and_scales(M, v):
    return sum(np.sum(row * scale) for row, scale in list(zip(M, v)))


def layers_zipped_once(Ws, bs, x):
    layers = zip(Ws, bs)
    for W, b in layers:
        x = np.tanh(x @ W + b)
    return np.sum(x ** 2)


def test_zip_and_enumerate_as_values():
    Ws, bs = [randn(2, 2), randn(2, 2)], [randn(2), randn(2)]
    assert_gradient(summed_pairs, Ws, bs)
    assert_gradient(summed_pairs, tuple(Ws), (1.5, -0.5))
    assert_gradient(weighted_by_position, Ws)
    assert adtrans.gradient(weighted_by_position, [1.5, 2.5, -1.0]) == [0.0, 1.0, 2.0]
    assert adtrans.gradient(counted_from_one, [1.5, 2.5]) == [1.0, 2.0]
    assert_gradient(rows_and_scales, randn(3, 2), randn(3))
    assert_gradient(layers_zipped_once, Ws, bs, randn(3, 2))


def test_zip_transposes_sorts_and_makes_dicts():
    grads = assert_gradient(transposed, [(1.0, 2.0), (3.0, 4.0)])
    assert grads == ([(3.0, 1.0), (4.0, 3.0)],)
    assert adtrans.gradient(zipped_into_a_dict, ["a", "b"], [1.5, 2.0], wrt=1) == [3.0, 1.5]
    assert_gradient(zipped_into_a_dict, ["a", "b"], [randn(2), randn(2)], wrt=(1,))
    # A key given twice: the last value wins, as in Python; the first gets no derivative.
    assert adtrans.gradient(zipped_into_a_dict, ["a", "b", "a"], [1.5, 2.0, 3.0], wrt=1) == [0.0, 3.0, 3.0]
    assert adtrans.gradient(sorted_by_the_first, [2.0, 1.0, 3.0], [0.5, 1.5, 2.5]) == (
        [0.0, 0.0, 0.0], [2.0, 1.0, 3.0])
    assert_gradient(zipped_tuple, [1.0, 2.0], (3.0, 4.0))


def test_zip_stops_at_the_shortest_sequence():
    assert adtrans.gradient(zip_of_unequal_lengths, [1.0, 2.0, 3.0], [4.0, 5.0]) == ([4.0, 5.0, 0.0], [1.0, 2.0])
    assert_gradient(zip_of_unequal_lengths, [1.0, 2.0, 3.0], [4.0, 5.0])


def counted_by_an_iterator(xs):
    pairs = list(zip(itertools.count(), xs))
    return sum(k * x for k, x in pairs)


def iterators_unpacked(x, ys):
    t = [x, *iter(range(3)), *ys]
    return t[0] * t[-1] + t[4]


def iterators_side_by_side(x):
    t = [*iter(range(2)), *iter(range(2)), x]
    return t[-1] * 2.0


def iterators_around_a_value(x, y):
    t = [*iter(range(2)), y, *iter(range(2)), x]
    return t[-1] * 2.0 + t[2]


def test_iterators_carry_no_derivative_but_count():
    assert adtrans.gradient(counted_by_an_iterator, [1.5, 2.5]) == [0.0, 1.0]
    assert adtrans.gradient(iterators_unpacked, 1.5, [2.0, 3.0]) == (3.0, [1.0, 1.5])
    assert_gradient(iterators_unpacked, 1.5, [2.0, 3.0])
    assert adtrans.gradient(iterators_side_by_side, 1.5) == 2.0
    with pytest.raises(adtrans.DifferentiationError, match="between iterators") as info:
        adtrans.gradient(iterators_around_a_value, 1.5, 2.0)
    assert info.value.lineno == iterators_around_a_value.__code__.co_firstlineno + 1
    assert "list(iterator)" in str(info.value)


def test_zip_runs_as_a_list_with_a_rule():
    text = adtrans.generated_source(summed_pairs)
    assert "pairs = zipped(Ws, bs)" in text         # list(zip(...)): no second copy
    assert "zipped_cotangents(d_pairs, (Ws, bs))" in text
    assert "enumerated_cotangent(" in adtrans.generated_source(weighted_by_position)


# -- realistic programs -------------------------------------------------------------------------

def mlp_loss(layer1, layer2, x, y):
    params = layer1 + layer2
    h = x
    for W, b in zip(params[::2], params[1::2]):
        h = np.tanh(h @ W + b)
    return np.mean((h - y) ** 2)


def rnn_collecting_states(h0, W, U, xs):
    h = h0
    states = [h]
    for x in xs:
        h = np.tanh(h @ W + x @ U)
        states = states + [h]
    return np.sum(np.stack(states) ** 2) / len(states)


def rnn_unpacking_its_states(h0, W, U, xs):
    h = h0
    states = ()
    for x in xs:
        h = np.tanh(h @ W + x @ U)
        states = (*states, h)
    return np.sum(np.stack(states) ** 2)


def rnn_collecting_states_in_a_tuple(h0, W, U, xs):
    h = h0
    states = ()
    for x in xs:
        h = np.tanh(h @ W + x @ U)
        states += (h,)
    return np.sum(np.stack(states[1:]) * np.stack(states[:-1]))


def test_a_parameter_list_built_from_layers():
    layer1, layer2 = [randn(3, 4), randn(4)], [randn(4, 2), randn(2)]
    grads = assert_gradient(mlp_loss, layer1, layer2, randn(5, 3), randn(5, 2), wrt=(0, 1))
    assert [g.shape for g in grads[0] + grads[1]] == [(3, 4), (4,), (4, 2), (2,)]


def test_an_rnn_collecting_its_states():
    args = (randn(2, 3), randn(3, 3) * 0.5, randn(4, 3) * 0.5, [randn(2, 4) for _ in range(3)])
    assert_gradient(rnn_collecting_states, *args, wrt=(0, 1, 2, 3))
    assert_gradient(rnn_collecting_states_in_a_tuple, *args, wrt=(0, 1, 2, 3))
    assert_gradient(rnn_unpacking_its_states, *args, wrt=(0, 1, 2, 3))


# -- what the generated code does ---------------------------------------------------------------

def test_the_pullback_of_a_plus_that_may_concatenate_chooses_when_it_runs():
    text = adtrans.generated_source(list_concatenation)
    assert "zs = xs + ys" in text      # the forward runs the operator as written
    assert "d_xs = addend_cotangent(d_zs, xs, ys, 0)" in text
    assert "d_ys = addend_cotangent(d_zs, xs, ys, 1)" in text
    # Cotangents of a value that may be a list are added item by item, never with '+'.
    assert "d_zs = add_tangents(d_zs, " in text
    assert "factor_cotangent(d_ys, xs, n)" in adtrans.generated_source(repeated, wrt="xs")


def sum_of_two_calls(x, f):
    a = f(x)
    b = f(x)
    return np.sum(np.tanh(a + b))


def test_operands_of_a_plus_that_may_concatenate_are_kept_for_their_shape_only():
    # Arrays: addend_cotangent reads only their shapes, so the forward keeps stand-ins.
    text = adtrans.generated_source(sum_of_two_calls, wrt="x")
    assert "d_a = addend_cotangent(d_a_plus_b, a, b, 0)" in text
    assert "a = shape_only(a)" in text and "b = shape_only(b)" in text
    x = np.linspace(0.0, 1.0, 20000)
    grad = adtrans.gradient(sum_of_two_calls, x, lambda v: v * 2.0, wrt="x")
    np.testing.assert_allclose(grad, 4.0 * (1 - np.tanh(4.0 * x) ** 2))


def test_numbers_keep_the_operators_own_rule():
    def arithmetic(x, y):
        z = (x + 1.0) * y
        return z * (x + x) + y * y

    text = adtrans.generated_source(arithmetic)
    assert "addend_cotangent" not in text and "factor_cotangent" not in text
    assert "add_tangents" not in text
    # Floats: the scalar code has no helper at all.
    gradient_text = adtrans.generated_source(arithmetic, gradient=True, floats=("x", "y"))
    assert "unbroadcast" not in gradient_text and "addend" not in gradient_text


# -- silently wrong before: list repetition and concatenation taken for arithmetic -------------

def doubled_list(xs):
    ys = xs * 2
    return ys[0] * ys[3]


def doubled_display(xs):
    ys = [xs[0], xs[1]] * 2
    return ys[0] * ys[3]


def tuple_added_to_itself(x, y):
    t = (x, y)
    u = t + t
    return u[0] * u[3]


def list_given_to_numpy_and_read(x, y):
    pair = [x, y]
    z = np.ones(2) + pair
    return np.sum(z * z) + pair[0] * 3.0


def list_argument_to_numpy_and_read(xs, a):
    z = np.exp(a) + xs
    return np.sum(z) + xs[0]


def nested_list_weights_used_twice(W, x):
    return np.sum(x @ W) + np.sum(x @ W)


def test_regressions_once_silently_wrong():
    # Each gave a zero or a wrong gradient: the cotangent list was repeated or concatenated.
    assert adtrans.gradient(doubled_list, [1.0, 2.0]) == [2.0, 1.0]
    assert adtrans.gradient(doubled_display, [1.0, 2.0]) == [2.0, 1.0]
    assert adtrans.gradient(tuple_added_to_itself, 1.0, 2.0) == (2.0, 1.0)
    assert adtrans.gradient(list_given_to_numpy_and_read, 1.0, 2.0) == (7.0, 6.0)
    for f, args in ((doubled_list, ([1.0, 2.0],)), (tuple_added_to_itself, (1.0, 2.0)),
                    (list_given_to_numpy_and_read, (1.0, 2.0))):
        assert_gradient(f, *args)
    # Lists NumPy took for arrays get list cotangents: added with '+' (taking them for arrays),
    # they were concatenated, and the gradient kept the first half.
    assert adtrans.gradient(list_argument_to_numpy_and_read, [1.0, 2.0], np.zeros(2), wrt=0) == [2.0, 1.0]
    assert adtrans.gradient(nested_list_weights_used_twice, [[1.0, 2.0], [3.0, 4.0]], np.ones(2), wrt=0) == [
        [2.0, 2.0], [2.0, 2.0]]
    assert_gradient(list_argument_to_numpy_and_read, [1.0, 2.0], randn(2))
    assert_gradient(nested_list_weights_used_twice, [[1.0, 2.0], [3.0, 4.0]], randn(2))


# -- errors -------------------------------------------------------------------------------------

def list_plus_tuple(xs, x):
    return sum(xs + (x,))


def sum_of_lists(x, y):
    t = sum([[x], [y, x]], [])
    return t[0] * t[2]


def test_a_list_plus_a_tuple_is_pythons_own_type_error():
    with pytest.raises(TypeError, match=r'can only concatenate list \(not "tuple"\) to list') as info:
        adtrans.gradient(list_plus_tuple, [1.0], 2.0)
    assert not isinstance(info.value, adtrans.DifferentiationError)


def repeated_by_a_count_that_came_with_floats(lists):
    total = 0.0
    for i, ys in list(enumerate(lists)):
        total = total + sum(ys * i)
    return total


def repeated_by_a_constant_count(lists):
    total = 0.0
    for i, ys in list(enumerate(lists)):
        total = total + sum(ys * adtrans.without_derivative(i))
    return total


def test_a_list_repeated_by_an_int_taken_for_a_number_is_a_located_error():
    # i came in a pair with floats, so it is taken for a differentiated number (not a count).
    with pytest.raises(adtrans.DifferentiationError, match="joined or repeated here") as info:
        adtrans.gradient(repeated_by_a_count_that_came_with_floats, [[1.0, 2.0], [3.0]])
    function = repeated_by_a_count_that_came_with_floats
    assert (info.value.lineno, info.value.col) == (function.__code__.co_firstlineno + 3, 9)
    assert "xs * without_derivative(n)" in str(info.value)
    # As the note says:
    assert adtrans.gradient(repeated_by_a_constant_count, [[1.0, 2.0], [3.0]]) == [[0.0, 0.0], [1.0]]
    assert_gradient(repeated_by_a_constant_count, [[1.0, 2.0], [3.0]])


def test_lists_joined_by_sum_are_a_located_error():
    with pytest.raises(adtrans.DifferentiationError, match="lists or tuples joined or repeated here") as info:
        adtrans.gradient(sum_of_lists, 1.0, 2.0)
    error = info.value
    assert error.filename.endswith("test_sequences.py")
    assert error.lineno == sum_of_lists.__code__.co_firstlineno + 1 and error.col == 5
    assert "concatenate lists with '+'" in str(error)
