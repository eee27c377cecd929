"""Assignment to items and fields: tuple targets, nested targets, a global's counter.

Each program is checked against central finite differences (``assert_gradient``) and its
value against the plain run; some pin what the generated code does.
"""

from dataclasses import dataclass

import numpy as np
import pytest

import adtrans
from structured_check import assert_gradient


def unpack_into_items_in_order(x):
    b = x.copy()
    i = 0
    pair = (b[2] * 2.0, 1)
    b[i], i = pair                  # b[0] is set, then i: Python binds from left to right
    b[i] = b[i] * 3.0
    return np.sum(b * np.arange(1.0, 4.0))


def index_assigned_first(x):
    b = x.copy()
    i = 1
    i, b[i] = 0, x[0] * 7.0         # b[0]: the new i
    return np.sum(b * np.arange(1.0, 4.0))


def nested_tuple_with_an_item(x):
    b = [x[0], x[1]]
    (a, b[0]), c = (x[2], x[1] * 2.0), x[0]
    return a * b[0] * c + b[1]


def nested_items_swapped_in_a_loop(x):
    m = [[x[0], x[1]], [x[2], 1.0]]
    for _ in range(3):
        m[0][1], m[1][0] = m[1][0], m[0][1] * 2.0
    return m[0][1] * 3.0 + m[1][0]


def rows_updated_in_a_branch(A, x):
    B = A.copy()
    for i in range(2):
        if x > 0.0:
            B[i][1] *= x
        else:
            B[i][0] = x
    return np.sum(B * B)


@dataclass
class State:
    pos: np.ndarray
    vel: float


def fields_swapped_and_an_item_of_a_field(s, x):
    s = State(s.pos.copy(), s.vel)
    s.pos[1] += x * s.vel
    s.pos[0], s.vel = s.vel, s.pos[0] * x
    return np.sum(s.pos ** 2) + s.vel


@pytest.mark.parametrize("f, args", [
    (unpack_into_items_in_order, (np.array([1.0, 2.0, 3.0]),)),
    (index_assigned_first, (np.array([1.0, 2.0, 3.0]),)),
    (nested_tuple_with_an_item, (np.array([1.0, 2.0, 3.0]),)),
    (nested_items_swapped_in_a_loop, (np.array([1.0, 2.0, 3.0]),)),
    (rows_updated_in_a_branch, (np.array([[1.0, 2.0], [3.0, 4.0]]), 0.7)),
    (rows_updated_in_a_branch, (np.array([[1.0, 2.0], [3.0, 4.0]]), -0.7)),
    (fields_swapped_and_an_item_of_a_field, (State(np.array([1.0, -2.0]), 0.5), 1.3)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_item_and_field_targets(f, args):
    assert_gradient(f, *args)


def test_a_nested_item_is_set_by_value_all_the_way_to_the_variable():
    def set_nested(x):
        m = [[0.0, 1.0], [2.0, 3.0]]
        m[0][1] += x
        return m[0][1] * m[1][1]

    text = adtrans.generated_source(set_nested)
    assert "m_zero_updated = with_item(m_zero, 1, item_plus_x)" in text
    assert "m_1 = with_item(m, 0, m_zero_updated)" in text
    assert adtrans.gradient(set_nested, 0.4) == 3.0


def test_a_swap_evaluates_the_right_side_once_before_any_target():
    def swap(x):
        b = x.copy()
        b[0], b[2] = b[2], b[0]
        return np.sum(b * np.arange(1.0, 4.0))

    text = adtrans.generated_source(swap)
    assert text.index("b[2]") < text.index("with_item")
    np.testing.assert_array_equal(adtrans.gradient(swap, np.array([1.0, 2.0, 3.0])), [3.0, 2.0, 1.0])


COUNTS = {"calls": 0}


def counted(x):
    COUNTS["calls"] += 1
    return np.sum(x ** 2)


def test_a_global_counter_runs_as_written_once_per_forward_call():
    before = COUNTS["calls"]
    value, pull = adtrans.value_with_pullback(counted, np.array([1.0, 2.0]))
    pull(1.0)
    pull(1.0)
    assert COUNTS["calls"] == before + 1
    assert 'COUNTS["calls"] += 1' in adtrans.generated_source(counted).replace("'", '"')


def test_a_global_container_augmented_by_a_local_is_a_located_error():
    def leaks(x):
        COUNTS["calls"] += x
        return x * 2.0

    with pytest.raises(adtrans.DifferentiationError, match="not a local variable") as info:
        adtrans.gradient(leaks, 1.5)
    assert info.value.lineno == leaks.__code__.co_firstlineno + 1
