"""Hunting in today's features: list/tuple `+`, `*`, `+=`, `*` unpacking in displays,
zip/enumerate as values; loop variables with no value before the loop; checkpointing
of functions changing arguments in place, drawing random numbers, bound methods,
layers, lambdas, segmented loops; pullbacks called twice.

Each program is checked against central finite differences (``assert_gradient``:
``gradient``, ``value_with_gradient``, ``value_with_pullback``), its value against
the plain run, and its pullback called twice.
"""

import random
from dataclasses import dataclass

import numpy as np
import pytest

import adtrans
from adtrans import nn
from structured_check import assert_gradient, _flat_tangent


RNG = np.random.default_rng(2024)


def randn(*shape):
    return RNG.standard_normal(shape)


def check(f, *args, wrt=None, **kw):
    """assert_gradient, then the pullback called twice gives the same tangents."""
    grads = assert_gradient(f, *args, wrt=wrt, **kw)
    positions = tuple(i for i in range(len(args)) if i in (wrt or range(len(args))))
    positions = wrt if wrt is not None else tuple(
        i for i, a in enumerate(args) if adtrans_float(a))
    value, pull = adtrans.value_with_pullback(f, *args, wrt=positions)
    first = pull(1.0)
    second = pull(1.0)
    for i, a, b in zip(positions, first, second):
        np.testing.assert_array_equal(_flat_tangent(a, args[i]), _flat_tangent(b, args[i]))
    return grads


def check_against(f, ref, *args):
    """f's value and gradient (three entry points, pullback twice) equal ref's value and finite differences."""
    import copy
    from structured_check import finite_differences
    positions = tuple(i for i, a in enumerate(args) if adtrans_float(a))
    expected = ref(*copy.deepcopy(args))
    grads = adtrans.gradient(f, *copy.deepcopy(args), wrt=positions)
    value, grads_v = adtrans.value_with_gradient(f, *copy.deepcopy(args), wrt=positions)
    value_p, pull = adtrans.value_with_pullback(f, *copy.deepcopy(args), wrt=positions)
    assert value == expected and value_p == expected, (value, value_p, expected)
    for got in (grads, grads_v, pull(1.0), pull(1.0)):
        for i, t in zip(positions, got):
            numeric = finite_differences(lambda *a: ref(*copy.deepcopy(a)), args, {}, i)
            np.testing.assert_allclose(_flat_tangent(t, args[i]), numeric, rtol=1e-5, atol=1e-6)


def adtrans_float(a):
    from structured_check import _flat
    return _flat(a).size > 0


# ---------------------------------------------------------------- 1. lists and tuples

def concat_sum(a, b):
    xs = [a, b] + [a * b]
    ys = (b,) + (a, a)
    total = 0.0
    for v in xs + list(ys):
        total = total + v * v
    return total


def test_concat_of_lists_and_tuples():
    check(concat_sum, 1.3, -0.7)


def repeat_list(x, y):
    xs = [x, y] * 3
    zs = 2 * [x]
    s = 0.0
    for i, v in enumerate(xs + zs):
        s = s + (i + 1) * np.sin(v)
    return s


def test_repeat_list():
    check(repeat_list, 0.4, 1.1)


def iadd_local_list(x, ws):
    acc = [x]
    for w in ws:
        acc += [acc[-1] * w]
        if w > 0:
            acc += [np.tanh(acc[-1])]
    return sum(acc)


def test_iadd_local_list_in_loop_with_branch():
    check(iadd_local_list, 0.8, [0.5, -1.2, 2.0])


def stack_concat(xs, ys):
    return np.sum(np.stack(xs + ys) ** 2 * np.arange(1.0, 5.0)[:, None])


def test_np_stack_of_concatenated_lists():
    check(stack_concat, [randn(3), randn(3)], [randn(3), randn(3)])


def array_of_unpacked(x, rest):
    v = np.array([x, *rest])
    return np.sum(v * np.arange(1.0, 1.0 + len(v))) + np.prod(v)


def test_np_array_of_star_display():
    check(array_of_unpacked, 0.7, [1.5, -0.3])


def star_tuple(a, y):
    t = (*a, y)
    u = [y, *t, *a]
    return sum(v * (k + 1) for k, v in enumerate(u)) * t[-1]


def test_star_tuple_and_list_displays():
    check(star_tuple, (0.3, 1.2), 2.5)


def exp_plus_list(a, xs):
    return np.sum(np.exp(a) + xs)


def test_list_numpy_takes_as_array():
    check(exp_plus_list, randn(3), [0.1, 0.2, 0.3])


def exp_plus_list_prod(a, xs):
    return np.sum(np.exp(a) * xs + xs)


def array_times_list_twice(a, xs):
    return np.sum(np.exp(a) * xs) + np.sum(np.exp(a) * xs)


def test_array_times_list_twice():
    check(array_times_list_twice, randn(3), [0.1, 0.2, 0.3])


def test_list_numpy_takes_as_array_times():
    check(exp_plus_list_prod, randn(3), [0.1, 0.2, 0.3])


def list_plus_param(x, y):
    return x + y


def list_plus_param_user(a, b):
    xs = list_plus_param([a, b], [b])
    return xs[0] * xs[1] + xs[2] * 3.0


def test_plus_decided_at_run_time_through_call():
    check(list_plus_param_user, 1.5, -2.0)


def zip_values(keys_w, vals):
    pairs = list(zip(keys_w, vals))
    d = dict(zip(["a", "b", "c"], vals))
    s = 0.0
    for w, v in pairs:
        s = s + w * v
    return s + d["b"] * d["c"]


def test_list_zip_and_dict_zip():
    check(zip_values, [0.5, 1.5, -1.0], [2.0, 3.0, 4.0])


def sorted_zip(scores, vals):
    ordered = sorted(zip(scores, vals), key=lambda p: p[0])
    s = 0.0
    for k, (sc, v) in enumerate(ordered):
        s = s + (k + 1) * sc * v
    return s


def test_sorted_zip_with_key():
    check(sorted_zip, [0.5, -1.5, 1.0], [2.0, 3.0, 4.0])


def unzip(pairs):
    xs, ys = zip(*pairs)
    return np.sum(np.array(xs) * np.array(ys)) + xs[0] * ys[-1]


def test_zip_star_unzip():
    check(unzip, [(1.0, 2.0), (3.0, -1.0), (0.5, 0.25)])


def enumerate_value(ws, x):
    e = list(enumerate(ws))
    h = x
    for i, w in e:
        h = np.tanh(h * w) + i * 0.1
    return h


def test_list_enumerate_value():
    check(enumerate_value, [0.5, 1.5, -0.7], 0.3)


@dataclass
class Pair:
    left: float
    right: float


def dataclass_lists(p, xs):
    both = [p.left] + xs + [p.right]
    g = lambda v: v * p.left
    return sum([g(v) for v in both]) + both[-1] * both[0]


def test_lists_with_dataclass_and_closure():
    check(dataclass_lists, Pair(0.5, 2.0), [1.0, -1.0])


def concat_arrays_ambiguous(x, y):
    z = x + y  # arrays: addition
    return np.sum(z * z)


def test_plus_on_arrays_still_adds():
    check(concat_arrays_ambiguous, randn(3), randn(3))


def tuple_concat_loop(x, n):
    state = (x,)
    for _ in range(n):
        state = state + (np.sin(state[-1]),)
    return state[-1] * state[0] + len(state) * 1.0


def test_tuple_grown_by_concat_in_loop():
    check(tuple_concat_loop, 0.9, 4, wrt=(0,))


def repeat_then_zip(x, ws):
    xs = [x] * len(ws)
    return sum(a * b for a, b in zip(xs, ws))


def test_repeat_by_len_then_zip():
    check(repeat_then_zip, 0.9, [1.0, 2.0, 3.0])


def star_from_array(v, y):
    t = [*v, y]
    return t[0] * t[-1] + t[1]


def test_star_unpack_array():
    check(star_from_array, np.array([1.0, 2.0, 3.0]), 0.5)


# ---------------------------------------------------------------- 2. loop-carried names with no value before

def prev_read(xs):
    s = 0.0
    for x in xs:
        if prev is not None:  # noqa: F821
            s = s + prev * x  # noqa: F821
        prev = x
    return s


def prev_read_ok(xs):
    s = 0.0
    first = True
    for x in xs:
        if not first:
            s = s + prev * x  # noqa: F821
        prev = x
        first = False
    return s


def test_prev_read_by_next_pass():
    check(prev_read_ok, [0.5, 1.5, -2.0, 3.0])


def last_positive(xs):
    for x in xs:
        if x > 0:
            last = x * x
    return last * 2.0


def test_assigned_in_some_passes_read_after():
    check(last_positive, [0.5, -1.5, 2.0, -3.0])


def while_prev(x, n):
    i = 0
    acc = x
    while i < n:
        if i > 0:
            acc = acc + np.sin(prev)  # noqa: F821
        prev = acc * 0.5
        i += 1
    return acc + prev


def test_while_prev():
    check(while_prev, 0.8, 4, wrt=(0,))


def nested_prev(m):
    total = 0.0
    for row in m:
        for j, v in enumerate(row):
            if j > 0:
                total = total + v * left  # noqa: F821
            left = v
        total = total + left
    return total


def test_nested_loops_prev():
    check(nested_prev, [[1.0, 2.0, 3.0], [0.5, -0.5, 4.0]])


def break_continue_found(xs, t):
    for x in xs:
        if x < 0:
            continue
        found = x * t
        if x > 2.0:
            break
    return found * found


def test_break_continue_assigned_in_some_passes():
    check(break_continue_found, [1.0, -1.0, 3.0, 5.0], 0.7)


def early_return_prev(xs):
    for i, x in enumerate(xs):
        if i > 0 and x * prev > 1.0:  # noqa: F821
            return x * prev  # noqa: F821
        prev = x * 1.5
    return prev


def test_early_return_reads_prev():
    check(early_return_prev, [0.5, 1.0, 2.0])
    check(early_return_prev, [0.1, 0.2, 0.3])


def assigned_in_inner_only(m):
    for row in m:
        for v in row:
            if v > 0:
                best = v * 2.0
    return best


def test_assigned_in_inner_loop_read_after_outer():
    check(assigned_in_inner_only, [[1.0, -2.0], [-3.0, -4.0]])


def prev_array(xs, W):
    out = []
    for x in xs:
        h = np.tanh(x @ W)
        if len(out) > 0:
            h = h + hprev  # noqa: F821
        hprev = h
        out.append(h)
    return np.sum(np.stack(out)) + np.sum(hprev)


def test_prev_array_in_rnn_like_loop():
    check(prev_array, [randn(3), randn(3), randn(3)], randn(3, 3))


# ---------------------------------------------------------------- 3. checkpointing

def inplace_add(z, b):
    z += b
    return np.sum(np.tanh(z))


ck_inplace_add = adtrans.checkpointed(inplace_add)


def use_inplace_add(z, b):
    z = z * 2.0
    s = ck_inplace_add(z, b)
    return s * s


def test_checkpointed_iadd_argument():
    z = randn(4)
    z0 = z.copy()
    check(use_inplace_add, z, randn(4))
    np.testing.assert_array_equal(z, z0)


def plain_caller_reads_after(z, b):
    s = inplace_add(z, b)
    return s + np.sum(z * z)


def test_value_when_callee_changes_argument_in_place():
    # The caller reads z after the callee's z += b: differentiated code would read the old z
    # (a value other than f(*args), silently): a located error saying what to write.
    z, b = np.array([0.5, -1.0]), np.array([0.3, 0.2])
    with pytest.raises(adtrans.DifferentiationError, match="changes its argument 'z' in place") as info:
        adtrans.value_with_pullback(plain_caller_reads_after, z.copy(), b)
    assert info.value.lineno == plain_caller_reads_after.__code__.co_firstlineno + 1
    assert "return the changed value" in str(info.value)


def inplace_slice(u, k):
    u[1:-1] = u[1:-1] + k * (u[2:] - 2 * u[1:-1] + u[:-2])
    return np.sum(u * u)


ck_inplace_slice = adtrans.checkpointed(inplace_slice)


def heat(u, k):
    u = u + 0.0
    total = 0.0
    for _ in range(3):
        total = total + ck_inplace_slice(u, k)
    return total


def heat_ref(u, k):
    u = u + 0.0
    total = 0.0
    for _ in range(3):
        total = total + inplace_slice(u.copy(), k)
    return total


def test_checkpointed_slice_assignment():
    # differentiated code gives the callee a copy (documented), so compare with a run that does
    check_against(heat, heat_ref, randn(6), 0.2)


def out_add(z, b):
    np.add(z, b, out=z)
    return z * z


ck_out_add = adtrans.checkpointed(out_add)


def use_out_add(z, b):
    z = z * 1.5
    y = ck_out_add(z, b)
    y2 = ck_out_add(z, y)
    return np.sum(y) + np.sum(y2)


def out_add_plain(z, b):
    np.add(z, b, out=z)
    return np.sum(z * z)


def test_out_argument_not_checkpointed():
    # np.add(z, b, out=z) is z = np.add(z, b), by value as z += b is (it was dropped from the
    # derivative: d_b zero). The plain function changes its argument: each run gets a copy.
    check_against(out_add_plain, out_add_plain, randn(3), randn(3))


def test_checkpointed_out_argument():
    # Python changes the caller's z (out=z) and the next call reads it; differentiated code
    # passes values: a located error, not a value other than f(*args).
    with pytest.raises(adtrans.DifferentiationError, match="changes its argument 'z' in place") as info:
        adtrans.gradient(use_out_add, randn(3), randn(3))
    assert info.value.lineno == use_out_add.__code__.co_firstlineno + 2


@dataclass
class Particle:
    pos: np.ndarray
    vel: np.ndarray


def move(s, dt):
    s.pos = s.pos + dt * s.vel
    return np.sum(s.pos ** 2)


ck_move = adtrans.checkpointed(move)


def use_move(pos, vel, dt):
    s = Particle(pos, vel)
    e = ck_move(s, dt)
    return e + ck_move(s, dt)


def test_checkpointed_attribute_assignment():
    # Python changes the caller's value and the caller reads it after: differentiated code
    # passes values, so this is a located error, not a value other than f(*args).
    with pytest.raises(adtrans.DifferentiationError, match="changes its argument 's' in place") as info:
        adtrans.gradient(use_move, randn(2), randn(2), 0.3)
    assert info.value.lineno == use_move.__code__.co_firstlineno + 2


def move_iadd(s, dt):
    s.pos += dt * s.vel
    return np.sum(s.pos ** 2)


ck_move_iadd = adtrans.checkpointed(move_iadd)


def use_move_iadd(pos, vel, dt):
    s = Particle(pos * 1.0, vel)
    e = ck_move_iadd(s, dt)
    e = e * ck_move_iadd(s, dt)
    return e


def test_checkpointed_attribute_iadd_twice():
    # Python changes the caller's value and the caller reads it after: differentiated code
    # passes values, so this is a located error, not a value other than f(*args).
    with pytest.raises(adtrans.DifferentiationError, match="changes its argument 's' in place") as info:
        adtrans.gradient(use_move_iadd, randn(2), randn(2), 0.3)
    assert info.value.lineno == use_move_iadd.__code__.co_firstlineno + 2


def scale_rows(u, k):
    u *= k
    u[0] = 0.0
    return np.sum(np.sin(u))


ck_scale_rows = adtrans.checkpointed(scale_rows)


def use_scale_rows(u, k):
    v = np.exp(u)
    a = ck_scale_rows(v, k)
    return a * np.sum(v)


def test_checkpointed_changes_local_read_after_by_caller():
    # Python changes the caller's value and the caller reads it after: differentiated code
    # passes values, so this is a located error, not a value other than f(*args).
    with pytest.raises(adtrans.DifferentiationError, match="changes its argument 'u' in place") as info:
        adtrans.gradient(use_scale_rows, randn(4), 0.7, wrt=(0, 1))
    assert info.value.lineno == use_scale_rows.__code__.co_firstlineno + 2


def dropout(x, rng):
    mask = rng.random(x.shape) > 0.3
    return np.where(mask, x, 0.0) / 0.7


ck_dropout = adtrans.checkpointed(dropout)


def net_dropout(x, W, rng):
    h = ck_dropout(np.tanh(x @ W), rng)
    h = ck_dropout(h, rng)
    return np.sum(h ** 2)


def test_checkpointed_dropout_rng_argument():
    x, W = randn(2, 3), randn(3, 3)
    expected_rng = np.random.default_rng(5)
    expected = net_dropout(x, W, expected_rng)
    rng = np.random.default_rng(5)
    value, pull = adtrans.value_with_pullback(net_dropout, x, W, rng, wrt=(0, 1))
    assert value == expected
    g1 = pull(1.0)
    g2 = pull(1.0)
    # the caller's generator is where a plain run leaves it
    assert rng.random() == expected_rng.random()
    # gradients against finite differences with fixed seeds
    def fixed(x, W):
        return net_dropout(x, W, np.random.default_rng(5))
    grads = assert_gradient(fixed, x, W)
    for a, b, c in zip(g1, g2, grads):
        np.testing.assert_allclose(a, c, rtol=1e-10)
        np.testing.assert_array_equal(a, b)


def global_noise(x):
    return x * (1.0 + 0.1 * np.random.random(x.shape)) + random.random()


ck_global_noise = adtrans.checkpointed(global_noise)


def net_global(x):
    h = ck_global_noise(np.sin(x))
    return np.sum(h * h)


def test_checkpointed_global_generators():
    x = randn(4)
    np.random.seed(7)
    random.seed(7)
    expected = net_global(x)
    after_np, after_py = np.random.random(), random.random()
    np.random.seed(7)
    random.seed(7)
    value, pull = adtrans.value_with_pullback(net_global, x)
    g1 = pull(1.0)
    g2 = pull(1.0)
    assert value == expected
    assert (np.random.random(), random.random()) == (after_np, after_py)
    np.random.seed(7)
    random.seed(7)
    r = np.random.random(4)
    c = random.random()
    h = np.sin(x) * (1.0 + 0.1 * r) + c
    np.testing.assert_allclose(g1, 2 * h * (1.0 + 0.1 * r) * np.cos(x), rtol=1e-10)
    np.testing.assert_array_equal(g1, g2)


class Scaler:
    def __init__(self, w):
        self.w = w

    def apply(self, x):
        return np.tanh(self.w * x)


def bound_method_ck(sc, x):
    f = adtrans.checkpointed(sc.apply)
    return np.sum(f(f(x)))


def test_checkpointed_bound_method_inside():
    check(bound_method_ck, Scaler(0.7), randn(3))


def layer_ck(layer, x):
    f = adtrans.checkpointed(layer)
    return np.sum(f(x) ** 2)


def test_checkpointed_layer_instance():
    layer = nn.Dense(3, 2, nn.tanh, rng=np.random.default_rng(0), dtype=np.float64)
    check(layer_ck, layer, randn(4, 3))


ck_tanh = adtrans.checkpointed(np.tanh)


def use_ck_tanh(x):
    return np.sum(ck_tanh(x) * x)


def test_checkpointed_numpy_function():
    assert ck_tanh is np.tanh
    check(use_ck_tanh, randn(3))


def lambda_capture(x, w):
    a = w * 2.0
    f = adtrans.checkpointed(lambda v: np.sin(v * a) + w)
    h = x
    for _ in range(3):
        h = f(h)
    return np.sum(h)


def test_checkpointed_lambda_capturing_differentiated_values():
    check(lambda_capture, randn(3), 0.4)


def seg_zip(x, Ws, bs):
    h = x
    for W, b in adtrans.segmented(zip(Ws, bs), 2):
        h = np.tanh(h @ W + b)
    return np.sum(h)


def test_segmented_zip():
    Ws = [randn(3, 3) * 0.5 for _ in range(5)]
    bs = [randn(3) for _ in range(5)]
    check(seg_zip, randn(2, 3), Ws, bs)


def seg_zip_prev(x, Ws, bs):
    h = x
    for W, b in adtrans.segmented(zip(Ws, bs), 2):
        h2 = np.tanh(h @ W + b)
        if h.shape == h2.shape:
            h = h2 + 0.1 * h
        last = h2
    return np.sum(h) + np.sum(last)


def test_segmented_zip_with_name_unassigned_before():
    Ws = [randn(3, 3) * 0.5 for _ in range(5)]
    bs = [randn(3) for _ in range(5)]
    check(seg_zip_prev, randn(2, 3), Ws, bs)


def seg_count(x, Ws):
    h = x
    for W in adtrans.segmented(Ws, 2):
        h = counting_layer(h, W)
    return np.sum(h)


CALLS = []


def counting_layer(h, W):
    CALLS.append(1)
    return np.tanh(h @ W)


def test_segmented_last_run_not_recomputed():
    Ws = [randn(3, 3) * 0.5 for _ in range(5)]
    x = randn(2, 3)
    CALLS.clear()
    _, pull = adtrans.value_with_pullback(seg_count, x, Ws)
    forward = len(CALLS)
    pull(1.0)
    assert forward == 5
    assert len(CALLS) - forward == 4  # runs [0,1],[2,3] recomputed, [4] kept
    check(seg_count, x, Ws)


def seg_break(x, Ws):
    h = x
    for W in adtrans.segmented(Ws, 2):
        h = np.tanh(h @ W)
        if np.sum(h) > 100.0:
            break
    return np.sum(h * h)


def test_segmented_with_break():
    check(seg_break, randn(2, 3), [randn(3, 3) for _ in range(5)])


# ---------------------------------------------------------------- 4. pullback called twice

def straight(x):
    return np.sum(np.tanh(x) * np.tanh(2 * x))


def test_pullback_twice_straight():
    check(straight, randn(4))


def loop_tanh(x, Ws):
    h = x
    for W in Ws:
        h = np.tanh(h @ W)
    return np.sum(h)


def test_pullback_twice_loop():
    check(loop_tanh, randn(3), [randn(3, 3) for _ in range(3)])


def ck_chain(x, Ws):
    h = x
    for W in Ws:
        h = ck_layer(h, W)
    return np.sum(h)


def _layer(h, W):
    h = h @ W
    h += 1.0
    return np.tanh(h)


ck_layer = adtrans.checkpointed(_layer)


def test_pullback_twice_checkpointed_inplace():
    check(ck_chain, randn(3), [randn(3, 3) for _ in range(3)])


def list_pullback_twice(xs, ys):
    zs = xs + ys
    zs += [zs[0] * zs[-1]]
    return np.sum(np.stack(zs) ** 2)


def test_pullback_twice_list_concat():
    check(list_pullback_twice, [randn(2)], [randn(2), randn(2)])


def zip_unequal(xs, ys):
    pairs = list(zip(xs, ys))
    firsts, seconds = zip(*pairs)
    return sum(a * b for a, b in pairs) + firsts[-1] * 3.0 + sum(seconds)


def test_zip_unequal_lengths_and_unzip():
    check(zip_unequal, [1.0, 2.0, 3.0, 4.0], [0.5, -0.5])


def seg_enumerate(x, Ws):
    h = x
    for i, W in adtrans.segmented(list(enumerate(Ws)), 2):
        h = np.tanh(h @ W) * (1.0 + 0.1 * without_int(i))
    return np.sum(h)


def without_int(i):
    return float(i)


def test_segmented_list_enumerate():
    check(seg_enumerate, randn(2, 3), [randn(3, 3) * 0.5 for _ in range(5)])


def rng_lambda(x, w, rng):
    f = adtrans.checkpointed(lambda v: v * w * (rng.random(v.shape) > 0.5))
    return np.sum(f(np.tanh(x)) ** 2) + np.sum(f(x))


def test_checkpointed_lambda_drawing_from_rng():
    x, w = randn(5), 0.8
    expected_rng = np.random.default_rng(3)
    expected = rng_lambda(x, w, expected_rng)
    rng = np.random.default_rng(3)
    value, pull = adtrans.value_with_pullback(rng_lambda, x, w, rng, wrt=(0, 1))
    assert value == expected
    g1, g2 = pull(1.0), pull(1.0)
    assert rng.random() == expected_rng.random()
    grads = assert_gradient(lambda x, w: rng_lambda(x, w, np.random.default_rng(3)), x, w)
    for a, b, c in zip(g1, g2, grads):
        np.testing.assert_allclose(a, c, rtol=1e-10)
        np.testing.assert_array_equal(a, b)


def seg_dropout(x, Ws, rng):
    h = x
    for W in adtrans.segmented(Ws, 2):
        h = np.tanh(h @ W) * (rng.random(h.shape) > 0.2)
    return np.sum(h)


def test_segmented_drawing_from_rng():
    x, Ws = randn(2, 3), [randn(3, 3) for _ in range(5)]
    expected_rng = np.random.default_rng(9)
    expected = seg_dropout(x, Ws, expected_rng)
    rng = np.random.default_rng(9)
    value, pull = adtrans.value_with_pullback(seg_dropout, x, Ws, rng, wrt=(0, 1))
    assert value == expected
    g1, g2 = pull(1.0), pull(1.0)
    assert rng.random() == expected_rng.random()
    grads = assert_gradient(lambda x, Ws: seg_dropout(x, Ws, np.random.default_rng(9)), x, Ws)
    np.testing.assert_allclose(g1[0], grads[0], rtol=1e-10)
    np.testing.assert_array_equal(g1[0], g2[0])


def star_in_call_list(x, rest):
    parts = [x * 2.0, *[r * x for r in rest], *rest]
    parts += [parts[0]]
    return np.sum(np.stack(parts * 2))


def test_star_display_of_comprehension_repeat_stack():
    check(star_in_call_list, randn(2), [randn(2), randn(2)])
