"""A cotangent handed over from one generated pullback to the next, so the callee can free it.

A caller's local holds a call's argument while the callee runs: a checkpointed
segment's incoming cotangent would live through the whole recomputation and
backward of the segment. Where the caller reads it no more, generated code
boxes it (``d = hand_over(d)``) and a generated pullback that releases its
parameter takes it out (``d = take_over(d)``). These tests pin that code,
prove the value is freed (a probe VJP holds weak references), and check the
conditions that keep it safe: only generated pullbacks receive a box, never a
user's derivative; a pullback stays callable again; scalar code is unchanged;
the gradients are the same bits as without checkpointing.
"""

import math
import weakref

import numpy as np
import pytest

import adtrans
from adtrans import api, tangents
from gradcheck import tanh_chain_data


def segment(h, Ws, bs):
    for W, b in zip(Ws, bs):
        h = np.tanh(h @ W + b)
    return h


segment_ckpt = adtrans.checkpointed(segment)


def chain_every_two(x, Ws, bs):
    h = x
    for k in range(0, len(Ws), 2):
        h = segment_ckpt(h, Ws[k:k + 2], bs[k:k + 2])
    return np.sum(h)


def chain_plain(x, Ws, bs):
    h = x
    for W, b in zip(Ws, bs):
        h = np.tanh(h @ W + b)
    return np.sum(h)


def data(layers=6, dtype=np.float32):
    return tanh_chain_data(layers, 8, dtype)


def code_lines(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_recompute_hands_its_cotangent_over_and_the_segment_takes_it():
    caller = code_lines(adtrans.generated_source(chain_every_two, wrt=("Ws", "bs")))
    call = caller.index("d_h_2_arguments = segment_value_with_pullback(h_1, Ws_item, bs_item)[1](d_h_1)")
    assert caller[call - 1] == "d_h_1 = hand_over(d_h_1)"
    callee = code_lines(adtrans.generated_source(segment, wrt=("h", "Ws", "bs")))
    start = callee.index("def pullback(d_h_3):")
    assert callee[start + 1:start + 3] == ["d_h_3 = take_over(d_h_3)", "d_h_1 = d_h_3"]
    assert "del d_h_3" in callee and "del d_h_1, h_2" in callee
    # The fused function `gradient` runs hands it over too.
    generated, _ = api._generated(chain_every_two, ("Ws", "bs"))
    fused = code_lines(generated.gradient_text)
    call = fused.index("d_h_2_arguments = segment_value_with_pullback(h_1, Ws_item, bs_item)[1](d_h_2)")
    assert fused[call - 2:call] == ["del d_h_1", "d_h_2 = hand_over(d_h_2)"]


def test_gradients_are_the_same_bits_with_and_without_checkpointing():
    for dtype in (np.float32, np.float64):
        x, Ws, bs = data(dtype=dtype)
        value, (dWs, dbs) = adtrans.value_with_gradient(chain_every_two, x, Ws, bs, wrt=("Ws", "bs"))
        plain_value, (plain_dWs, plain_dbs) = adtrans.value_with_gradient(
            chain_plain, x, Ws, bs, wrt=("Ws", "bs"))
        assert value == plain_value
        for got, want in zip(dWs + dbs, plain_dWs + plain_dbs):
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, want)
    adtrans.check_gradient(chain_every_two, *data(dtype=np.float64), wrt=("x", "Ws", "bs"))


def test_a_pullback_hands_over_each_time_it_is_called():
    x, Ws, bs = data(dtype=np.float64)

    def chain(x, Ws, bs):       # returns the activation: the user's cotangent comes in
        h = x
        for k in range(0, len(Ws), 2):
            h = segment_ckpt(h, Ws[k:k + 2], bs[k:k + 2])
        return h

    value, pullback = adtrans.value_with_pullback(chain, x, Ws, bs, wrt=("x", "Ws"))
    d = np.random.default_rng(1).standard_normal(value.shape)
    before = d.copy()
    first = pullback(d)
    second = pullback(d)
    np.testing.assert_array_equal(d, before)            # the caller's cotangent is left alone
    np.testing.assert_array_equal(first[0], second[0])
    for a, b in zip(first[1], second[1]):
        np.testing.assert_array_equal(a, b)
    # The segment's own pullback, called by a user, takes a plain array as it is.
    _, segment_pullback = adtrans.value_with_pullback(segment, x, Ws[:2], bs[:2])
    np.testing.assert_array_equal(segment_pullback(d)[0], segment_pullback(d)[0])


# A probe: the identity, with a derivative that remembers (weakly) every cotangent it got and
# whether each earlier one was still alive when the next came.
received = []
alive = []


def probe(h):
    return h


@adtrans.derivative(of=probe)
def probe_vjp(h):
    def back(d):
        alive.append([ref() is not None for ref in received])
        received.append(weakref.ref(d))
        return d * 1.0
    return h, back


def probed_segment(h, Ws):
    for W in Ws:
        h = probe(np.tanh(h @ W))
    return h


probed_ckpt = adtrans.checkpointed(probed_segment)


def probed_chain(x, Ws):
    h = x
    for k in range(0, len(Ws), 2):
        h = probed_ckpt(h, Ws[k:k + 2])
    return np.sum(h)


def test_the_segments_incoming_cotangent_is_freed_during_its_backward():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 4))
    Ws = [rng.standard_normal((4, 4)) * 0.5 for _ in range(6)]
    received.clear()
    alive.clear()
    adtrans.gradient(probed_chain, x, Ws, wrt="Ws")
    # Each segment's pullback first probes the cotangent its caller handed over, then the one
    # of its first layer: by then nobody holds the first any more.
    assert alive == [[False] * i for i in range(6)]
    received.clear()
    alive.clear()
    _, pullback = adtrans.value_with_pullback(probed_chain, x, Ws, wrt="Ws")
    pullback(1.0)
    assert alive == [[False] * i for i in range(6)]
    # Control: a user calling the segment's pullback holds the cotangent, and the probe sees it.
    received.clear()
    alive.clear()
    value, pullback = adtrans.value_with_pullback(probed_segment, x, Ws[:2], wrt="h")
    d = np.ones_like(value)
    pullback(d)
    assert alive == [[], [True]]


user_saw = []


def user(h):
    return np.cos(h)


@adtrans.derivative(of=user)
def user_vjp(h):
    def back(d):
        user_saw.append(type(d))
        return -d * np.sin(h)
    return np.cos(h), back


def inner(h):
    for _ in range(2):
        h = np.sin(h)
    return h


def branches(x, flags):
    h = x
    for flag in flags:
        if flag:
            h = inner(h)
        else:
            h = user(h)
    return np.sum(h)


def test_a_users_derivative_never_receives_a_box():
    text = adtrans.generated_source(branches, wrt="x")
    # The generated callee's pullback gets the cotangent handed over; the user's VJP does not.
    assert "d_h_1 = hand_over(d_h_1)\n                d_h_1 = h_2_pullback(d_h_1)" in text
    assert "d_h_1 = h_3_pullback(d_h_1)" in text and text.count("hand_over(") == 1
    x = np.linspace(0.0, 1.0, 5)
    user_saw.clear()
    adtrans.gradient(branches, x, [1, 0, 1, 0], wrt="x")
    assert user_saw == [np.ndarray, np.ndarray]
    adtrans.check_gradient(branches, x, [1, 0, 1, 0], wrt="x")

    def local_inner(h):         # a closure is dispatched at run time: nothing is handed over
        return inner(h)

    def dispatched(x):
        return np.sum(local_inner(x))

    assert "hand_over(" not in adtrans.generated_source(dispatched)
    np.testing.assert_allclose(adtrans.gradient(dispatched, x), adtrans.gradient(branches, x, [1], wrt="x"))


def test_take_over_empties_the_box_once():
    d = np.ones(3)
    box = tangents.hand_over(d)
    assert tangents.take_over(box) is d
    with pytest.raises(RuntimeError, match="read twice"):
        tangents.take_over(box)
    assert tangents.take_over(d) is d and tangents.take_over(2.0) == 2.0


def test_scalar_pullbacks_take_nothing_over():
    def powers(x):
        for _ in range(3):
            x = math.sin(x) * x
        return x

    floats, _ = api._generated(powers, ("x",), "reverse", True, frozenset({"x"}))
    assert "take_over(" not in floats.text and "hand_over(" not in floats.gradient_text
    assert not floats.takes_over and "take_over" not in floats.cells
    assert adtrans.gradient(powers, 0.5) == pytest.approx(
        (adtrans.gradient(powers, 0.5 + 1e-7) + adtrans.gradient(powers, 0.5 - 1e-7)) / 2, rel=1e-5)
