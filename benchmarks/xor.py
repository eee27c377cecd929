"""W5: the small-array regime, a 4x2 XOR MLP's value and gradient.

Dense 2->10 ReLU, Dense 10->1 ReLU, MSE, float32, w.r.t. the four weights.
The arrays are tiny, so the time is per-operation overhead: the regime where
a tracer pays for its graph and a compiler should not. Issue 6's aim:
faster than every eager peer.
"""

import numpy as np

from benchmarks import harness

NAME = "xor"
TITLE = "W5: XOR MLP (4x2 inputs, Dense 2-10-1, ReLU, MSE, float32), value + gradient per call"

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([[0], [1], [1], [0]], np.float32)
_rng = np.random.default_rng(0)
WEIGHTS = (_rng.standard_normal((2, 10)).astype(np.float32), np.zeros(10, np.float32),
           _rng.standard_normal((10, 1)).astype(np.float32), np.zeros(1, np.float32))


def loss(W1, b1, W2, b2, X, Y):
    h = np.maximum(X @ W1 + b1, 0.0)
    out = np.maximum(h @ W2 + b2, 0.0)
    return np.mean((out - Y) ** 2)


def handwritten(W1, b1, W2, b2):
    """The reference: forward and backward by hand (relu's derivative 0 at 0, as JAX's maximum splits
    a tie and none occurs here)."""
    z1 = X @ W1 + b1
    h = np.maximum(z1, 0.0)
    z2 = h @ W2 + b2
    out = np.maximum(z2, 0.0)
    d = out - Y
    value = np.mean(d * d)
    dz2 = d * (2.0 / d.size) * (z2 > 0)
    dh = dz2 @ W2.T
    dz1 = dh * (z1 > 0)
    return value, (X.T @ dz1, dz1.sum(0), h.T @ dz2, dz2.sum(0))


def build_adtrans():
    if harness.adtrans_status() is not None:
        return None
    import adtrans

    def call():
        return adtrans.value_with_gradient(loss, *WEIGHTS, X, Y, wrt=(0, 1, 2, 3))
    return call, (lambda r: r), harness.first_call_note(call)


def build_autograd():
    autograd = harness.import_peer("autograd")
    if autograd is None:
        return None
    anp = harness.import_peer("autograd.numpy")

    def ag_loss(W1, b1, W2, b2):
        h = anp.maximum(anp.dot(X, W1) + b1, 0.0)
        out = anp.maximum(anp.dot(h, W2) + b2, 0.0)
        return anp.mean((out - Y) ** 2)
    step = autograd.value_and_grad(ag_loss, argnum=[0, 1, 2, 3])
    return (lambda: step(*WEIGHTS)), (lambda r: (r[0], tuple(r[1]))), ""


def build_jax(jit):
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    import jax.numpy as jnp

    def j_loss(W1, b1, W2, b2):
        h = jnp.maximum(X @ W1 + b1, 0.0)
        out = jnp.maximum(h @ W2 + b2, 0.0)
        return jnp.mean((out - Y) ** 2)
    step = jax.value_and_grad(j_loss, argnums=(0, 1, 2, 3))
    if jit:
        step = jax.jit(step)

    def call():
        return jax.block_until_ready(step(*WEIGHTS))
    note = harness.first_call_note(call).replace("transform", "trace + compile") if jit else ""
    return call, (lambda r: (np.asarray(r[0]), tuple(np.asarray(g) for g in r[1]))), note


def build_torch():
    torch = harness.import_peer("torch")
    if torch is None:
        return None
    torch.set_num_threads(1)
    params = [torch.tensor(w, requires_grad=True) for w in WEIGHTS]
    tX, tY = torch.tensor(X), torch.tensor(Y)

    def call():
        h = torch.relu(tX @ params[0] + params[1])
        out = torch.relu(h @ params[2] + params[3])
        value = ((out - tY) ** 2).mean()
        return value, torch.autograd.grad(value, params)
    return call, (lambda r: (r[0].detach().numpy(), tuple(g.numpy() for g in r[1]))), "1 thread"


SYSTEMS = [("adtrans", build_adtrans), ("autograd", build_autograd),
           ("jax (eager)", lambda: build_jax(False)), ("jax.jit", lambda: build_jax(True)),
           ("torch", build_torch)]


def check(name, result):
    value, grads = result
    want_value, want = handwritten(*WEIGHTS)
    harness.assert_close(f"{name}: value", np.asarray(value), want_value, 1e-5, 1e-6)
    for label, g, w in zip(("dW1", "db1", "dW2", "db2"), grads, want):
        harness.assert_close(f"{name}: {label}", np.asarray(g), w, 1e-4, 1e-5)


def check_adtrans():
    """adtrans's value and gradient against the handwritten ones; raises on a difference."""
    status = harness.adtrans_status()
    if status is not None:
        raise RuntimeError(f"adtrans {status}")
    call, to_numpy, _ = build_adtrans()
    check("adtrans", to_numpy(call()))


def generated_source():
    import adtrans
    return adtrans.generated_source(loss, wrt=(0, 1, 2, 3))


def run(repeat=15, size="full"):
    del size    # one size: the point is the small arrays
    rows = [harness.Row("handwritten", "value+grad", note="reference"),
            harness.Row("numpy", "forward", note="loss(...) called directly")]
    calls = {("handwritten", "value+grad"): lambda: handwritten(*WEIGHTS),
             ("numpy", "forward"): lambda: loss(*WEIGHTS, X, Y)}
    def check_built(name, built):
        call, to_numpy, note = built
        check(name, to_numpy(call()))
        return call, note

    harness.add_checked_systems(rows, calls, SYSTEMS, "value+grad", lambda b: b(), check_built)
    harness.time_and_compare(rows, calls, repeat, "value+grad", digits=1)
    return harness.Result(NAME, TITLE, {"repeat": repeat}, rows,
                          ["each sample: a timeit loop of ~50 ms, divided by its loop count; "
                           "samples interleaved across systems",
                           "ratio: median / the handwritten reference's median; paired: "
                           "median of per-round ratios"])
