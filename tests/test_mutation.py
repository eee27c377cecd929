"""Which parameters a function changes in place (what a checkpointed call gives a copy)."""

import textwrap

import gast
import pytest

from adtrans.mutation import DEEP, SHALLOW, parameters_changed


def changed(source):
    return parameters_changed(gast.parse(textwrap.dedent(source)).body[0])


@pytest.mark.parametrize("source, want", [
    ("def f(z, b):\n    z += b\n    return z", {"z": SHALLOW}),
    ("def f(u, k):\n    u[1:-1] = u[1:-1] * k\n    return u", {"u": SHALLOW}),
    ("def f(s, dt):\n    s.pos = s.pos + dt\n    return s", {"s": SHALLOW}),
    ("def f(s, dt):\n    s.pos += dt\n    return s", {"s": DEEP}),            # adds into s.pos's array
    ("def f(xs):\n    xs[0][1] = 2.0\n    return xs", {"xs": DEEP}),
    ("def f(xs, v):\n    xs.append(v)\n    return xs", {"xs": SHALLOW}),
    ("def f(a, b):\n    np.add(a, b, out=a)\n    return a", {"a": SHALLOW}),
    ("def f(a, i, v):\n    np.add.at(a, i, v)\n    return a", {"a": SHALLOW}),
    ("def f(a, b):\n    np.copyto(a, b)\n    return a", {"a": SHALLOW}),
    ("def f(u):\n    v = u\n    v[0] = 1.0\n    return u", {"u": SHALLOW}),
    ("def f(u):\n    v = u[1:]\n    v[0] = 1.0\n    return u", {"u": DEEP}),     # a view changes u
    ("def f(rows):\n    for r in rows:\n        r[0] = 0.0\n    return rows", {"rows": DEEP}),
    ("def f(x, *rest, **kw):\n    rest[0][0] = x\n    kw['a'] = x\n    return x", {"rest": DEEP, "kw": SHALLOW}),
])
def test_changes_found(source, want):
    assert changed(source) == want


@pytest.mark.parametrize("source", [
    "def f(h, W):\n    return np.tanh(h @ W)",
    "def f(h, W):\n    h = h @ W\n    return h",                  # rebinding is no change
    "def f(xs):\n    ys = list(xs)\n    ys.append(1.0)\n    return ys",
    "def f(u):\n    v = u.copy()\n    v[0] = 1.0\n    return v",
    "def f(x):\n    d = {}\n    d['x'] = x\n    return d",
])
def test_no_change(source):
    assert changed(source) == {}
