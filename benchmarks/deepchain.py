"""W3: a deep chain, value + gradient, peak memory with and without checkpointing.

A 64-layer tanh MLP of width 256 on a batch of 2048, float32: ``h =
tanh(h @ W_i + b_i)`` for i = 0..63, loss ``np.sum(h)``, value and gradient
w.r.t. the lists ``Ws`` (64 arrays 256x256) and ``bs`` (issue 4). One
activation is 2 MiB, all 64 are 128 MiB, the weights 16 MiB: activations
dominate, so what a system keeps for its backward pass shows in its peak.

Cases (each in its own subprocess, so that one case's freed memory and
thread pools don't disturb the next):

- handwritten NumPy keeping every activation (the reference);
- handwritten NumPy recomputing each of the sqrt(64) = 8 segments of 8
  layers in the backward pass (keeping only segment inputs);
- adtrans, a plain Python loop over the layers (no checkpointing);
- adtrans with each layer ``adtrans.checkpointed``;
- adtrans with every 8 layers (a segment function) ``adtrans.checkpointed``;
- JAX (``jax.jit`` of ``value_and_grad``) without and with ``jax.checkpoint``
  on each 8-layer segment; PyTorch without and with
  ``torch.utils.checkpoint`` on each segment; where installed.

Memory, measured on the second call (the first pays transforms and
compiles): ``peak traced`` is tracemalloc's peak during the call (it counts
NumPy's allocations, not JAX's or PyTorch's), started after the inputs
exist, so inputs are not counted and the returned gradients (16 MiB) are;
``peak RSS`` is the rise of the process's resident-set high-water mark over
its resident set before the call (``/proc/self/clear_refs`` resets the
mark; glibc is told to ``mmap`` every large block so that freed arrays leave
the resident set), which sees every system's memory. Time: the median of a
few calls (``min(repeat, 3)``): the NumPy cases (handwritten and adtrans)
are timed in this process, interleaved like the other workloads, the peers
in their own subprocesses (their thread pools would fight OpenBLAS's).

Every case's gradients are summarised (the value, and for each layer the
sums of dW and db against fixed random probes) and checked against the
handwritten case's summary.
"""

import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from benchmarks import harness

NAME = "deepchain"
TITLE = ("W3: {layers}-layer tanh MLP (width {width}, batch {batch}, float32), value + "
         "gradient w.r.t. Ws, bs; checkpointing every {seg} layers")
SIZES = {"full": dict(layers=64, width=256, batch=2048, seg=8),
         "tiny": dict(layers=16, width=16, batch=8, seg=4)}
WRT = ("Ws", "bs")
RTOL, ATOL_SCALE = 2e-3, 1e-3
MIB = 2.0 ** 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- programs

def layer(h, W, b):
    return np.tanh(h @ W + b)


def segment(h, Ws, bs):
    for W, b in zip(Ws, bs):
        h = np.tanh(h @ W + b)
    return h


def loss_plain(x, Ws, bs):
    h = x
    for W, b in zip(Ws, bs):
        h = np.tanh(h @ W + b)
    return np.sum(h)


# Set by ``make_checkpointed`` (adtrans may not have ``checkpointed`` yet);
# the two losses below look them up as globals when they are differentiated.
layer_ckpt = None
segment_ckpt = None
segmented = None


def loss_each(x, Ws, bs):
    h = x
    for W, b in zip(Ws, bs):
        h = layer_ckpt(h, W, b)
    return np.sum(h)


def loss_every(x, Ws, bs, seg):
    h = x
    for k in range(len(Ws) // seg):
        h = segment_ckpt(h, Ws[seg * k:seg * k + seg], bs[seg * k:seg * k + seg])
    return np.sum(h)


def loss_segmented(x, Ws, bs, seg):
    h = x
    for W, b in segmented(zip(Ws, bs), seg):
        h = np.tanh(h @ W + b)
    return np.sum(h)


def make_checkpointed():
    """Make ``layer_ckpt``, ``segment_ckpt`` and ``segmented``; ``None``, or why it can't."""
    global layer_ckpt, segment_ckpt, segmented
    status = harness.adtrans_status()
    if status is not None:
        return status
    import adtrans
    if not hasattr(adtrans, "checkpointed"):
        return "not available yet: adtrans has no checkpointed"
    try:
        layer_ckpt = adtrans.checkpointed(layer)
        segment_ckpt = adtrans.checkpointed(segment)
        segmented = adtrans.segmented
    except Exception as exc:    # not implemented yet, or broken: report it
        return "not available yet: " + harness.failure(exc)
    return None


def handwritten_value_and_grad(x, Ws, bs):
    """The reference: keep every activation, backward by hand."""
    hs = [x]
    h = x
    for W, b in zip(Ws, bs):
        h = np.tanh(h @ W + b)
        hs.append(h)
    value = np.sum(h)
    dh = np.ones_like(h)
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for i in range(len(Ws) - 1, -1, -1):
        out = hs.pop()
        dz = dh * (1 - out * out)
        dWs[i] = hs[-1].T @ dz
        dbs[i] = dz.sum(axis=0)
        dh = dz @ Ws[i].T
    return value, (dWs, dbs)


def handwritten_segments(x, Ws, bs, seg):
    """Keep only each segment's input; recompute the segment in the backward."""
    starts = list(range(0, len(Ws), seg))
    inputs = []
    h = x
    for k in starts:
        inputs.append(h)
        h = segment(h, Ws[k:k + seg], bs[k:k + seg])
    value = np.sum(h)
    del h
    dh = None
    dWs, dbs = [None] * len(Ws), [None] * len(Ws)
    for k in reversed(starts):
        hs = [inputs.pop()]
        for W, b in zip(Ws[k:k + seg], bs[k:k + seg]):
            hs.append(np.tanh(hs[-1] @ W + b))
        if dh is None:
            dh = np.ones_like(hs[-1])
        for i in range(k + len(hs) - 2, k - 1, -1):
            out = hs.pop()
            dz = dh * (1 - out * out)
            dWs[i] = hs[-1].T @ dz
            dbs[i] = dz.sum(axis=0)
            dh = dz @ Ws[i].T
    return value, (dWs, dbs)


def make_data(layers, width, batch, seed=0, **_):
    """(x, Ws, bs), float32, from ``seed``."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    Ws = [(rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
          for _ in range(layers)]
    bs = [(0.1 * rng.standard_normal(width)).astype(np.float32) for _ in range(layers)]
    return x, Ws, bs


# ---------------------------------------------------------------- cases
# Each builder takes (x, Ws, bs, seg) and returns (call, to_numpy, note), or a
# string saying why the case can't run. ``to_numpy(call())`` gives (value,
# (dWs, dbs)) as NumPy.

def _same(result):
    return result


def case_handwritten(x, Ws, bs, seg):
    return (lambda: handwritten_value_and_grad(x, Ws, bs)), _same, "reference; keeps every activation"


def case_handwritten_segments(x, Ws, bs, seg):
    return ((lambda: handwritten_segments(x, Ws, bs, seg)), _same,
            f"keeps segment inputs, recomputes each {seg}-layer segment")


def case_adtrans_plain(x, Ws, bs, seg):
    status = harness.adtrans_status()
    if status is not None:
        return status
    import adtrans
    return ((lambda: adtrans.value_with_gradient(loss_plain, x, Ws, bs, wrt=WRT)), _same,
            "plain loop over layers, no checkpointing")


def _checkpointed_case(loss, args, note):
    """An adtrans case differentiating `loss(*args)` w.r.t. Ws, bs, or why it can't run."""
    status = make_checkpointed()
    if status is not None:
        return status
    import adtrans
    return (lambda: adtrans.value_with_gradient(loss, *args, wrt=WRT)), _same, note


def case_adtrans_each(x, Ws, bs, seg):
    return _checkpointed_case(loss_each, (x, Ws, bs), "layer_ckpt = checkpointed(layer) called per layer")


def case_adtrans_every(x, Ws, bs, seg):
    return _checkpointed_case(loss_every, (x, Ws, bs, seg),
                              f"segment_ckpt = checkpointed(segment) on {seg}-layer slices")


def case_adtrans_segmented(x, Ws, bs, seg):
    return _checkpointed_case(loss_segmented, (x, Ws, bs, seg),
                              f"for W, b in segmented(zip(Ws, bs), {seg}): the last run is kept, not recomputed")


def _jax_case(x, Ws, bs, seg, checkpoint):
    jax = harness.import_peer("jax")
    if jax is None:
        return harness.missing_peer_status()
    import jax.numpy as jnp

    def j_segment(h, Ws, bs):
        for W, b in zip(Ws, bs):
            h = jnp.tanh(h @ W + b)
        return h
    run_segment = jax.checkpoint(j_segment) if checkpoint else j_segment

    def j_loss(Ws, bs, x):
        h = x
        for k in range(0, len(Ws), seg):
            h = run_segment(h, Ws[k:k + seg], bs[k:k + seg])
        return jnp.sum(h)
    vg = jax.jit(jax.value_and_grad(j_loss, argnums=(0, 1)))
    jx, jWs, jbs = jnp.asarray(x), [jnp.asarray(W) for W in Ws], [jnp.asarray(b) for b in bs]
    start = time.perf_counter()
    vg.lower(jWs, jbs, jx).compile()
    compile_s = time.perf_counter() - start

    def to_numpy(result):
        value, (dWs, dbs) = result
        return np.asarray(value), ([np.asarray(g) for g in dWs], [np.asarray(g) for g in dbs])
    note = (f"jax.checkpoint on each {seg}-layer segment" if checkpoint
            else "no checkpointing") + f"; jit compile {harness.format_seconds(compile_s)}"
    return (lambda: jax.block_until_ready(vg(jWs, jbs, jx))), to_numpy, note


def case_jax_plain(x, Ws, bs, seg):
    return _jax_case(x, Ws, bs, seg, checkpoint=False)


def case_jax_every(x, Ws, bs, seg):
    return _jax_case(x, Ws, bs, seg, checkpoint=True)


def _torch_case(x, Ws, bs, seg, checkpoint):
    torch = harness.import_peer("torch")
    if torch is None:
        return harness.missing_peer_status()
    import torch.utils.checkpoint
    tx = torch.from_numpy(x)
    tWs = [torch.from_numpy(W) for W in Ws]
    tbs = [torch.from_numpy(b) for b in bs]

    def t_segment(h, *params):
        half = len(params) // 2
        for W, b in zip(params[:half], params[half:]):
            h = torch.tanh(h @ W + b)
        return h

    def call():
        Ws_ = [W.detach().requires_grad_() for W in tWs]
        bs_ = [b.detach().requires_grad_() for b in tbs]
        h = tx
        for k in range(0, len(Ws_), seg):
            params = Ws_[k:k + seg] + bs_[k:k + seg]
            if checkpoint:
                h = torch.utils.checkpoint.checkpoint(t_segment, h, *params, use_reentrant=False)
            else:
                h = t_segment(h, *params)
        value = torch.sum(h)
        grads = torch.autograd.grad(value, Ws_ + bs_)
        return value.detach(), grads

    def to_numpy(result):
        value, grads = result
        half = len(grads) // 2
        return value.numpy(), ([g.numpy() for g in grads[:half]], [g.numpy() for g in grads[half:]])
    note = (f"torch.utils.checkpoint on each {seg}-layer segment" if checkpoint
            else "no checkpointing") + f"; {torch.get_num_threads()} threads"
    return call, to_numpy, note


def case_torch_plain(x, Ws, bs, seg):
    return _torch_case(x, Ws, bs, seg, checkpoint=False)


def case_torch_every(x, Ws, bs, seg):
    return _torch_case(x, Ws, bs, seg, checkpoint=True)


CASES = {
    "handwritten": case_handwritten,
    "handwritten, segments": case_handwritten_segments,
    "adtrans, no checkpointing": case_adtrans_plain,
    "adtrans, each layer checkpointed": case_adtrans_each,
    "adtrans, every 8 layers checkpointed": case_adtrans_every,
    "adtrans, segmented loop, runs of 8": case_adtrans_segmented,
    "jax.jit": case_jax_plain,
    "jax.jit + jax.checkpoint": case_jax_every,
    "torch": case_torch_plain,
    "torch + checkpoint": case_torch_every,
}


# ---------------------------------------------------------------- measuring

def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def _reset_peak_rss():
    """Reset VmHWM to the current RSS; False where the kernel can't."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def summarize(result, seed=1):
    """(value, probe sums per gradient): a small fingerprint of the gradients."""
    value, (dWs, dbs) = result
    rng = np.random.default_rng(seed)
    sums = []
    for group in (dWs, dbs):
        probe = rng.standard_normal(np.shape(group[0]))
        sums.extend(float(np.sum(np.asarray(g, dtype=np.float64) * probe)) for g in group)
    return float(value), sums, [str(np.asarray(g).dtype) for g in list(dWs) + list(dbs)]


def measure_case(name, size="full", calls=3):
    """Run one case in this process; a dict of what was measured (or why not)."""
    dims = SIZES[size]
    x, Ws, bs = make_data(**dims)
    try:
        built = CASES[name](x, Ws, bs, dims["seg"])
    except Exception as exc:      # a broken system is reported, not fatal
        return {"status": harness.failure(exc)}
    if isinstance(built, str):
        return {"status": built}
    call, to_numpy, note = built
    try:
        start = time.perf_counter()
        first = to_numpy(call())
        first_s = time.perf_counter() - start
        summary = summarize(first)
        del first
        gc.collect()

        # One call measures both: tracemalloc's own bookkeeping is small
        # beside 2 MiB arrays.
        reset = _reset_peak_rss()
        before = _status_kib("VmRSS")
        tracemalloc.start()
        result = call()
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rss = (_status_kib("VmHWM") - before) * 1024 if reset else None
        del result
        gc.collect()

        times = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    except Exception as exc:      # a broken system is reported, not fatal
        return {"status": harness.failure(exc), "note": note}
    return {"status": "ok", "note": note, "first_s": first_s, "times": times,
            "traced": traced, "rss": rss, "summary": summary}


def measure_in_subprocess(name, size, calls):
    env = dict(os.environ)
    # Every block above 64 KiB gets its own mmap, so a freed array leaves the
    # resident set at once and RSS measures what is live.
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    args = [sys.executable, "-m", "benchmarks.deepchain", "--case", name, "--size", size,
            "--calls", str(calls)]
    if harness.SKIP_PEERS:
        args.append("--no-peers")
    out = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return {"status": f"failed: subprocess exited {out.returncode}: "
                          f"{lines[-1] if lines else ''}"[:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_summary(name, got, want):
    """Raise ``harness.Disagreement`` unless two summaries agree."""
    value, sums, dtypes = got
    want_value, want_sums, want_dtypes = want
    harness.assert_close(f"{name}: value", value, want_value, RTOL, 1e-6, check_dtype=False)
    harness.assert_close(f"{name}: gradient probes", np.array(sums), np.array(want_sums),
                         RTOL, ATOL_SCALE, check_dtype=False)
    if name.startswith("adtrans") and dtypes != want_dtypes:
        odd = sorted(set(dtypes) - set(want_dtypes))
        raise harness.Disagreement(f"{name}: gradients of dtype {odd}, expected float32")


def check_adtrans(size="tiny"):
    """Every adtrans case that can run agrees with the reference, array by array.

    Returns the cases that could not run (checkpointing not there yet).
    """
    dims = SIZES[size]
    x, Ws, bs = make_data(**dims)
    want_value, (want_dWs, want_dbs) = handwritten_value_and_grad(x, Ws, bs)
    skipped = {}
    for name, case in CASES.items():
        if name != "handwritten, segments" and not name.startswith("adtrans"):
            continue
        built = case(x, Ws, bs, dims["seg"])
        if isinstance(built, str):
            if name == "adtrans, no checkpointing":
                raise RuntimeError(f"adtrans {built}")
            skipped[name] = built
            continue
        call, to_numpy, _ = built
        value, (dWs, dbs) = to_numpy(call())
        harness.assert_close(f"{name}: value", value, want_value, 1e-5, 1e-6)
        if len(dWs) != len(want_dWs) or len(dbs) != len(want_dbs):
            raise harness.Disagreement(f"{name}: {len(dWs)}, {len(dbs)} gradients")
        for i, (got, want) in enumerate(zip(list(dWs) + list(dbs), want_dWs + want_dbs)):
            harness.assert_close(f"{name}: gradient {i}", got, want, 1e-4, 1e-5)
    return skipped


def generated_source():
    import adtrans
    return adtrans.generated_source(loss_plain, wrt=WRT)


def run(repeat=15, size="full"):
    dims = SIZES[size]
    calls = max(1, min(repeat, 7))     # a 1.4x aim needs more than three rounds on this machine
    names = [name.replace("8", str(dims["seg"])) for name in CASES]
    rows, notes, measured = [], [], {}
    in_process = {}          # the NumPy cases, timed here, interleaved
    for name, label in zip(CASES, names):
        harness.eprint(f"  deepchain: {label} ...")
        local = name.startswith(("handwritten", "adtrans"))
        record = measure_in_subprocess(name, size, 0 if local else calls)
        if local and record["status"] == "ok":
            in_process[name] = label
        measured[name] = record
        time_row = harness.Row(label, "value+grad", note=record.get("note", ""))
        traced_row = harness.Row(label, "peak traced", unit="MiB")
        rss_row = harness.Row(label, "peak RSS", unit="MiB")
        rows.extend([time_row, traced_row, rss_row])
        if record["status"] != "ok":
            for row in (time_row, traced_row, rss_row):
                row.status = record["status"]
            continue
        if name != "handwritten" and measured["handwritten"].get("status") == "ok":
            try:
                check_summary(label, record["summary"], measured["handwritten"]["summary"])
            except harness.Disagreement as exc:
                for row in (time_row, traced_row, rss_row):
                    row.status = f"failed: disagrees with the reference: {exc}"
                continue
        time_row.samples = record["times"]
        time_row.note = "; ".join(filter(None, [
            time_row.note, f"first call {harness.format_seconds(record['first_s'])}"]))
        is_numpy = name.startswith(("handwritten", "adtrans"))
        if is_numpy:
            traced_row.samples = [record["traced"] / MIB]
        else:
            traced_row.status = "not seen by tracemalloc (own allocator)"
        if record["rss"] is not None:
            rss_row.samples = [record["rss"] / MIB]
        else:
            rss_row.status = "unavailable: /proc/self/clear_refs not writable"
    if in_process:
        x, Ws, bs = make_data(**dims)
        timed = {}
        for name in in_process:
            timed[name] = CASES[name](x, Ws, bs, dims["seg"])[0]
        samples = harness.time_interleaved(timed, rounds=calls, warmup=1)
        for name, label in in_process.items():
            row = next(r for r in rows if r.system == label and r.measure == "value+grad")
            if row.status == "ok":
                row.samples = samples[name]
        del x, Ws, bs, timed
    harness.fill_ratios(rows, reference=names[0])
    for row in rows:   # one memory sample: "paired" says nothing more than "ratio"
        if row.unit != "s":
            row.paired = None

    def median(label, measure):
        row = next(r for r in rows if r.system == label and r.measure == measure)
        return row.median
    plain = names[2]
    for every in names[4:6]:
        for measure in ("value+grad", "peak traced", "peak RSS"):
            a, b = median(plain, measure), median(every, measure)
            if a and b:
                notes.append(f"{every} / {plain}, {measure}: {b / a:.2f}x")
    a, b = median(names[0], "value+grad"), median(names[1], "value+grad")
    if a and b:
        notes.append(f"handwritten: segments / keep-all time {b / a:.2f}x")
    notes.append("memory: each case in its own subprocess, its second call, above the "
                 "memory before it (inputs not counted, returned gradients counted)")
    notes.append(f"time: median of {calls} calls; handwritten and adtrans interleaved in "
                 "this process (ratio and paired as elsewhere), JAX and PyTorch in their "
                 "own subprocesses; 'first call' is a fresh process's (transform, compile)")
    notes.append("ratio: to the handwritten keep-all case (time, traced, RSS each)")
    return harness.Result(NAME, TITLE.format(**dims), dict(dims, dtype="float32", calls=calls),
                          rows, notes)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description="measure one deepchain case (JSON out)")
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--size", default="full", choices=sorted(SIZES))
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args(argv)
    harness.SKIP_PEERS = args.no_peers
    print(json.dumps(measure_case(args.case, args.size, args.calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
