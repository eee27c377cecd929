"""Checkpointing: recompute-in-pullback, and proof that the recomputation ran."""

import math
import random
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

import adtrans

RNG = np.random.default_rng(3)
CALLS = []


def layer(h, W, b):
    CALLS.append("layer")
    return np.tanh(h @ W + b)


checkpointed_layer = adtrans.checkpointed(layer)


def chain(x, Ws, bs):
    h = x
    for W, b in zip(Ws, bs):
        h = checkpointed_layer(h, W, b)
    return np.sum(h ** 2)


def chain_plain(x, Ws, bs):
    h = x
    for W, b in zip(Ws, bs):
        h = layer(h, W, b)
    return np.sum(h ** 2)


def data(layers=3):
    x = RNG.normal(size=(4, 5))
    Ws = [RNG.normal(size=(5, 5)) * 0.5 for _ in range(layers)]
    bs = [RNG.normal(size=5) for _ in range(layers)]
    return x, Ws, bs


def same(a, b):
    if isinstance(a, (list, tuple)):
        return all(same(x, y) for x, y in zip(a, b))
    return np.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_checkpointed_callee_gives_the_same_gradient_and_recomputes():
    args = data()
    CALLS.clear()
    g = adtrans.gradient(chain, *args)
    assert CALLS.count("layer") == 6          # three forward, three again in the pullback
    CALLS.clear()
    assert same(g, adtrans.gradient(chain_plain, *args))
    assert CALLS.count("layer") == 3
    adtrans.check_gradient(chain, *args)


def test_generated_code_calls_plain_forward_and_recomputes_in_pullback():
    text = adtrans.generated_source(chain)
    forward, pullback = text.split("def pullback")
    assert "checkpointed_layer(h_1, W, b)" in forward
    assert "layer_value_with_pullback" not in forward
    assert "layer_value_with_pullback(h_1, W, b)[1]" in pullback


def test_decorator_form_and_direct_gradient():
    calls = []

    @adtrans.differentiable(checkpoint=True)
    def square_sin(x):
        calls.append(x)
        return np.sin(x) ** 2

    def f(x):
        return square_sin(x) * 3.0

    assert adtrans.gradient(f, 0.4) == pytest.approx(3 * 2 * math.sin(0.4) * math.cos(0.4))
    assert len(calls) == 2
    calls.clear()
    assert adtrans.gradient(square_sin, 0.4) == pytest.approx(2 * math.sin(0.4) * math.cos(0.4))
    assert len(calls) == 2


def inner_ck(x):
    CALLS.append("inner")
    return np.exp(x) * x


inner_checkpointed = adtrans.checkpointed(inner_ck)


def outer_ck(x):
    CALLS.append("outer")
    return inner_checkpointed(x) + np.sin(x)


outer_checkpointed = adtrans.checkpointed(outer_ck)


def nested(x):
    return outer_checkpointed(x) * 2.0


def test_nested_checkpoints():
    CALLS.clear()
    g = adtrans.gradient(nested, 0.3)
    assert g == pytest.approx(2 * (math.exp(0.3) * 1.3 + math.cos(0.3)))
    # outer: forward, then again in the pullback; inner: in outer's forward, in outer's
    # recomputation, and once more in its own pullback.
    assert CALLS.count("outer") == 2 and CALLS.count("inner") == 3


@dataclass
class Model:
    W: np.ndarray
    b: np.ndarray

    @adtrans.differentiable(checkpoint=True)
    def apply(self, x):
        CALLS.append("apply")
        return np.tanh(x @ self.W + self.b)


def model_loss(model, x):
    return np.sum(model.apply(x) ** 2)


def test_checkpointed_method_of_a_dataclass():
    model = Model(RNG.normal(size=(5, 3)), RNG.normal(size=3))
    x = RNG.normal(size=(4, 5))
    CALLS.clear()
    g = adtrans.gradient(model_loss, model, x, wrt="model")
    assert CALLS.count("apply") == 2
    plain = adtrans.gradient(lambda m, x: np.sum(np.tanh(x @ m.W + m.b) ** 2), model, x, wrt=0)
    assert same(g.W, plain.W) and same(g.b, plain.b)


def block(x, W1, W2):
    with adtrans.recomputed():
        CALLS.append("block")
        h = np.tanh(x @ W1)
        g = np.tanh(h @ W2)
    return np.sum(g * g) + np.sum(h)


def block_plain(x, W1, W2):
    h = np.tanh(x @ W1)
    g = np.tanh(h @ W2)
    return np.sum(g * g) + np.sum(h)


def test_recomputed_block():
    args = (RNG.normal(size=(3, 4)), RNG.normal(size=(4, 4)), RNG.normal(size=(4, 4)))
    CALLS.clear()
    g = adtrans.gradient(block, *args)
    assert CALLS.count("block") == 2
    assert same(g, adtrans.gradient(block_plain, *args))
    assert block(*args) == block_plain(*args)
    text = adtrans.generated_source(block)
    assert "recomputed_block_value_with_pullback" in text.split("def pullback")[1]


def segments(x, Ws):
    h = x
    for W in adtrans.segmented(Ws, 3):
        CALLS.append("pass")
        h = np.tanh(h @ W)
        if np.sum(h) > 100.0:
            break
    return np.sum(h * h)


def segments_plain(x, Ws):
    h = x
    for W in Ws:
        h = np.tanh(h @ W)
        if np.sum(h) > 100.0:
            break
    return np.sum(h * h)


def test_segmented_loop_recomputes_each_segment():
    x = RNG.normal(size=(3, 4))
    Ws = [RNG.normal(size=(4, 4)) * 0.5 for _ in range(7)]
    CALLS.clear()
    g = adtrans.gradient(segments, x, Ws)
    assert CALLS.count("pass") == 14
    assert same(g, adtrans.gradient(segments_plain, x, Ws))
    adtrans.check_gradient(segments, x, Ws)


def test_segmented_loop_keeps_one_value_per_segment():
    text = adtrans.generated_source(segments)
    forward = text.split("def pullback")[0]
    assert "for start in range(0, len_items, segment_length):" in forward
    kept = re.search(r"tape.append\(\((.*)\)\)", forward).group(1).split(", ")
    # the run's passes, where it starts and ends, the flag that stops the loop, one activation
    assert sorted(re.sub(r"_\d$", "", k) for k in kept) == ["broke", "h", "run", "start",
                                                             "start_plus_segment_length"]


def steps(x, Ws, bs):
    h = x
    for W, b in adtrans.segmented([(W, b) for W, b in zip(Ws, bs)], 3):
        CALLS.append("pass")
        if np.sum(W) > 1e9:
            continue
        h = np.tanh(h @ W + b)
    return np.sum(h * h) + np.sum(W)


def steps_plain(x, Ws, bs):
    h = x
    for W, b in zip(Ws, bs):
        h = np.tanh(h @ W + b)
    return np.sum(h * h) + np.sum(W)


@pytest.mark.parametrize("count, recomputed", [(7, 6), (6, 3), (3, 0), (2, 0), (1, 0)])
def test_segmented_loop_keeps_the_last_run(count, recomputed):
    # Runs of 3 passes; the last run's backward comes first, so it keeps its values.
    x, Ws, bs = data(count)
    CALLS.clear()
    value, g = adtrans.value_with_gradient(steps, x, Ws, bs)
    assert CALLS.count("pass") == count + recomputed
    assert value == steps_plain(x, Ws, bs)
    assert same(g, adtrans.gradient(steps_plain, x, Ws, bs))
    adtrans.check_gradient(steps, x, Ws, bs)


def test_segmented_loop_over_nothing():
    def empty(x, Ws):
        h = x
        for W in adtrans.segmented(Ws, 4):
            h = np.tanh(h @ W)
        return np.sum(h)

    x = RNG.normal(size=(2, 3))
    assert np.array_equal(adtrans.gradient(empty, x, [], wrt=0), np.ones_like(x))


def test_segmented_loop_generated_code():
    text = adtrans.generated_source(steps)
    forward = text.split("def pullback")[0]
    assert "last_start = max(len(items) - 1, 0) // segment_length * segment_length" in forward
    assert "for start in range(0, last_start, segment_length):" in forward
    assert "last_run = items[last_start:]" in forward
    assert re.search(r"\n    for .* in (enumerate\()?last_run\)?:\n", forward)
    pullback = text.split("def pullback")[1]
    assert pullback.count("recomputed_block_value_with_pullback") == 1


def stops_early(x, Ws, limit):
    h = x
    for W in adtrans.segmented(Ws, 3):
        CALLS.append("pass")
        h = np.tanh(h @ W) + 1.0
        if np.sum(h) > limit:
            break
    return np.sum(h * h)


def stops_early_plain(x, Ws, limit):
    h = x
    for W in Ws:
        h = np.tanh(h @ W) + 1.0
        if np.sum(h) > limit:
            break
    return np.sum(h * h)


@pytest.mark.parametrize("limit, passes", [(-1e9, 1), (1e9, 8)])
def test_segmented_loop_that_breaks(limit, passes):
    # The flag the break sets leaves the recomputed run: the loop stops where the plain one does.
    x, Ws = RNG.normal(size=(3, 4)), [RNG.normal(size=(4, 4)) for _ in range(8)]
    CALLS.clear()
    assert stops_early(x, Ws, limit) == stops_early_plain(x, Ws, limit)
    CALLS.clear()
    value, g = adtrans.value_with_gradient(stops_early, x, Ws, limit, wrt=(0, 1))
    assert CALLS.count("pass") == 2 * passes      # once in the forward, once recomputed
    assert value == stops_early_plain(x, Ws, limit)
    assert same(g, adtrans.gradient(stops_early_plain, x, Ws, limit, wrt=(0, 1)))


def test_a_break_flag_leaving_a_run_gets_no_cotangent():
    # The flag is a boolean: the run's pullback is given None for it, and it is not carried back.
    text = adtrans.generated_source(stops_early, wrt=(0, 1))
    pullback = text.split("def pullback")[1]
    assert "zeros_like" not in pullback and "d_broke" not in pullback
    assert "d_recomputed = (d_h_1, None)" in pullback


def test_segmented_loop_breaking_midway():
    x, Ws = RNG.normal(size=(3, 4)), [RNG.normal(size=(4, 4)) for _ in range(8)]
    sums = []
    h = x
    for W in Ws:
        h = np.tanh(h @ W) + 1.0
        sums.append(np.sum(h))
    limit = sorted(sums[:7])[3]         # some pass in the middle stops the loop
    value, g = adtrans.value_with_gradient(stops_early, x, Ws, limit, wrt=(0, 1))
    assert value == stops_early_plain(x, Ws, limit)
    assert same(g, adtrans.gradient(stops_early_plain, x, Ws, limit, wrt=(0, 1)))
    adtrans.check_gradient(stops_early, x, Ws, limit, wrt=(0, 1))


def carried(x, Ws):
    h, c = x, 0.0
    for W in adtrans.segmented(Ws, 3):
        h = np.tanh(h @ W) + c
        c = np.sum(h) * 0.01
    return np.sum(h * h)


def carried_block(x, Ws):
    h, c = x, 0.0
    for W in Ws:
        with adtrans.recomputed():
            h = np.tanh(h @ W) + c
            c = np.sum(h) * 0.01
    return np.sum(h * h)


def carried_plain(x, Ws):
    h, c = x, 0.0
    for W in Ws:
        h = np.tanh(h @ W) + c
        c = np.sum(h) * 0.01
    return np.sum(h * h)


@pytest.mark.parametrize("f", [carried, carried_block])
def test_recomputed_values_carried_to_the_next_pass(f):
    # `c` is read only by the next pass (never after the loop): it still leaves each run.
    x, Ws = RNG.normal(size=(3, 4)), [RNG.normal(size=(4, 4)) for _ in range(7)]
    value, g = adtrans.value_with_gradient(f, x, Ws)
    assert value == pytest.approx(carried_plain(x, Ws), rel=1e-12)
    assert same(g, adtrans.gradient(carried_plain, x, Ws))
    adtrans.check_gradient(f, x, Ws)


def reads_some_items(x, xs):
    with adtrans.recomputed():
        h = x
        for t in range(1, 3):
            h = np.tanh(h * xs[t])
    return np.sum(h)


def steps_by_index(x, xs):
    h = x
    for t in adtrans.segmented(range(len(xs)), 2):
        h = np.tanh(h * xs[t]) + xs[t]
    return np.sum(h)


@pytest.mark.parametrize("f", [reads_some_items, steps_by_index])
def test_recomputed_list_reads_give_whole_cotangents(f):
    # A run reading xs[t] gives xs a cotangent with None for the items it never read; what
    # leaves the gradient is whole, zeros made.
    x, xs = RNG.normal(size=3), [RNG.normal(size=3) for _ in range(5)]
    value, back = adtrans.value_with_pullback(f, x, xs)
    d_x, d_xs = back(1.0)
    assert all(type(d) is np.ndarray and d.shape == (3,) for d in d_xs)
    if f is reads_some_items:
        assert not d_xs[0].any() and not d_xs[3].any() and d_xs[1].any()
    adtrans.check_gradient(f, x, xs)


def dropout_global(h, W):
    keep = np.random.random(h.shape) > 0.5
    return np.tanh(h @ W) * keep


def dropout_python(h, W):
    keep = np.array([random.random() > 0.5 for _ in range(h.shape[1])])
    return np.tanh(h @ W) * keep


def dropout_keyword(h, W, *, rng):
    return np.tanh(h @ W) * (rng.uniform(size=h.shape) > 0.5)


@pytest.mark.parametrize("layer", [dropout_global, dropout_python, dropout_keyword])
def test_recomputation_draws_the_same_random_numbers(layer):
    # As torch.utils.checkpoint: the mask the pullback recomputes is the forward's, and the
    # caller's generators are where the plain program leaves them.
    checkpointed = adtrans.checkpointed(layer)
    ckpt_layer = (lambda h, W, rng: checkpointed(h, W, rng=rng)) if layer is dropout_keyword else \
        (lambda h, W, rng: checkpointed(h, W))
    plain_layer = (lambda h, W, rng: layer(h, W, rng=rng)) if layer is dropout_keyword else \
        (lambda h, W, rng: layer(h, W))

    def net(x, Ws, seed, call):
        rng = np.random.default_rng(seed)
        h = x
        for W in Ws:
            h = call(h, W, rng)
        return np.sum(h ** 2) + rng.random()        # the caller draws after the layers

    x, Ws = RNG.normal(size=(4, 3)), [RNG.normal(size=(3, 3)) for _ in range(3)]
    runs = []
    for call in (ckpt_layer, plain_layer):
        np.random.seed(7)
        random.seed(7)
        value, g = adtrans.value_with_gradient(net, x, Ws, 1, call, wrt=(0, 1))
        runs.append((value, g, np.random.random(), random.random()))
    (v1, g1, n1, r1), (v2, g2, n2, r2) = runs
    assert v1 == v2 and (n1, r1) == (n2, r2)
    assert same(g1, g2)


def test_user_written_make_recomputed_in_gradient():
    def make_recomputed_in_gradient(original):
        return adtrans.differentiable_function(
            lambda x: (original(x), lambda v: adtrans.pullback(original, x)(v)))

    calls = []

    def square_impl(x):
        calls.append(x)
        return x * x

    square = make_recomputed_in_gradient(square_impl)
    value, back = adtrans.value_with_pullback(lambda x: square(math.cos(x)), 10.0)
    assert value == pytest.approx(math.cos(10.0) ** 2)
    assert back(1.0) == pytest.approx(-math.sin(20.0))
    assert len(calls) == 2


def scaled_layer(h, **options):
    CALLS.append("scaled")
    return np.tanh(h * options["gain"])


scaled_layer_ckpt = adtrans.checkpointed(scaled_layer)


def through_scaled(x, g):
    return np.sum(scaled_layer_ckpt(x, gain=g) ** 2)


def test_a_checkpointed_function_taking_kwargs_recomputes_at_run_time():
    # Its '**options' are counted when the call runs, so the call is dispatched then; the
    # checkpoint holds: the forward runs the plain function, the pullback runs it again.
    x = np.linspace(-1.0, 1.0, 5)
    CALLS.clear()
    d_x, d_g = adtrans.gradient(through_scaled, x, 0.7)
    assert CALLS.count("scaled") == 2
    plain = lambda x, g: np.sum(scaled_layer(x, gain=g) ** 2)
    want_x, want_g = adtrans.gradient(plain, x, 0.7)
    np.testing.assert_allclose(d_x, want_x, rtol=1e-13)
    assert d_g == pytest.approx(want_g, rel=1e-13)
    adtrans.check_gradient(through_scaled, x, 0.7)


# -- what a recomputed block or a segmented run takes and returns

def last_output(h, Ws, V):
    for W in adtrans.segmented(Ws, 2):
        h = np.tanh(h @ W)
        y = h @ V       # read by the run, which leaves y to the last run: V goes in for nothing
    return np.sum(y * y)


@pytest.mark.parametrize("steps", [1, 5])
def test_no_zero_derivative_warning_about_what_a_block_reads(steps):
    with warnings.catch_warnings():
        warnings.simplefilter("error", adtrans.ZeroDerivativeWarning)
        adtrans.gradient(last_output, RNG.normal(size=(2, 3)), [RNG.normal(size=(3, 3)) for _ in range(steps)],
                         RNG.normal(size=(3, 2)))


def last_output_until(h, Ws, V):
    for W in adtrans.segmented(Ws, 2):
        h = np.tanh(h @ W)
        y = h @ V       # any run may be the last: each returns y
        if np.sum(y) > 100.0:
            break
    return np.sum(y * y)


def test_a_run_keeps_no_output_for_its_zero_alone():
    forward = adtrans.generated_source(last_output_until).split("def pullback")[0]
    (kept,) = re.findall(r"tape\.append\(\((.*)\)\)", forward)
    assert sorted(re.sub(r"_\d$", "", k) for k in kept.split(", ")) == [
        "broke", "h", "run", "start", "start_plus_segment_length"]
    args = RNG.normal(size=(2, 3)), [RNG.normal(size=(3, 3)) for _ in range(5)], RNG.normal(size=(3, 2))
    adtrans.check_gradient(last_output_until, *args)


def found_in_some_runs(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        h = math.sin(h * x)
        if h > 0.3:
            found = h * w       # no value before the loop: it starts as None
    return found + h


def previous_item(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2):
        if x > 0.25:
            h = h + previous * x    # noqa: F821 (assigned by the pass before)
        previous = x * w
    return h


@pytest.mark.parametrize("f, xs", [(found_in_some_runs, [0.9, 0.1, 0.1, 0.1, 0.1]),
                                   (found_in_some_runs, [0.1, 0.1, 60.0, 0.1, 0.1]),
                                   (previous_item, [0.1, 0.9, 0.3, 0.4, 0.5])])
def test_segmented_body_assigning_what_had_no_value_before(f, xs):
    adtrans.check_gradient(f, xs, 0.8)


def found_in_a_block_in_a_loop(xs, w):
    h = w
    for x in xs:
        with adtrans.recomputed():
            h = math.sin(h * x)
            if h > 0.3:
                found = h * w
    return found + h


@pytest.mark.parametrize("xs", [[0.9, 0.1], [0.9, 1.3, 0.5, 0.2]])
def test_block_in_a_loop_that_may_leave_a_new_name_unassigned(xs):
    # The loop carries `found` from pass to pass (None before it), so a pass that leaves it
    # unassigned keeps the last value: it was a located error before loops did so.
    adtrans.check_gradient(found_in_a_block_in_a_loop, xs, 0.8)


def growing(x, w):
    ys = [x]
    for _ in range(3):
        with adtrans.recomputed():
            CALLS.append("block")
            ys.append(np.sin(ys[-1] * w))       # the pullback recomputes from ys as it was
    return np.sum(ys[-1] * ys[1])


def test_block_growing_a_list_leaves_the_kept_one_as_it_was():
    CALLS.clear()
    adtrans.gradient(growing, np.array([0.3, 0.5]), 0.7)
    assert CALLS.count("block") == 6
    adtrans.check_gradient(growing, np.array([0.3, 0.5]), 0.7)


def fractional_runs(xs, w):
    h = w
    for x in adtrans.segmented(xs, 2.5):
        CALLS.append("pass")
        h = math.sin(h * x)
    return h


def test_a_fractional_run_length_is_rounded_up():
    CALLS.clear()
    adtrans.gradient(fractional_runs, [0.1, 0.2, 0.3, 0.4, 0.5], 0.3)
    assert CALLS.count("pass") == 5 + 3      # runs of 3 and 2; the first recomputed
    with pytest.raises(ValueError, match="at least 1"):
        adtrans.segmented([1.0], math.nan)


def unused_block(x, w):
    with adtrans.recomputed():
        y = np.sin(x * w)       # noqa: F841
    return np.sum(x * w)


def test_an_unused_block_is_told_what_to_do():
    with pytest.raises(adtrans.DifferentiationError, match="remove the 'with adtrans.recomputed"):
        adtrans.gradient(unused_block, np.array([0.1]), 0.3)


def enumerates_a_segmented_loop(xs, w):
    h = w
    for t, x in enumerate(adtrans.segmented(xs, 2)):
        h = np.tanh(h * x) + t
    return np.sum(h)


def test_segmented_given_to_another_call_is_located_at_the_users_line():
    with pytest.raises(adtrans.DifferentiationError,
                       match=r"segmented\(\.\.\.\) given to another call") as info:
        adtrans.gradient(enumerates_a_segmented_loop, [0.5, 1.5, 2.0], 0.3)
    assert info.value.filename.endswith("test_checkpointing.py")
    assert info.value.lineno == enumerates_a_segmented_loop.__code__.co_firstlineno + 2
    assert "segmented(enumerate(xs), k)" in str(info.value)
