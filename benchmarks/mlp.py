"""W1: the seed's two-layer MLP loss, value and gradient w.r.t. the weights.

X is 60000x784 float32 (uniform in [0, 1), like MNIST pixels), Y is
60000x10 float32 (one-hot rows of random labels: outputs = 10), hidden
layer 50 wide with ReLU, loss = mean squared error. Data and weights come
from a fixed seed.

The reference is handwritten NumPy forward + backward code computing the
loss and the four weight gradients only (no gradient for X, which a user
never asks for). adtrans differentiates the plain function ``loss`` below
with ``value_with_gradient(..., wrt=WRT)``. Every system's gradients are
checked against the reference before anything is timed.
"""

import numpy as np

from benchmarks import harness

NAME = "mlp"
TITLE = ("W1: two-layer MLP loss ({n}x784 float32, hidden 50, ReLU, MSE), "
         "value + gradient w.r.t. W1, b1, W2, b2")
SIZES = {"full": 60000, "tiny": 200}
WRT = ("W1", "b1", "W2", "b2")
INPUTS, HIDDEN, OUTPUTS = 784, 50, 10

# float32 sums over tens of thousands of rows, in different orders.
RTOL, ATOL_SCALE = 1e-3, 1e-4


def loss(W1, b1, W2, b2, X, Y):
    h = np.maximum(X @ W1 + b1, 0.0)
    out = h @ W2 + b2
    return np.mean((out - Y) ** 2)


def handwritten_value_and_grad(W1, b1, W2, b2, X, Y):
    """The reference: forward, then backward by hand, weight gradients only."""
    z = X @ W1 + b1
    h = np.maximum(z, 0.0)
    out = h @ W2 + b2
    diff = out - Y
    value = np.mean(diff ** 2)
    d_out = diff * (2.0 / diff.size)
    dW2 = h.T @ d_out
    db2 = d_out.sum(axis=0)
    dz = (d_out @ W2.T) * (z > 0)
    dW1 = X.T @ dz
    db1 = dz.sum(axis=0)
    return value, (dW1, db1, dW2, db2)


def make_data(n, seed=0):
    """(W1, b1, W2, b2, X, Y) for ``n`` examples, float32, from ``seed``."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, INPUTS), dtype=np.float32)
    Y = np.zeros((n, OUTPUTS), dtype=np.float32)
    Y[np.arange(n), rng.integers(0, OUTPUTS, size=n)] = 1.0
    W1 = (rng.standard_normal((INPUTS, HIDDEN)) / np.sqrt(INPUTS)).astype(np.float32)
    b1 = (0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
    W2 = (rng.standard_normal((HIDDEN, OUTPUTS)) / np.sqrt(HIDDEN)).astype(np.float32)
    b2 = (0.1 * rng.standard_normal(OUTPUTS)).astype(np.float32)
    return W1, b1, W2, b2, X, Y


# ---------------------------------------------------------------- systems
# Each builder returns (call, to_numpy, note): ``call()`` runs value and
# gradient once, timed as is; ``to_numpy(call())`` gives (value, gradients)
# as NumPy for the check. ``None`` means the system is not installed.

def build_adtrans(args):
    if harness.adtrans_status() is not None:
        return None
    import adtrans

    def call():
        return adtrans.value_with_gradient(loss, *args, wrt=WRT)
    return call, (lambda r: r), harness.first_call_note(call)


def build_autograd(args):
    autograd = harness.import_peer("autograd")
    if autograd is None:
        return None
    anp = harness.import_peer("autograd.numpy")

    def ag_loss(W1, b1, W2, b2, X, Y):
        h = anp.maximum(anp.dot(X, W1) + b1, 0.0)
        out = anp.dot(h, W2) + b2
        return anp.mean((out - Y) ** 2)

    value_and_grad = autograd.value_and_grad(ag_loss, argnum=(0, 1, 2, 3))
    return (lambda: value_and_grad(*args)), (lambda r: r), ""


def _jax_loss(jnp):
    def j_loss(W1, b1, W2, b2, X, Y):
        h = jnp.maximum(X @ W1 + b1, 0.0)
        out = h @ W2 + b2
        return jnp.mean((out - Y) ** 2)
    return j_loss


def _jax_args(jax, args):
    # The data lives on the device once, as it would in a training loop.
    return [jax.device_put(a) for a in args]


def _jax_to_numpy(result):
    value, grads = result
    return np.asarray(value), tuple(np.asarray(g) for g in grads)


def build_jax_eager(args):
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    import jax.numpy as jnp
    jargs = _jax_args(jax, args)
    value_and_grad = jax.value_and_grad(_jax_loss(jnp), argnums=(0, 1, 2, 3))
    return (lambda: jax.block_until_ready(value_and_grad(*jargs))), _jax_to_numpy, ""


def build_jax_jit(args):
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    import jax.numpy as jnp
    import time
    jargs = _jax_args(jax, args)
    value_and_grad = jax.jit(jax.value_and_grad(_jax_loss(jnp), argnums=(0, 1, 2, 3)))
    start = time.perf_counter()
    jax.block_until_ready(value_and_grad(*jargs))
    compile_s = time.perf_counter() - start
    return ((lambda: jax.block_until_ready(value_and_grad(*jargs))), _jax_to_numpy,
            f"first call (trace + compile) {harness.format_seconds(compile_s)}")


def build_torch(args):
    torch = harness.import_peer("torch")
    if torch is None:
        return None
    W1, b1, W2, b2, X, Y = (torch.from_numpy(a) for a in args)
    params = [p.requires_grad_() for p in (W1, b1, W2, b2)]

    def call():
        h = torch.clamp_min(X @ W1 + b1, 0.0)
        out = h @ W2 + b2
        value = torch.mean((out - Y) ** 2)
        return value, torch.autograd.grad(value, params)

    def to_numpy(result):
        value, grads = result
        return value.detach().numpy(), tuple(g.numpy() for g in grads)
    return call, to_numpy, f"{torch.get_num_threads()} threads"


SYSTEMS = [
    ("adtrans", build_adtrans),
    ("autograd", build_autograd),
    ("jax (eager)", build_jax_eager),
    ("jax.jit", build_jax_jit),
    ("torch", build_torch),
]


def check_system(name, call, to_numpy, reference, strict_dtype):
    """Raise ``harness.Disagreement`` unless the system matches the reference."""
    value, grads = to_numpy(call())
    want_value, want_grads = reference
    if len(grads) != len(want_grads):
        raise harness.Disagreement(f"{name}: {len(grads)} gradients, expected {len(want_grads)}")
    harness.assert_close(f"{name}: value", value, want_value, RTOL, 1e-6,
                         check_dtype=False)
    for label, got, want in zip(WRT, grads, want_grads):
        harness.assert_close(f"{name}: d{label}", got, want, RTOL, ATOL_SCALE,
                             check_dtype=strict_dtype)
    return [f"d{label} is {np.asarray(g).dtype}" for label, g in zip(WRT, grads)
            if np.asarray(g).dtype != np.float32]


def check_adtrans(n=SIZES["tiny"], seed=0):
    """adtrans against the reference at ``n`` rows; raises on any difference."""
    status = harness.adtrans_status()
    if status is not None:
        raise RuntimeError(f"adtrans {status}")
    args = make_data(n, seed)
    built = build_adtrans(args)
    check_system("adtrans", built[0], built[1], handwritten_value_and_grad(*args),
                 strict_dtype=True)


def generated_source():
    import adtrans
    return adtrans.generated_source(loss, wrt=WRT)


def run(repeat=15, size="full"):
    n = SIZES[size] if isinstance(size, str) else int(size)
    args = make_data(n)
    reference = handwritten_value_and_grad(*args)
    rows, calls, notes = [], {}, []
    calls[("handwritten", "value+grad")] = lambda: handwritten_value_and_grad(*args)
    calls[("numpy", "forward")] = lambda: loss(*args)
    rows.append(harness.Row("handwritten", "value+grad", note="reference"))
    rows.append(harness.Row("numpy", "forward", note="loss(...) called directly"))

    def check(name, built):
        call, to_numpy, note = built
        extra = check_system(name, call, to_numpy, reference, strict_dtype=(name == "adtrans"))
        return call, "; ".join(filter(None, [note] + (extra or [])))

    harness.add_checked_systems(rows, calls, SYSTEMS, "value+grad", lambda b: b(args), check)

    gap = harness.GAP
    if gap is None:
        pools = {"jax (eager)", "jax.jit", "torch"}
        gap = harness.AUTO_GAP if any(name in pools for name, _ in calls) else 0.0
    samples = harness.time_interleaved(calls, rounds=repeat, warmup=1, gap=gap)
    for row in rows:
        row.samples = samples.get((row.system, row.measure), [])
    harness.fill_ratios(rows, reference="handwritten")
    forward = next(r for r in rows if r.measure == "forward").median
    for row in rows:
        if row.measure == "value+grad" and row.samples:
            row.note = "; ".join(filter(None, [row.note, f"{row.median / forward:.2f}x forward"]))
    notes.append("ratio: median / the handwritten reference's median; paired: median of "
                 "per-round ratios; same process, calls interleaved in a shuffled order each round")
    if gap:
        notes.append(f"{gap} s idle before each timed call (thread pools of different "
                     "systems settle; --gap to change)")
    return harness.Result(NAME, TITLE.format(n=n),
                          {"n": n, "inputs": INPUTS, "hidden": HIDDEN, "outputs": OUTPUTS,
                           "dtype": "float32", "repeat": repeat, "gap_s": gap},
                          rows, notes)
