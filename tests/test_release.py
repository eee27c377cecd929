"""What the generated code keeps alive: nested single-use operations, released loop values.

A deep chain's memory is the values its pullback holds at once.  These tests
pin the generated code's shape (a tanh layer's forward on one line, its
pullback releasing each pass's values where they die) and the conditions that
keep it safe: a value read twice, kept by the pullback or computed on another
source line is not nested; a pullback that releases values can still be
called again.
"""

import textwrap

import numpy as np

import adtrans
from adtrans.release import release_dead
from gradcheck import tanh_chain_data


def tanh_chain(h, Ws, bs):
    for W, b in zip(Ws, bs):
        h = np.tanh(h @ W + b)
    return h


def data(layers=3, dtype=np.float64):
    return tanh_chain_data(layers, 4, dtype)


def body_of(text, header):
    """The lines of the block under the line containing `header`, dedented."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if header in line)
    depth = len(lines[start]) - len(lines[start].lstrip())
    block = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= depth:
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).splitlines()


def test_a_tanh_layer_is_one_forward_line_and_its_pullback_releases_each_pass():
    text = adtrans.generated_source(tanh_chain)
    forward, pullback = text.split("def pullback")
    assert [line for line in body_of(forward, "for index, (W, b) in")[1:] if line] == [
        "h_2 = in_place(np.tanh, in_place(operator.add, h_1 @ W, b))",
        "tape.append((h_2, b, h_1, W, index))",
        "h_1 = h_2",
    ]
    loop = body_of(pullback, "in replay(tape):")
    code = [line for line in loop if not line.startswith("#")]
    assert code[:2] == ["d_h_1_matmul_W_plus_b = tanh_cotangent(d_h_1, h_2)", "del d_h_1, h_2"]
    assert "del d_h_1_matmul_W_plus_b" in code
    # The pass's input too: the last pass would leave it bound after the loop, alive while
    # what follows runs (a recomputed segment's whole backward, in a segmented loop).
    assert code[-1] == "del d_h_1_matmul_W, h_1"
    # Nothing the caller holds anyway is released: weights, biases, the index.
    released = {name for line in code if line.startswith("del ") for name in line[4:].split(", ")}
    assert not released & {"W", "b", "index"}


def test_released_pullbacks_give_exact_gradients_and_can_be_called_twice():
    x, Ws, bs = data()
    value, pullback = adtrans.value_with_pullback(tanh_chain, x, Ws, bs)
    seed = np.ones_like(value)
    first = pullback(seed)
    second = pullback(seed)
    for a, b in zip(first, second):
        for p, q in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            np.testing.assert_array_equal(p, q)
    adtrans.check_gradient(lambda x, Ws, bs: np.sum(tanh_chain(x, Ws, bs)), x, Ws, bs)


def test_float32_chain_matches_a_handwritten_backward_bit_for_bit():
    x, Ws, bs = data(dtype=np.float32)
    _, (dWs, dbs) = adtrans.value_with_gradient(
        lambda x, Ws, bs: np.sum(tanh_chain(x, Ws, bs)), x, Ws, bs, wrt=("Ws", "bs"))
    hs = [x]
    for W, b in zip(Ws, bs):
        hs.append(np.tanh(hs[-1] @ W + b))
    dh = np.ones_like(hs[-1])
    for i in range(len(Ws) - 1, -1, -1):
        dz = dh * (1 - hs[i + 1] * hs[i + 1])
        np.testing.assert_array_equal(dWs[i], hs[i].T @ dz)
        np.testing.assert_array_equal(dbs[i], dz.sum(axis=0))
        dh = dz @ Ws[i].T
    assert all(g.dtype == np.float32 for g in dWs + dbs)


def twice_read(x, w):
    t = x * w
    return np.sum(np.sin(t) + t)


def kept(x, w):
    t = x @ w
    return np.sum(np.tanh(t) * t)


def two_lines(x):
    t = np.sin(x)
    return np.sum(np.cos(t))


def test_what_is_not_nested():
    # Read twice: written once, by name.
    forward = adtrans.generated_source(twice_read).split("def pullback")[0]
    assert "    t = x * w\n" in forward and "np.sin(t) + t" in forward
    # Kept by the pullback (tanh's result, and t for the product's rule).
    forward = adtrans.generated_source(kept).split("def pullback")[0]
    assert "np.tanh(x @ w)" not in forward
    # Another source line: the user's name stays.
    forward = adtrans.generated_source(two_lines).split("def pullback")[0]
    assert "t = np.sin(x)" in forward
    for f, args in ((twice_read, (np.arange(3.0), 0.5)), (kept, (np.eye(2), np.ones((2, 2)))),
                    (two_lines, (np.arange(3.0),))):
        adtrans.check_gradient(f, *args)


def test_release_keeps_a_value_a_copy_still_reads_and_one_the_next_pass_reads():
    lines = [
        "d_a = d_result",
        "for v, w in replay(tape):",
        "    d_b = d_a",
        "    d_c = d_b * v",
        "    d_a = d_c * w",
        "    d_keep = d_c + 1",
        "    total = add_item(total, 0, d_keep)",
        "return d_a",
    ]
    out = release_dead(lines, "d_result", lambda name: name.startswith("d_") and name != "d_result"
                       or name == "v", keeps={"add_item"})
    assert out == [
        "d_a = d_result",
        "for v, w in replay(tape):",
        "    d_b = d_a",
        "    d_c = d_b * v",
        # d_a died at the copy, d_b holds its value: both go once d_b is read.
        "    del d_a, d_b, v",
        "    d_a = d_c * w",
        "    d_keep = d_c + 1",
        # d_keep lives on in `total`: deleting the name would free nothing.
        "    total = add_item(total, 0, d_keep)",
        # d_c would otherwise live into the next pass's first allocation.
        "    del d_c",
        "return d_a",
    ]


def test_release_leaves_constructs_it_does_not_model_alone():
    lines = ["d_a = d_result * 2", "while d_a > 1:", "    d_b = d_a / 2", "    d_a = d_b", "return d_a"]
    assert release_dead(lines, "d_result", lambda name: True) == lines


def doubled_exp_sum(x):
    y = np.exp(x)
    return np.sum(y * 2.0)


def test_a_value_read_only_for_its_shape_is_kept_as_a_stand_in():
    source = adtrans.generated_source(doubled_exp_sum)
    assert "y_times_2 = shape_only(y_times_2)" in source
    x = np.linspace(-1.0, 1.0, 10000)      # 80 KB: worth a stand-in (see the test below)
    from adtrans import api

    adtrans.value_with_pullback(doubled_exp_sum, x)
    value, pullback = api._plan_for(doubled_exp_sum, (x,), {}, None).derived(x)   # the generated pair
    held = [c.cell_contents for c in pullback.__closure__ if isinstance(c.cell_contents, np.ndarray)]
    full = [a for a in held if a.shape == x.shape and a.strides != (0,)]
    assert len(full) == 1 and np.array_equal(full[0], np.exp(x))     # y, which exp's pullback needs
    np.testing.assert_allclose(pullback(1.0), 2.0 * np.exp(x))
    adtrans.check_gradient(doubled_exp_sum, x[:5])


def test_shape_only_keeps_shape_and_dtype_and_nothing_else():
    from adtrans.rules.support import shape_only, sum_cotangent, unbroadcast

    a = np.ones((3000, 8), dtype=np.float32)
    stand_in = shape_only(a)
    assert stand_in.shape == a.shape and stand_in.dtype == a.dtype and stand_in.strides == (0, 0)
    assert sum_cotangent(np.float32(2.0), stand_in).dtype == np.float32
    np.testing.assert_array_equal(unbroadcast(np.ones((3000, 8)), stand_in), np.ones((3000, 8)))
    assert shape_only(2.5) == 2.5 and shape_only(np.ones(1)).strides == (8,)
    # A small array is kept as it is: making the stand-in costs more than its memory is worth.
    small = np.ones((300, 4), dtype=np.float32)
    assert shape_only(small) is small


def summed_over(W, xs):
    s = 0.0
    for x in xs:
        s = s + np.sum(np.tanh(W * x))
    return s


def test_loop_accumulation_adds_into_its_own_zeros_and_nothing_else():
    # d_W starts as zeros made by the pullback, so each pass adds into it (add_into: in place
    # for an array); a gradient already handed out is never touched by a second call. W may be
    # a list (an x an array, W * x takes it; or an x an int repeating W), whose cotangents '+'
    # would concatenate: so add_into, not 'd_W += ...'.
    for wrt in (("W", "xs"), ("W",)):
        assert "d_W = add_into(d_W, " in adtrans.generated_source(summed_over, wrt=wrt)
    W, xs = np.linspace(-1.0, 1.0, 6), [0.3, -0.7, 1.1]
    value, back = adtrans.value_with_pullback(summed_over, W, xs, wrt="W")
    first = back(1.0)
    kept = first.copy()
    second = back(1.0)
    assert second is not first
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_array_equal(second, kept)
    expected = sum(x * (1 - np.tanh(W * x) ** 2) for x in xs)
    np.testing.assert_allclose(first, expected, rtol=1e-12)
    adtrans.check_gradient(summed_over, W, xs, wrt="W")


def tanh_of_product(x):
    return np.sum(np.tanh(x) * x)


def test_a_pullback_called_again_reads_the_tanh_it_kept():
    # tanh_cotangent may write into y when one local holds it; a closure's cell counts the same,
    # so a value the pullback closure keeps takes the variant that leaves it as it is.
    x = np.array([0.2, 0.4, -0.7])
    _, pullback = adtrans.value_with_pullback(tanh_of_product, x)
    first = pullback(1.0)
    np.testing.assert_array_equal(pullback(1.0), first)
    np.testing.assert_allclose(first, np.tanh(x) + x * (1 - np.tanh(x) ** 2), rtol=1e-14)
    assert "tanh_cotangent_of_kept(d_tanh_x, tanh_x)" in adtrans.generated_source(tanh_of_product)
