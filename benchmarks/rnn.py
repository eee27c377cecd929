"""A loop-heavy NumPy workload: an RNN unrolled over 100 time steps.

``h = tanh(h @ W + x_t @ U + b)`` for 100 steps from h = 0, batch 32, input
16, hidden 64, float32; loss = ``np.sum(h ** 2)`` of the final state;
value and gradient w.r.t. ``W, U, b`` (issue 3). The arrays are small, so
each step costs a few microseconds of arithmetic and per-operation overhead
(what the tape records, how many temporaries each step makes) shows.

The reference is handwritten NumPy backpropagation through time keeping one
hidden state per step. Each sample is a timeit loop of about 50 ms;
samples of the systems are interleaved.
"""

import time

import numpy as np

from benchmarks import harness

NAME = "rnn"
TITLE = ("RNN unrolled over {steps} steps (batch {batch}, input {inputs}, hidden {hidden}, "
         "float32), value + gradient of sum(h_T ** 2) w.r.t. W, U, b")
SIZES = {"full": dict(steps=100, batch=32, inputs=16, hidden=64),
         "tiny": dict(steps=10, batch=4, inputs=3, hidden=5)}
WRT = ("W", "U", "b")
RTOL, ATOL_SCALE = 1e-3, 1e-4


def loss(W, U, b, xs, h0):
    h = h0
    for x in xs:
        h = np.tanh(h @ W + x @ U + b)
    return np.sum(h ** 2)


def handwritten_value_and_grad(W, U, b, xs, h0):
    """The reference: forward keeping each h, then BPTT by hand."""
    hs = [h0]
    h = h0
    for x in xs:
        h = np.tanh(h @ W + x @ U + b)
        hs.append(h)
    value = np.sum(h ** 2)
    dh = 2 * h
    dW = np.zeros_like(W)
    dU = np.zeros_like(U)
    db = np.zeros_like(b)
    for t in range(len(xs) - 1, -1, -1):
        dz = dh * (1 - hs[t + 1] ** 2)
        dW += hs[t].T @ dz
        dU += xs[t].T @ dz
        db += dz.sum(axis=0)
        dh = dz @ W.T
    return value, (dW, dU, db)


def make_data(steps, batch, inputs, hidden, seed=0):
    """(W, U, b, xs, h0), float32, from ``seed``."""
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
    U = (rng.standard_normal((inputs, hidden)) / np.sqrt(inputs)).astype(np.float32)
    b = (0.1 * rng.standard_normal(hidden)).astype(np.float32)
    xs = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    h0 = np.zeros((batch, hidden), dtype=np.float32)
    return W, U, b, xs, h0


# ---------------------------------------------------------------- systems
# Each builder returns (call, to_numpy, note); ``to_numpy(call())`` gives
# (value, (dW, dU, db)) as NumPy. ``None`` means not installed.

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

    def ag_loss(W, U, b, xs, h0):
        h = h0
        for x in xs:
            h = anp.tanh(h @ W + x @ U + b)
        return anp.sum(h ** 2)
    vg = autograd.value_and_grad(ag_loss, argnum=(0, 1, 2))
    return (lambda: vg(*args)), (lambda r: (r[0], tuple(r[1]))), ""


def _jax_loss(jnp):
    def j_loss(W, U, b, xs, h0):
        h = h0
        for t in range(xs.shape[0]):
            h = jnp.tanh(h @ W + xs[t] @ U + b)
        return jnp.sum(h ** 2)
    return j_loss


def _jax_numpy(result):
    value, grads = result
    return np.asarray(value), tuple(np.asarray(g) for g in grads)


def build_jax_eager(args):
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    import jax.numpy as jnp
    vg = jax.value_and_grad(_jax_loss(jnp), argnums=(0, 1, 2))
    jargs = [jnp.asarray(a) for a in args]
    return (lambda: jax.block_until_ready(vg(*jargs))), _jax_numpy, "inputs made jax arrays once"


def build_jax_jit(args):
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    import jax.numpy as jnp
    vg = jax.jit(jax.value_and_grad(_jax_loss(jnp), argnums=(0, 1, 2)))
    jargs = [jnp.asarray(a) for a in args]
    start = time.perf_counter()
    jax.block_until_ready(vg(*jargs))
    compile_s = time.perf_counter() - start
    return ((lambda: jax.block_until_ready(vg(*jargs))), _jax_numpy,
            f"Python loop unrolled; first call (trace + compile) "
            f"{harness.format_seconds(compile_s)}")


def build_torch(args):
    torch = harness.import_peer("torch")
    if torch is None:
        return None
    W, U, b, xs, h0 = (torch.from_numpy(a) for a in args)

    def step():
        params = [p.detach().requires_grad_() for p in (W, U, b)]
        h = h0
        for x in xs:
            h = torch.tanh(h @ params[0] + x @ params[1] + params[2])
        value = torch.sum(h ** 2)
        return value, torch.autograd.grad(value, params)

    def call():
        # One thread: on these small arrays PyTorch's two-thread pool fights
        # OpenBLAS's spinning threads (400-800 ms a call instead of 9 ms).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return step()
        finally:
            torch.set_num_threads(threads)
    return call, (lambda r: (r[0].detach().numpy(), tuple(g.numpy() for g in r[1]))), \
        "1 thread"


SYSTEMS = [
    ("adtrans", build_adtrans),
    ("autograd", build_autograd),
    ("jax (eager)", build_jax_eager),
    ("jax.jit", build_jax_jit),
    ("torch", build_torch),
]


def check_system(name, call, to_numpy, reference, strict_dtype):
    """Raise ``harness.Disagreement`` unless ``call`` agrees with the reference."""
    value, grads = to_numpy(call())
    want_value, want_grads = reference
    if len(grads) != len(want_grads):
        raise harness.Disagreement(f"{name}: {len(grads)} gradients, expected {len(want_grads)}")
    harness.assert_close(f"{name}: value", value, want_value, RTOL, 1e-6, check_dtype=False)
    for label, got, want in zip(WRT, grads, want_grads):
        harness.assert_close(f"{name}: d{label}", got, want, RTOL, ATOL_SCALE,
                             check_dtype=strict_dtype)


def check_adtrans(size="tiny", seed=0):
    """adtrans against the reference; raises on any difference."""
    status = harness.adtrans_status()
    if status is not None:
        raise RuntimeError(f"adtrans {status}")
    args = make_data(**SIZES[size], seed=seed)
    call, to_numpy, _ = build_adtrans(args)
    check_system("adtrans", call, to_numpy, handwritten_value_and_grad(*args),
                 strict_dtype=True)


def generated_source():
    import adtrans
    return adtrans.generated_source(loss, wrt=WRT)


def run(repeat=15, size="full"):
    dims = SIZES[size]
    args = make_data(**dims)
    reference = handwritten_value_and_grad(*args)
    rows = [harness.Row("handwritten", "value+grad", note="reference: NumPy BPTT by hand"),
            harness.Row("numpy", "forward", note="loss(...) called directly")]
    calls = {("handwritten", "value+grad"): lambda: handwritten_value_and_grad(*args),
             ("numpy", "forward"): lambda: loss(*args)}
    def check(name, built):
        call, to_numpy, note = built
        check_system(name, call, to_numpy, reference, strict_dtype=(name == "adtrans"))
        return call, note

    harness.add_checked_systems(rows, calls, SYSTEMS, "value+grad", lambda b: b(args), check)

    harness.time_and_compare(rows, calls, repeat, "value+grad", digits=2)
    return harness.Result(NAME, TITLE.format(**dims), dict(dims, dtype="float32", repeat=repeat),
                          rows,
                          ["each sample: a timeit loop of ~50 ms, divided by its loop count; "
                           "samples interleaved across systems",
                           "ratio: median / the handwritten reference's median; paired: "
                           "median of per-round ratios; 'Nx forward': median / loss()'s median"])
