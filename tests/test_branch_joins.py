"""Where an ``if`` or a loop joins paths: variables a path leaves unassigned, closures made on one path.

Python raises UnboundLocalError, naming the variable, where a read finds it unassigned; the
generated code does the same on that path only (``assigned(y_1)``), and reads a name bound on
every path with no check. A closure made in one branch is read after the join with the values
its branch gave its variables, not rebound to a join the other branch never assigned.
"""

import numpy as np
import pytest

import adtrans
from structured_check import assert_gradient


def assigned_in_a_loop_pass_that_never_runs(xs, w):
    for x in xs:
        if x > 100.0:
            y = x * w
    return y


def assigned_in_some_pass(xs, w):
    for x in xs:
        if x > 0.0:
            y = x * w
    return y


def read_under_the_same_condition(x, c):
    if c > 0:
        y = x * 2.0
    z = x * 3.0
    if c > 0:
        z = z + y
    return z


def read_from_the_second_pass(xs, w):
    for i in range(len(xs)):
        if i > 0:
            s = s + xs[i] * w
        else:
            s = xs[i] * w
    return s


@pytest.mark.parametrize("entry", [adtrans.gradient, adtrans.value_with_gradient])
def test_a_loop_that_never_assigns_is_pythons_error(entry):
    with pytest.raises(UnboundLocalError, match="'y'"):
        entry(assigned_in_a_loop_pass_that_never_runs, [1.0, 2.0], 0.5, wrt=1)
    with pytest.raises(UnboundLocalError, match="'y'"):
        assigned_in_a_loop_pass_that_never_runs([1.0, 2.0], 0.5)


@pytest.mark.parametrize("f, args", [
    (assigned_in_some_pass, ([-1.0, 2.0, -3.0], 0.5)),
    (read_under_the_same_condition, (1.5, 1.0)),
    (read_under_the_same_condition, (1.5, -1.0)),
    (read_from_the_second_pass, ([1.0, 2.0, 3.0], 0.5)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_a_variable_bound_where_it_is_read_differentiates(f, args):
    assert_gradient(f, *args, wrt=(0,) if f is read_under_the_same_condition else (1,))


def test_a_name_bound_on_every_path_is_read_without_a_check():
    def both_branches(x):
        if x > 0.0:
            y = x * 2.0
        else:
            y = -x
        for _ in range(3):
            y = y * 1.5
        return y

    text = adtrans.generated_source(both_branches)
    assert "assigned(" not in text and "unassigned(" not in text


def test_the_check_reads_as_the_users_variable():
    def one_branch(x):
        if x > 10.0:
            y = x * 2.0
        return y

    text = adtrans.generated_source(one_branch)
    assert "y_1 = unassigned('y')" in text
    assert "y_2 = assigned(y_1)" in text
    assert adtrans.gradient(one_branch, 11.0) == 2.0


# -- A closure made on one path -------------------------------------------------------------------

def closure_or_a_numpy_function(x, slope=None):
    if slope is None:
        act = np.tanh
    else:
        k = slope * 0.5

        def act(t):
            return np.where(t > 0, t, k * t)
    return np.sum(act(x) ** 2)


def closure_read_after_a_later_assignment(x, c):
    if c > 0:
        k = x * 2.0

        def g(t):
            return k * t
        k = x * 5.0                  # g reads this k when it is called
    else:
        k = x

        def g(t):
            return t * 7.0
    return g(x) + k


def closure_made_before_the_branch(x, c):
    k = x * 2.0

    def g(t):
        return k * t
    if c > 0:
        k = x * 3.0
    return g(x)


def closure_of_one_branch_read_after_a_later_assignment(x, c):
    if c > 0:
        k = x * 2.0

        def g(t):
            return k * t
    k = x * 3.0
    return g(x)


def closure_read_after_each_of_two_assignments(x):
    k = x * 2.0

    def g(t):
        return k * t
    a = g(x)
    k = x * 3.0
    b = g(x)
    k = x * 5.0
    return a + b + g(x)


X = np.array([[0.5, -1.0], [2.0, -0.3]])


@pytest.mark.parametrize("f, args", [
    (closure_or_a_numpy_function, (X,)),
    (closure_or_a_numpy_function, (X, 0.2)),
    (closure_read_after_a_later_assignment, (1.3, 1.0)),
    (closure_read_after_a_later_assignment, (1.3, -1.0)),
    (closure_made_before_the_branch, (1.3, 1.0)),
    (closure_made_before_the_branch, (1.3, -1.0)),
    (closure_of_one_branch_read_after_a_later_assignment, (1.3, 1.0)),
    (closure_read_after_each_of_two_assignments, (1.3,)),
], ids=lambda v: getattr(v, "__name__", ""))
def test_closures_through_a_join(f, args):
    assert_gradient(f, *args, wrt=None if f is closure_or_a_numpy_function else (0,))


def test_a_closure_made_in_a_branch_is_not_rebound_after_it():
    text = adtrans.generated_source(closure_or_a_numpy_function, wrt=("x", "slope"))
    assert "rebound(" not in text


def test_a_stale_closure_is_rebound_in_its_own_branch():
    text = adtrans.generated_source(closure_read_after_a_later_assignment, wrt="x")
    branch, _, after = text.partition("    else:")
    assert "rebound(g, ('k',), k_1)" in branch
    assert "rebound(" not in after


def test_a_closure_of_one_branch_is_unassigned_on_the_other():
    with pytest.raises(UnboundLocalError, match="'g'"):
        adtrans.gradient(closure_of_one_branch_read_after_a_later_assignment, 1.3, -1.0, wrt=0)
