"""One SGD training step of two adtrans.nn models, against the same models elsewhere.

Two cases, each one training step = loss value + gradient w.r.t. every
parameter + SGD update (learning rate 0.01, no momentum), float32,
softmax cross-entropy over integer labels:

- ``mlp``: Dense 784 -> 256 (relu), Dense 256 -> 10, a batch of 128
  (inputs uniform in [0, 1), random labels 0..9).
- ``cnn``: the tutorial's CNN (docs/nn.md, examples/cnn_checkpointing.py):
  Conv2D (5, 5, 3, 6) relu wrapped in ``discarding_activations()``,
  MaxPool2D 2x2 stride 2, Flatten, Dense 216 -> 10, on [10, 16, 16, 3]
  images (standard normal) with labels 0..9.

The reference of each case is a handwritten NumPy step (forward, backward
by hand, in-place update). The handwritten CNN keeps its activations (no
recomputation), and computes parameter gradients only (no gradient for the
images), so adtrans is also timed without ``discarding_activations()``.
Peers: PyTorch (eager, ``torch.autograd.grad`` then an in-place update
under ``no_grad``) and ``jax.jit`` of the whole step (value, gradient and
update in one compiled function; the compile time is reported apart).

Every system starts from the same parameters; before anything is timed,
its loss, gradients and updated parameters after one step from those
parameters are compared with the reference's. Timed calls then keep
training (each call steps the system's own current parameters), as a
training loop would.
"""

import time

import numpy as np

from benchmarks import harness

try:        # adtrans is the package under test: its rows report a broken import
    from adtrans.nn import softmax_cross_entropy
except Exception:
    softmax_cross_entropy = None

NAME = "nn_step"
TITLE = ("nn_step: one SGD training step (value + gradient + update), float32, "
         "softmax cross-entropy: MLP 784-256-10 on a batch of {batch}; "
         "tutorial CNN on [{cnn_batch}, 16, 16, 3]")
SIZES = {"full": {"batch": 128, "cnn_batch": 10}, "tiny": {"batch": 8, "cnn_batch": 3}}
LEARNING_RATE = 0.01
INPUTS, HIDDEN, CLASSES = 784, 256, 10
IMAGE, KERNEL, CHANNELS, FILTERS = 16, 5, 3, 6
POOLED = (IMAGE - KERNEL + 1) // 2                  # 6
FEATURES = POOLED * POOLED * FILTERS               # 216
PARAMS = {"mlp": ("W1", "b1", "W2", "b2"), "cnn": ("filter", "conv_bias", "W", "b")}

# float32 sums in different orders (BLAS, XLA, oneDNN).
RTOL, ATOL_SCALE = 1e-3, 1e-4


# ---------------------------------------------------------------- data

def make_data(case, batch, seed=0):
    """(params, x, labels): params a list of float32 arrays in PARAMS[case] order."""
    rng = np.random.default_rng(seed)
    if case == "mlp":
        x = rng.random((batch, INPUTS), dtype=np.float32)
        W1 = rng.normal(0.0, np.sqrt(2.0 / INPUTS), (INPUTS, HIDDEN)).astype(np.float32)
        b1 = (0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        limit = np.sqrt(6.0 / (HIDDEN + CLASSES))
        W2 = rng.uniform(-limit, limit, (HIDDEN, CLASSES)).astype(np.float32)
        b2 = (0.1 * rng.standard_normal(CLASSES)).astype(np.float32)
        params = [W1, b1, W2, b2]
    else:
        x = rng.standard_normal((batch, IMAGE, IMAGE, CHANNELS)).astype(np.float32)
        fan_in = KERNEL * KERNEL * CHANNELS
        filt = rng.normal(0.0, np.sqrt(2.0 / fan_in),
                          (KERNEL, KERNEL, CHANNELS, FILTERS)).astype(np.float32)
        conv_bias = (0.1 * rng.standard_normal(FILTERS)).astype(np.float32)
        limit = np.sqrt(6.0 / (FEATURES + CLASSES))
        W = rng.uniform(-limit, limit, (FEATURES, CLASSES)).astype(np.float32)
        b = (0.1 * rng.standard_normal(CLASSES)).astype(np.float32)
        params = [filt, conv_bias, W, b]
    labels = rng.integers(0, CLASSES, size=batch) if case == "mlp" else np.arange(batch) % CLASSES
    return params, x, labels


def _copy(params):
    return [np.array(p, copy=True) for p in params]


# ---------------------------------------------------------------- handwritten (reference)

def _cross_entropy(logits, labels):
    """(loss, d loss / d logits) of the mean softmax cross-entropy."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    batch = logits.shape[0]
    rows = np.arange(batch)
    value = -np.mean(shifted[rows, labels] - np.log(total[:, 0]))
    d_logits = exp / total
    d_logits[rows, labels] -= 1.0
    d_logits *= np.float32(1.0 / batch)
    return value, d_logits


def handwritten_mlp_value_and_grad(params, x, labels):
    W1, b1, W2, b2 = params
    z = x @ W1 + b1
    h = np.maximum(z, 0.0)
    value, d_logits = _cross_entropy(h @ W2 + b2, labels)
    dW2 = h.T @ d_logits
    db2 = d_logits.sum(axis=0)
    dz = (d_logits @ W2.T) * (z > 0)
    dW1 = x.T @ dz
    db1 = dz.sum(axis=0)
    return value, [dW1, db1, dW2, db2]


def handwritten_cnn_value_and_grad(params, x, labels):
    filt, conv_bias, W, b = params
    n = x.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x, (KERNEL, KERNEL), axis=(1, 2))
    # windows: (n, 12, 12, c, kh, kw); filter: (kh, kw, c, out)
    z = np.tensordot(windows, filt, axes=([4, 5, 3], [0, 1, 2])) + conv_bias
    a = np.maximum(z, 0.0)
    side = z.shape[1] // 2
    blocks = a.reshape(n, side, 2, side, 2, FILTERS)
    pooled = blocks.max(axis=(2, 4))
    features = pooled.reshape(n, -1)
    value, d_logits = _cross_entropy(features @ W + b, labels)
    dW = features.T @ d_logits
    db = d_logits.sum(axis=0)
    d_pooled = (d_logits @ W.T).reshape(pooled.shape)
    # A tie inside a window with a positive maximum has probability zero; a window of zeros has
    # z <= 0 everywhere, where relu's derivative is 0 anyway.
    mask = blocks == pooled[:, :, None, :, None, :]
    dz = (mask * d_pooled[:, :, None, :, None, :]).reshape(z.shape) * (z > 0)
    d_filter = np.tensordot(windows, dz, axes=([0, 1, 2], [0, 1, 2])).transpose(1, 2, 0, 3)
    d_conv_bias = dz.sum(axis=(0, 1, 2))
    return value, [d_filter, d_conv_bias, dW, db]


HANDWRITTEN = {"mlp": handwritten_mlp_value_and_grad, "cnn": handwritten_cnn_value_and_grad}


def _sgd_in_place(params, grads):
    for p, g in zip(params, grads):
        p -= LEARNING_RATE * g


# ---------------------------------------------------------------- systems
# A builder takes (case, params, x, labels) and returns (check, step, note) or None (not
# installed). ``check()`` runs one step from ``params`` without touching the state ``step`` trains
# and returns (value, gradients, updated parameters) as NumPy in PARAMS order; ``step()`` runs one
# training step of the system's own state, as timed.

def build_handwritten(case, params, x, labels):
    value_and_grad = HANDWRITTEN[case]

    def check():
        state = _copy(params)
        value, grads = value_and_grad(state, x, labels)
        _sgd_in_place(state, grads)
        return value, grads, state

    state = _copy(params)

    def step():
        value, grads = value_and_grad(state, x, labels)
        _sgd_in_place(state, grads)
        return value
    return check, step, "reference; in-place update"


def make_model(case, params, discard=True):
    """The adtrans.nn model holding ``params`` (copied)."""
    from adtrans import nn
    p = _copy(params)
    if case == "mlp":
        return nn.Sequential([nn.Dense(weight=p[0], bias=p[1], activation=nn.relu),
                              nn.Dense(weight=p[2], bias=p[3])])
    conv = nn.Conv2D(filter=p[0], bias=p[1], activation=nn.relu)
    return nn.Sequential([conv.discarding_activations() if discard else conv,
                          nn.MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
                          nn.Flatten(),
                          nn.Dense(weight=p[2], bias=p[3])])


def model_params(case, model):
    """The model's (or its gradient's) parameters in PARAMS order."""
    first, last = model.layers[0], model.layers[-1]
    if case == "mlp":
        return [first.weight, first.bias, last.weight, last.bias]
    conv = getattr(first, "layer", first)     # through DiscardingActivations
    return [conv.filter, conv.bias, last.weight, last.bias]


def nn_loss(model, images, labels):
    return softmax_cross_entropy(model(images), labels)


def _build_adtrans(case, params, x, labels, discard=True):
    if harness.adtrans_status() is not None:
        return None
    import adtrans
    from adtrans import nn

    def one_step(model, optimizer):
        value, gradient = adtrans.value_with_gradient(nn_loss, model, x, labels, wrt="model")
        return value, gradient, optimizer.update(model, along=gradient)

    def check():
        model = make_model(case, params, discard)
        value, gradient, new = one_step(model, nn.SGD(model, learning_rate=LEARNING_RATE))
        return value, model_params(case, gradient), model_params(case, new)

    start = time.perf_counter()
    check()
    first_s = time.perf_counter() - start
    state = {"model": make_model(case, params, discard)}
    optimizer = nn.SGD(state["model"], learning_rate=LEARNING_RATE)

    def step():
        value, _, state["model"] = one_step(state["model"], optimizer)
        return value
    return check, step, f"first step (transform + run) {harness.format_seconds(first_s)}"


def build_adtrans(case, params, x, labels):
    return _build_adtrans(case, params, x, labels, discard=True)


def build_adtrans_keep(case, params, x, labels):
    return _build_adtrans(case, params, x, labels, discard=False)


def _torch_forward(torch, case, tparams, tx):
    F = torch.nn.functional
    if case == "mlp":
        W1, b1, W2, b2 = tparams
        return torch.relu(tx @ W1 + b1) @ W2 + b2
    filt, conv_bias, W, b = tparams          # filt is OIHW, tx is NCHW
    a = torch.relu(F.conv2d(tx, filt, conv_bias))
    pooled = F.max_pool2d(a, 2, 2)
    features = pooled.permute(0, 2, 3, 1).reshape(tx.shape[0], -1)   # NHWC order, as Flatten
    return features @ W + b


def _build_torch(case, params, x, labels, threads=None):
    torch = harness.import_peer("torch")
    if torch is None:
        return None
    tx = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if case == "cnn" else x)
    tlabels = torch.from_numpy(labels.astype(np.int64))

    def to_torch(ps):
        ps = _copy(ps)
        if case == "cnn":
            ps[0] = np.ascontiguousarray(ps[0].transpose(3, 2, 0, 1))   # HWIO -> OIHW
        return [torch.from_numpy(p).requires_grad_() for p in ps]

    def to_numpy(ts):
        out = [t.detach().numpy().copy() for t in ts]
        if case == "cnn":
            out[0] = out[0].transpose(2, 3, 1, 0)                        # OIHW -> HWIO
        return out

    def one_step(tparams):
        value = torch.nn.functional.cross_entropy(_torch_forward(torch, case, tparams, tx),
                                                  tlabels)
        grads = torch.autograd.grad(value, tparams)
        with torch.no_grad():
            for p, g in zip(tparams, grads):
                p -= LEARNING_RATE * g
        return value, grads

    def threaded(fn):
        if threads is None:
            return fn

        def call():
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return fn()
            finally:
                torch.set_num_threads(before)
        return call

    def check():
        tparams = to_torch(params)
        value, grads = one_step(tparams)
        return value.detach().numpy(), to_numpy(grads), to_numpy(tparams)

    state = to_torch(params)
    return (threaded(check), threaded(lambda: one_step(state)[0]),
            f"{threads or torch.get_num_threads()} thread{'s' if threads != 1 else ''}")


def build_torch(case, params, x, labels):
    return _build_torch(case, params, x, labels)


def build_torch_1(case, params, x, labels):
    return _build_torch(case, params, x, labels, threads=1)


def build_jax_jit(case, params, x, labels):
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    import jax.numpy as jnp

    def forward(ps, images):
        if case == "mlp":
            W1, b1, W2, b2 = ps
            return jnp.maximum(images @ W1 + b1, 0.0) @ W2 + b2
        filt, conv_bias, W, b = ps
        z = jax.lax.conv_general_dilated(images, filt, (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        a = jnp.maximum(z + conv_bias, 0.0)
        n, h, w, c = a.shape
        pooled = a.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        return pooled.reshape(n, -1) @ W + b

    def loss(ps, images, ys):
        logp = jax.nn.log_softmax(forward(ps, images))
        return -jnp.mean(jnp.take_along_axis(logp, ys[:, None], axis=1))

    @jax.jit
    def jstep(ps, images, ys):
        value, grads = jax.value_and_grad(loss)(ps, images, ys)
        return value, grads, [p - LEARNING_RATE * g for p, g in zip(ps, grads)]

    jx, jlabels = jax.device_put(x), jax.device_put(labels.astype(np.int32))
    start = time.perf_counter()
    jax.block_until_ready(jstep([jax.device_put(p) for p in params], jx, jlabels))
    compile_s = time.perf_counter() - start

    def check():
        value, grads, new = jstep([jax.device_put(p) for p in params], jx, jlabels)
        return np.asarray(value), [np.asarray(g) for g in grads], [np.asarray(p) for p in new]

    state = {"params": [jax.device_put(p) for p in params]}

    def step():
        value, _, state["params"] = jax.block_until_ready(jstep(state["params"], jx, jlabels))
        return value
    return check, step, f"first call (trace + compile) {harness.format_seconds(compile_s)}"


SYSTEMS = {
    "mlp": [("adtrans", build_adtrans), ("jax.jit", build_jax_jit), ("torch", build_torch),
            ("torch (1 thread)", build_torch_1)],
    "cnn": [("adtrans", build_adtrans), ("adtrans, no discarding_activations", build_adtrans_keep),
            ("jax.jit", build_jax_jit), ("torch", build_torch),
            ("torch (1 thread)", build_torch_1)],
}


def check_system(name, case, check, reference, strict_dtype):
    """Raise ``harness.Disagreement`` unless one step matches the reference's step."""
    value, grads, new = check()
    want_value, want_grads, want_new = reference
    harness.assert_close(f"{name}: loss", value, want_value, RTOL, 1e-6, check_dtype=False)
    for label, got, want in zip(PARAMS[case], grads, want_grads):
        harness.assert_close(f"{name}: d{label}", got, want, RTOL, ATOL_SCALE,
                             check_dtype=strict_dtype)
    for label, got, want in zip(PARAMS[case], new, want_new):
        harness.assert_close(f"{name}: updated {label}", got, want, RTOL, ATOL_SCALE,
                             check_dtype=strict_dtype)


def check_adtrans(size="tiny", seed=0):
    """adtrans's step (both cases, with and without discarding) against the handwritten step."""
    status = harness.adtrans_status()
    if status is not None:
        raise RuntimeError(f"adtrans {status}")
    dims = SIZES[size]
    for case in ("mlp", "cnn"):
        params, x, labels = make_data(case, dims["batch" if case == "mlp" else "cnn_batch"], seed)
        reference = build_handwritten(case, params, x, labels)[0]()
        for name, builder in (("adtrans", build_adtrans),
                              ("adtrans, no discarding_activations", build_adtrans_keep)):
            check_system(f"{case} {name}", case, builder(case, params, x, labels)[0],
                         reference, strict_dtype=True)


def generated_source():
    import adtrans
    return adtrans.generated_source(nn_loss, wrt="model")


def run(repeat=15, size="full"):
    dims = SIZES[size] if isinstance(size, str) else {"batch": int(size), "cnn_batch": 10}
    rows, calls, notes = [], {}, []
    for case in ("mlp", "cnn"):
        measure = f"{case} step"
        params, x, labels = make_data(case, dims["batch" if case == "mlp" else "cnn_batch"])
        ref_check, ref_step, ref_note = build_handwritten(case, params, x, labels)
        reference = ref_check()
        rows.append(harness.Row("handwritten", measure, note=ref_note))
        calls[("handwritten", measure)] = ref_step
        def checked(name, built, case=case, reference=reference):
            check, step, note = built
            check_system(name, case, check, reference, strict_dtype=name.startswith("adtrans"))
            return step, note

        harness.add_checked_systems(rows, calls, SYSTEMS[case], measure,
                                    lambda b, case=case, params=params, x=x, labels=labels:
                                    b(case, params, x, labels), checked)

    gap = harness.GAP
    if gap is None:
        pools = any(name.startswith(("jax", "torch")) for name, _ in calls)
        gap = harness.AUTO_GAP if pools else 0.0
    samples = harness.time_interleaved(calls, rounds=repeat, warmup=1, gap=gap)
    for row in rows:
        row.samples = samples.get((row.system, row.measure), [])
    harness.fill_ratios(rows, reference="handwritten")
    notes.append("one step = loss + gradient w.r.t. every parameter + SGD update (lr "
                 f"{LEARNING_RATE}); every system's first step from the same parameters was "
                 "checked against the handwritten step (loss, gradients, updated parameters)")
    notes.append("handwritten CNN: keeps its activations (no recomputation) and computes no "
                 "gradient for the images; adtrans's main CNN row recomputes the conv layer "
                 "(discarding_activations), the 'no discarding_activations' row does not")
    notes.append("ratio: median / the handwritten step's median (same case); paired: median of "
                 "per-round ratios; all steps of both cases interleaved in a shuffled order")
    if gap:
        notes.append(f"{gap} s idle before each timed call (thread pools of different "
                     "systems settle; --gap to change)")
    return harness.Result(NAME, TITLE.format(**dims),
                          {**dims, "learning_rate": LEARNING_RATE, "dtype": "float32",
                           "repeat": repeat, "gap_s": gap},
                          rows, notes)
