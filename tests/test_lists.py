"""Growing lists in differentiated code, and what changes a container in place.

``xs.append(v)`` and ``xs.extend(vs)`` on a list the function made run as
``xs = appended(xs, v)`` / ``xs = extended(xs, vs)``: by value, like
``x[i] = v`` (`with_item`), so the pullback sees each earlier list as it
was. Other in-place changes given differentiated values (``xs.sort()``,
``obj.items.append(v)``, appending to a parameter's list) are located errors:
their gradient would otherwise be silently wrong.
"""

import inspect
import math
import textwrap

import numpy as np
import pytest

import adtrans


def summed(x, ws):
    out = []
    for w in ws:
        out.append(w * x)
    return sum(out)


def rnn(h, W, xs):
    hs = []
    for x in xs:
        h = np.tanh(h @ W + x)
        hs.append(h)
    return np.sum(np.stack(hs) ** 2)


def extend_then_read(x, y):
    out = [x]
    out.extend([x * y, math.sin(y)])
    out.extend((y,))
    return out[0] * out[1] + out[2] * out[3] + len(out)


def reads_while_growing(x, n):
    out = [x]
    for i in range(n):
        out.append(sum(out) * x)
    return out[-1]


def grows_in_a_branch(x, y):
    out = []
    if x > 0:
        out.append(x * y)
    else:
        out.append(y)
    out.append(x)
    return out[0] * out[-1]


def test_append_in_a_loop():
    assert adtrans.gradient(summed, 2.0, [1.0, 2.0]) == (3.0, [2.0, 2.0])
    adtrans.check_gradient(summed, 2.0, [1.0, 2.0])


def test_an_rnn_collecting_its_states():
    rng = np.random.default_rng(0)
    h, W, xs = rng.normal(size=(2, 3)), rng.normal(size=(3, 3)), rng.normal(size=(4, 2, 3))
    adtrans.check_gradient(rnn, h, W, xs)


@pytest.mark.parametrize("f,args,wrt", [
    (extend_then_read, (2.0, 3.0), None), (reads_while_growing, (1.5, 3), "x"),
    (grows_in_a_branch, (1.5, -0.5), None), (grows_in_a_branch, (-1.5, -0.5), None)])
def test_extend_reading_and_branches(f, args, wrt):
    adtrans.check_gradient(f, *args, wrt=wrt)


def test_the_generated_code_grows_the_list_by_value():
    text = adtrans.generated_source(rnn)
    assert "hs_2 = appended(hs_1, h_2)" in text
    assert "d_hs_1 = appended_head(d_hs_2)" in text
    assert "hs_1" not in text.split("tape.append(")[1].split(")")[0]     # the tape keeps no list


def sorts(x, y):
    xs = [x, y]
    xs.sort()
    return xs[0] * 2.0


class Box:
    def __init__(self):
        self.items = []


def into_attribute(x, box):
    box.items.append(x * 2.0)
    return sum(box.items)


def into_parameter(x, log):
    log.append(x)
    return x * 2.0


def logs_a_constant(x, log):
    log.append(1.0)
    return x * 2.0


@pytest.mark.parametrize("f,args,line,what", [
    (sorts, (2.0, 1.0), 2, "xs.sort"), (into_attribute, (2.0, Box()), 1, "box.items.append"),
    (into_parameter, (2.0, []), 1, "log.append")])
def test_changing_a_container_in_place_is_a_located_error(f, args, line, what):
    with pytest.raises(adtrans.DifferentiationError, match=f"'{what}\\(...\\)' changes a container") as info:
        adtrans.gradient(f, *args, wrt=0)
    assert info.value.lineno == f.__code__.co_firstlineno + line


def test_a_parameter_list_still_changes_when_nothing_differentiated_goes_in():
    log = []
    assert adtrans.gradient(logs_a_constant, 2.0, log, wrt=0) == 2.0
    assert log == [1.0]


def concatenates(x, y):
    t = [x, y] + [x]
    return t[0] * t[2] + t[1]


def test_concatenating_lists_differentiates():
    # Once a located error (see tests/test_sequences.py): each list gets its run of the cotangent.
    assert adtrans.gradient(concatenates, 2.0, 3.0) == (4.0, 1.0)
    adtrans.check_gradient(concatenates, 2.0, 3.0)


# -- comprehensions: the loops they mean, growing new lists

def list_comprehension(x, ws):
    return sum([w * x for w in ws])


def generator_expression(x, ws):
    return sum(w * math.sin(x) for w in ws)


def nested_with_conditions(x, ws):
    return sum(a * b * x for a in ws for b in ws if a > 0 if b != a)


def zipped(xs, ws):
    return sum(x * w for x, w in zip(xs, ws))


def stacked(h, Ws):
    return np.sum(np.stack([np.tanh(h @ W) for W in Ws]))


def dict_comprehension(x, ws):
    d = {name: w * x for name, w in zip(("a", "b"), ws)}
    return d["a"] + d["b"] * x


def shadowing(x, ws):
    w = 3.0
    s = sum([w * x for w in ws])
    return s + w * x          # the comprehension's w is its own: this is 3.0


def first_in_reads_the_outer_name(x):
    x2 = [x, 2.0 * x]
    return sum(x2 * x2 for x2 in x2)


@pytest.mark.parametrize("f,args", [
    (list_comprehension, (2.0, [1.0, -2.0])), (generator_expression, (0.5, [1.0, 2.0])),
    (nested_with_conditions, (0.5, [1.0, -2.0, 3.0])), (zipped, ([1.0, 2.0], [3.0, 4.0])),
    (dict_comprehension, (2.0, [1.0, -2.0])), (shadowing, (2.0, [1.0, 4.0])),
    (first_in_reads_the_outer_name, (1.5,)),
])
def test_comprehensions(f, args):
    assert adtrans.value_with_gradient(f, *args)[0] == f(*args)
    adtrans.check_gradient(f, *args)


def test_a_comprehension_of_arrays():
    rng = np.random.default_rng(1)
    h, Ws = rng.normal(size=(2, 3)), [rng.normal(size=(3, 3)) for _ in range(3)]
    adtrans.check_gradient(stacked, h, Ws)
    text = adtrans.generated_source(stacked)
    assert "items_2 = appended(items_1, tanh_h_matmul_W_1)" in text


def test_a_comprehension_of_constants_stays_as_written():
    def f(x):
        return x * sum([i * i for i in range(4)])

    assert "[i * i for i in range(4)]" in adtrans.generated_source(f)
    assert adtrans.gradient(f, 2.0) == 14.0


def int_inside(x, ws):
    return sum([w * float(int(x * w)) for w in ws])


def test_an_error_inside_a_comprehension_points_at_its_own_column():
    with pytest.raises(adtrans.DifferentiationError, match="expression is not differentiable") as info:
        adtrans.gradient(int_inside, 1.5, [1.0, 2.0])
    line = inspect.getsource(int_inside).splitlines()[1]
    assert info.value.lineno == int_inside.__code__.co_firstlineno + 1
    assert info.value.col == line.index("int(") + 1


async def async_comprehension(x, ws):
    return sum([w * x async for w in ws])


def test_an_asynchronous_comprehension_is_a_located_error():
    with pytest.raises(adtrans.DifferentiationError, match="an asynchronous comprehension is not supported") as info:
        adtrans.generated_source(async_comprehension)
    assert info.value.lineno == async_comprehension.__code__.co_firstlineno + 1
