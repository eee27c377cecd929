"""Copy propagation (adtrans/copyprop.py): source in, source out; then the effect on real pullbacks.

The pass only renames: every object the generated code makes is the same
object bound at the same moment.  So besides pinning its output we check
that optimised and unoptimised code give bit-for-bit the same gradients,
that a caller's cotangent is never written into, and finite differences.
"""

import math
import textwrap

import numpy as np
import pytest

import adtrans
from adtrans import api, reverse
from adtrans.copyprop import propagate_copies


def optimised(source, keep=()):
    return propagate_copies(textwrap.dedent(source), keep, generated=("pullback",))


def unchanged(source, keep=()):
    source = textwrap.dedent(source)
    return propagate_copies(source, keep, generated=("pullback",)) == source


# -- straight-line code

def test_a_read_of_a_copy_reads_its_source_and_the_copy_goes():
    assert optimised("""\
        def pullback(d_result):
            d_sin_x = d_result
            d_x = d_sin_x * cos_x
            return d_x
        """) == textwrap.dedent("""\
        def pullback(d_result):
            d_x = d_result * cos_x
            return d_x
        """)


def test_chains_of_copies_collapse():
    assert optimised("""\
        def f(x0):
            x = x0
            x_1 = x
            x_2 = x_1
            return x_2 * 2.0
        """) == textwrap.dedent("""\
        def f(x0):
            return x0 * 2.0
        """)


def test_a_copy_whose_source_is_rebound_before_a_read_stays():
    assert unchanged("""\
        def f(x):
            y = x
            x = x + 1.0
            return y * x
        """)


def test_a_copy_stays_whole_when_only_some_reads_could_take_its_source():
    # The first read could read x, the second could not: renaming one of two reads would
    # leave the copy and give the reader two names for one value.
    assert unchanged("""\
        def f(x):
            y = x
            a = y * 2.0
            x = a + 1.0
            return y * x
        """)


def test_an_augmented_assignment_to_a_copy_keeps_the_copy():
    # ``d += g`` adds in place into an array: it must stay an update of ``d``.
    assert unchanged("""\
        def pullback(d_result, g):
            d = d_result
            d += g
            return d
        """)


def test_a_copy_that_is_already_true_is_dropped():
    assert optimised("""\
        def f(a, n):
            b = a * 2.0
            c = b
            b = c
            return b + c
        """) == textwrap.dedent("""\
        def f(a, n):
            b = a * 2.0
            return b + b
        """)


def test_a_temporary_copied_once_takes_the_name_it_is_copied_to():
    # (A copy whose reads can all take its source is propagated instead: here x is loop-carried.)
    assert optimised("""\
        def f(x, n):
            for i in range(n):
                x_2 = x * 2.0
                x = x_2
            return x
        """) == textwrap.dedent("""\
        def f(x, n):
            for i in range(n):
                x = x * 2.0
            return x
        """)


def test_no_renaming_across_a_read_of_the_target():
    assert unchanged("""\
        def f(x, tape, n):
            for i in range(n):
                v_2 = x + 1.0
                tape.append(x)
                x = v_2
            return x, tape
        """)


def test_names_to_keep_are_not_propagated_away_and_temporaries_take_them():
    assert optimised("""\
        def pullback(d_result):
            d_y = d_result * 2.0
            d_x = d_y
            d_x0 = d_x
            return d_x0
        """, keep={"d_x0"}) == textwrap.dedent("""\
        def pullback(d_result):
            d_x0 = d_result * 2.0
            return d_x0
        """)
    assert unchanged("""\
        def pullback(d_result, n):
            d_x_1 = d_result
            for i in range(n):
                d_x_1 = d_x_1 * 2.0
            d_x0 = d_x_1
            return d_x0
        """, keep={"d_x0"})


def test_names_are_rewritten_at_their_byte_positions():
    assert optimised("""\
        def f(x):
            größe = x
            return ("ü", größe, 'é' + str(größe))
        """) == textwrap.dedent("""\
        def f(x):
            return ("ü", x, 'é' + str(x))
        """)


# -- loops

def test_a_copy_before_a_loop_reaches_into_it_when_nothing_in_the_loop_rebinds_its_names():
    assert optimised("""\
        def f(x, n):
            y = x
            s = 0.0
            for i in range(n):
                s = s + y
            return s
        """) == textwrap.dedent("""\
        def f(x, n):
            s = 0.0
            for i in range(n):
                s = s + x
            return s
        """)


def test_a_copy_before_a_loop_stays_when_the_loop_rebinds_its_source():
    assert unchanged("""\
        def f(x, n):
            y = x
            for i in range(n):
                t = y * 2.0
                x = x + t
            return x
        """)


def test_a_loop_carried_copy_stays():
    assert unchanged("""\
        def f(x, n):
            y = x
            for i in range(n):
                y = y * 2.0
            return y
        """)
    assert unchanged("""\
        def f(x, n):
            y = x
            while y < n:
                y = y * 2.0
            return y
        """)


def test_copies_inside_a_loop_reach_to_where_their_names_are_rebound():
    # The header copies of Euler's pullback: d_v_2 is read once before d_v_1 is re-bound.
    assert optimised("""\
        def pullback(d_x_3, tape, dt, c):
            d_x_1 = d_x_3
            d_c = 0.0
            d_v_1 = 0.0
            for v_1 in tape:
                d_v_2 = d_v_1
                d_x_2 = d_x_1
                d_v_1 = d_v_2
                d_dt_times_a = d_v_2
                d_a = d_dt_times_a * dt
                d_x_1 = d_x_2
                d_dt_times_v_1 = d_x_2
                d_v_1 = d_v_1 + d_dt_times_v_1 * dt
                d_neg_x_1 = d_a
                d_c_times_v_1 = -d_a
                d_c = d_c + d_c_times_v_1 * v_1
                d_v_1 = d_v_1 + d_c_times_v_1 * c
                d_x_1 = d_x_1 + -d_neg_x_1
            return d_x_1, d_v_1, d_c
        """) == textwrap.dedent("""\
        def pullback(d_x_3, tape, dt, c):
            d_x_1 = d_x_3
            d_c = 0.0
            d_v_1 = 0.0
            for v_1 in tape:
                d_a = d_v_1 * dt
                d_v_1 = d_v_1 + d_x_1 * dt
                d_c_times_v_1 = -d_a
                d_c = d_c + d_c_times_v_1 * v_1
                d_v_1 = d_v_1 + d_c_times_v_1 * c
                d_x_1 = d_x_1 + -d_a
            return d_x_1, d_v_1, d_c
        """)


def test_a_copy_read_after_its_source_changes_in_the_loop_stays():
    assert unchanged("""\
        def f(d, xs):
            for x in xs:
                d_2 = d
                d = d_2 * x
                e = d_2 + 1.0
            return d, e
        """)


def test_a_copy_in_a_loop_does_not_reach_past_a_break_or_continue_path():
    assert unchanged("""\
        def f(x, xs):
            y = x
            for t in xs:
                if t > 0:
                    continue
                y = t
            return y
        """)
    assert unchanged("""\
        def f(x, xs):
            y = x
            while True:
                if x > 3:
                    break
                y = x
                x = x + 1.0
            return y
        """)


def test_a_loop_left_empty_gets_pass():
    assert optimised("""\
        def f(x, xs):
            s = x
            for t in xs:
                u = t
            return s
        """) == textwrap.dedent("""\
        def f(x, xs):
            for t in xs:
                pass
            return x
        """)


# -- branches

def test_copies_joined_from_two_branches_stay_and_a_branch_temporary_takes_the_joined_name():
    assert optimised("""\
        def f(x, skipped):
            if x > 0:
                skipped_1 = True
                skipped_2 = skipped_1
            else:
                skipped_2 = skipped
            return not skipped_2
        """) == textwrap.dedent("""\
        def f(x, skipped):
            if x > 0:
                skipped_2 = True
            else:
                skipped_2 = skipped
            return not skipped_2
        """)


def test_a_copy_read_only_in_its_branch_goes_and_an_emptied_else_goes_too():
    assert optimised("""\
        def f(x, d):
            if x > 0:
                e = d
                y = e * 2.0
            else:
                # a comment about the copy
                z = d
            return x
        """) == textwrap.dedent("""\
        def f(x, d):
            if x > 0:
                y = d * 2.0
            return x
        """)


# -- closures: the pullback reads the forward's names when it runs

def test_a_nested_function_reads_the_source_of_a_top_level_copy():
    assert optimised("""\
        def f_value_with_pullback(x):
            y = x
            result = y * y

            def pullback(d_result):
                return d_result * (2 * y)
            return result, pullback
        """) == textwrap.dedent("""\
        def f_value_with_pullback(x):
            result = x * x

            def pullback(d_result):
                return d_result * (2 * x)
            return result, pullback
        """)


def test_a_nested_function_that_binds_the_source_itself_keeps_the_copy():
    # The replay loop's target v_1 is a local of the pullback, not the forward's v_1.
    assert unchanged("""\
        def f_value_with_pullback(v0, n):
            v_1 = v0
            tape = []
            for i in range(n):
                tape.append(v_1)
                v_1 = v_1 * 2.0
            v_3 = v_1

            def pullback(d_v_3):
                d_v_1 = zeros_like(v_3)
                for v_1 in reversed(tape):
                    d_v_1 = d_v_1 + d_v_3 * v_1
                return d_v_1
            return v_3, pullback
        """)


def test_a_copy_in_a_loop_or_with_its_source_rebound_later_is_not_read_through_a_closure():
    assert unchanged("""\
        def f_value_with_pullback(x, n):
            y = x
            x = x * 2.0

            def pullback(d):
                return d * y
            return x, pullback
        """)
    assert unchanged("""\
        def f_value_with_pullback(x, n):
            for i in range(n):
                y = x

            def pullback(d):
                return d * y
            return x, pullback
        """)


def test_a_closure_made_before_the_copy_keeps_reading_the_copy():
    assert unchanged("""\
        def f_value_with_pullback(x):
            def pullback(t):
                return t * y
            y = x
            return pullback(2.0), pullback
        """)


def test_coalescing_is_not_visible_to_a_closure():
    assert unchanged("""\
        def f_value_with_pullback(x):
            y = 1.0
            def pullback():
                return y
            y_1 = x * 2.0
            z = pullback()
            y = y_1
            return z, pullback
        """)


def test_the_users_nested_functions_are_shown_as_written_and_pin_what_they_read():
    assert unchanged("""\
        def f_value_with_pullback(x, w):
            scale = w
            def helper(t):
                u = t
                return u * scale
            y = helper(x)

            def pullback(d_y):
                return d_y * scale
            return y, pullback
        """)


def test_names_in_lambdas_and_scoping_statements_are_left_alone():
    assert unchanged("""\
        def f(x):
            y = x
            g = lambda t: t * y
            return g(1.0)
        """)
    assert unchanged("""\
        def f(x):
            y = x

            def g():
                nonlocal y
                y = 2.0
            g()
            return y
        """)


def test_comments_stay_with_the_statements_of_their_line():
    assert optimised("""\
        def f_value_with_pullback(x0):
            # f.py:2: x = x0
            x = x0
            # f.py:3: y = x * 2.0
            y = x * 2.0
            x_1 = x
            # f.py:4: z = y
            z = y
            return z, None
        """) == textwrap.dedent("""\
        def f_value_with_pullback(x0):
            # f.py:3: y = x * 2.0
            y = x0 * 2.0
            return y, None
        """)


# -- the effect on generated code

def euler(x0, v0, c):
    x, v = x0, v0
    dt = 0.01
    for i in range(5):
        a = -x - c * v
        x = x + dt * v
        v = v + dt * a
    return x


EULER_GENERATED = '''\
def euler_value_with_pullback(x0, v0, c):
    # tests/test_copyprop.py:476: dt = 0.01
    dt = 0.01
    x_1 = x0
    v_1 = v0
    # tests/test_copyprop.py:477: for i in range(5):
    tape = []
    for i in range(5):
        # tests/test_copyprop.py:478: a = -x - c * v
        neg_x_1 = -x_1
        c_times_v_1 = c * v_1
        a = neg_x_1 - c_times_v_1
        # tests/test_copyprop.py:479: x = x + dt * v
        x_2 = x_1 + dt * v_1
        # tests/test_copyprop.py:480: v = v + dt * a
        v_2 = v_1 + dt * a
        tape.append((v_1, a, x_1, c_times_v_1))
        x_1 = x_2
        v_1 = v_2
    v_3 = v_1

    def pullback(d_x_3):
        d_x_3 = take_over(d_x_3)
        d_x_1 = d_x_3
        # tests/test_copyprop.py:477: for i in range(5):
        d_c = zeros_like(c)
        d_v_1 = zeros_like(v_3)
        del d_x_3
        for v_1, a, x_1, c_times_v_1 in replay(tape):
            d_v_2 = d_v_1
            d_x_2 = d_x_1
            # tests/test_copyprop.py:480: v = v + dt * a
            d_v_1 = unbroadcast(d_v_2, v_1)
            d_dt_times_a = unbroadcast(d_v_2, a)
            del a, d_v_2
            d_a = d_dt_times_a * dt
            del d_dt_times_a
            # tests/test_copyprop.py:479: x = x + dt * v
            d_x_1 = unbroadcast(d_x_2, x_1)
            d_dt_times_v_1 = unbroadcast(d_x_2, v_1)
            del d_x_2
            d_v_1 = d_v_1 + d_dt_times_v_1 * dt
            del d_dt_times_v_1
            # tests/test_copyprop.py:478: a = -x - c * v
            d_neg_x_1 = unbroadcast(d_a, x_1)
            del x_1
            d_c_times_v_1 = unbroadcast(-d_a, c_times_v_1)
            del c_times_v_1, d_a
            d_c = add_into(d_c, unbroadcast(d_c_times_v_1 * v_1, c))
            d_v_1 = d_v_1 + unbroadcast(d_c_times_v_1 * c, v_1)
            del d_c_times_v_1, v_1
            d_x_1 = d_x_1 - d_neg_x_1
            del d_neg_x_1
        # tests/test_copyprop.py:475: x, v = x0, v0
        d_v0 = d_v_1
        d_x0 = d_x_1
        return (d_x0, d_v0, d_c)
    return x_1, pullback
'''

# What runs for Python floats: no unbroadcast, so the loop's header copies all go, and a
# float's zero is 0.0.
EULER_FLOATS_PULLBACK = '''\
    def pullback(d_x_3):
        d_x_1 = d_x_3
        # tests/test_copyprop.py:477: for i in range(5):
        d_c = 0.0
        d_v_1 = 0.0
        for v_1 in replay(tape):
            # tests/test_copyprop.py:480: v = v + dt * a
            d_a = d_v_1 * dt
            # tests/test_copyprop.py:479: x = x + dt * v
            d_v_1 = d_v_1 + d_x_1 * dt
            # tests/test_copyprop.py:478: a = -x - c * v
            d_c_times_v_1 = -d_a
            d_c = d_c + d_c_times_v_1 * v_1
            d_v_1 = d_v_1 + d_c_times_v_1 * c
            d_x_1 = d_x_1 - d_a
        # tests/test_copyprop.py:475: x, v = x0, v0
        d_v0 = d_v_1
        d_x0 = d_x_1
        return (d_x0, d_v0, d_c)
    return x_1, pullback
'''


@pytest.fixture
def at_repository_root(monkeypatch):
    import pathlib
    monkeypatch.chdir(pathlib.Path(__file__).resolve().parent.parent)
    api._cache.clear()
    api._instances.clear()
    yield
    api._cache.clear()
    api._instances.clear()


def test_generated_code_of_euler_is_pinned(at_repository_root):
    assert adtrans.generated_source(euler) == EULER_GENERATED
    floats, _ = api._generated(euler, ("x0", "v0", "c"), "reverse", True, frozenset({"x0", "v0", "c"}))
    assert floats.text.endswith(EULER_FLOATS_PULLBACK)
    assert "x_1 = x_1 + dt * v_1" in floats.text      # the forward's x_2 took x_1's name


def sincos(x, y):
    return math.sin(math.sin(x)) + math.cos(y)


SINCOS_PULLBACK = '''\
    def pullback(d_result):
        # tests/test_copyprop.py:590: return math.sin(math.sin(x)) + math.cos(y)
        d_y = -d_result * math.sin(y)
        d_sin_x = d_result * math.cos(sin_x)
        d_x = d_sin_x * math.cos(x)
        return (d_x, d_y)
    return result, pullback
'''


def test_generated_code_of_a_straight_line_function_is_pinned(at_repository_root):
    assert adtrans.generated_source(sincos).endswith(SINCOS_PULLBACK)


def alias_then_accumulate(xs, w):
    ys = xs
    total = 0.0
    for i in range(3):
        total = total + ys[i] * w
    return ys, total


def alias_in_loop(xs, w):
    total = 0.0
    for i in range(3):
        ys = xs
        total = total + ys[i] * w * total
    return total


def hooked(x, w):
    def double(d):
        d *= 2.0            # a hook may change its cotangent in place
        return None

    y = adtrans.with_derivative(x * w, double)
    z = y
    return z * 3.0, y


def positive_sines(xs, w):
    total = 0.0
    for x in xs:
        if x < 0:
            continue
        total = total + np.sin(x * w)
    return total


def cell_reader(x, w):
    scale = w

    def helper(t):
        return t * scale

    y = helper(x)
    return y * scale


XS = np.array([0.3, -0.7, 1.1])


def _run(f, args, cotangent):
    value, back = adtrans.value_with_pullback(f, *args)
    return value, back(cotangent), back(cotangent)


@pytest.mark.parametrize("f,args,cotangent", [
    (euler, (0.5, -0.2, 0.3), 1.0),
    (euler, (np.array([0.5, 1.0]), np.array([-0.2, 0.1]), 0.3), np.array([1.0, 2.0])),
    (alias_then_accumulate, (XS, 1.3), (np.array([1.0, 2.0, 3.0]), 1.0)),
    (alias_in_loop, (XS, 1.3), 1.0),
    (hooked, (np.array([0.4, 0.9]), 1.5), (np.array([1.0, -1.0]), np.array([0.5, 0.25]))),
    (positive_sines, (XS, 0.8), 1.0),
    (cell_reader, (0.7, 1.9), 1.0),
], ids=["euler", "euler-arrays", "alias-accumulate", "alias-in-loop", "hook", "branches", "cell"])
def test_propagation_only_renames(monkeypatch, f, args, cotangent):
    """Optimised and unoptimised code compute bit-for-bit the same; the caller's cotangent is untouched."""
    def snapshot(t):
        return tuple(np.array(p, copy=True) for p in t) if isinstance(t, tuple) else np.array(t, copy=True)

    results = []
    for propagate in (lambda text, keep=(), generated=(): text, reverse.propagate_copies):
        monkeypatch.setattr(reverse, "propagate_copies", propagate)
        api._cache.clear()
        api._instances.clear()
        before = snapshot(cotangent)
        results.append(_run(f, args, cotangent))
        after = snapshot(cotangent)
        for b, a in zip(np.atleast_1d(before) if not isinstance(before, tuple) else before,
                        np.atleast_1d(after) if not isinstance(after, tuple) else after):
            assert np.array_equal(b, a), "the pullback wrote into its caller's cotangent"
    api._cache.clear()
    api._instances.clear()
    plain, optimised_ = results
    assert repr(plain) == repr(optimised_)
    value, first, second = optimised_
    assert repr(first) == repr(second)      # a pullback can be called again: nothing it owns was shared


@pytest.mark.parametrize("f,args", [
    (euler, (0.5, -0.2, 0.3)),
    (lambda xs, w: alias_then_accumulate(xs, w)[1] + np.sum(alias_then_accumulate(xs, w)[0]), (XS, 1.3)),
    (alias_in_loop, (XS, 1.3)),
    (positive_sines, (XS, 0.8)),
])
def test_gradients_after_propagation_match_finite_differences(f, args):
    adtrans.check_gradient(f, *args)


def test_the_hook_sees_the_cotangent_once_and_its_in_place_change_flows_on():
    value, back = adtrans.value_with_pullback(hooked, np.array([0.4, 0.9]), 1.5)
    d_x, d_w = back((np.array([1.0, -1.0]), np.array([0.5, 0.25])))
    d_y = 2.0 * (3.0 * np.array([1.0, -1.0]) + np.array([0.5, 0.25]))
    assert np.allclose(d_x, d_y * 1.5)
    assert np.isclose(d_w, np.sum(d_y * np.array([0.4, 0.9])))


def halved(v):
    return v / 2


def reports_progress(x):
    model = x
    for epoch in range(2):
        model = model * 1.5
        loss = model * 2.0
        print(f"epoch {epoch}: validation loss {loss:.4f}, "
              f"accuracy {halved(model):.3f}")
    return model


def test_names_inside_f_strings_survive_propagation(capsys):
    # Python 3.8 reports wrong columns inside f-strings; an edit there once garbled the text.
    text = adtrans.generated_source(reports_progress)
    compile(text, "<generated>", "exec")
    assert adtrans.gradient(reports_progress, 2.0) == pytest.approx(2.25)
    assert "epoch 1: validation loss 9.0000, accuracy 2.250" in capsys.readouterr().out
