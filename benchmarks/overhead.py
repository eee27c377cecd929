"""W4: what adtrans costs besides the arithmetic: the transform, and each cached call.

- **Transform** of the W1 model (``mlp.loss``: two matmuls, ReLU, MSE) in a
  fresh Python process, after ``import numpy, adtrans``: the first
  ``value_with_gradient`` call minus the second one (on 8-row inputs, so the
  arithmetic is negligible), twice: *cold* (the first differentiation in the
  process: it also loads the compiler and the derivative rules) and *warm*
  (the compiler and rules already loaded by differentiating another
  function, the cost of each further function in a session). Issue 6's aim:
  under 20 ms. Against it, ``jax.jit``'s trace + compile of the same
  value-and-gradient where JAX is installed (in the same kind of fresh
  process). Fresh processes use a bytecode cache, as an installed package
  would (see ``harness.fresh_process_env``).
- **Cached-call overhead**: on inputs so small that overhead is most of the
  time (the gradient of ``x * 2.0`` on a float; the W1 model's value and
  gradient on 8x784 float32 inputs), a cached call through the API against
  the generated function it runs, called directly (``adtrans code``): their
  difference is the API's overhead (finding the plan, checking arguments,
  shaping the result). Aim: under 5 us. The handwritten gradient is timed
  beside them: the difference between it and ``adtrans code`` is the
  generated code's own, not overhead.
"""

import os
import statistics

from benchmarks import harness, mlp

NAME = "overhead"
TITLE = "W4: transform time (W1 model) and cached-call overhead"
ROWS = 8
WRT = ("W1", "b1", "W2", "b2")
GENERATED = "adtrans code"    # the generated function alone, without the API around it
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_FIRST_CALL = """
import sys, time, json
sys.path.insert(0, {root!r})
import numpy as np
import adtrans
from benchmarks import mlp
args = mlp.make_data({rows})
wrt = ("W1", "b1", "W2", "b2")
if {warm!r}:
    from benchmarks import overhead
    adtrans.gradient(overhead.scale, 1.5)   # loads the compiler and the rules
start = time.perf_counter()
adtrans.value_with_gradient(mlp.loss, *args, wrt=wrt)
first = time.perf_counter()
adtrans.value_with_gradient(mlp.loss, *args, wrt=wrt)
second = time.perf_counter()
print(json.dumps({{"transform_s": (first - start) - (second - first)}}))
"""

_JAX_COMPILE = """
import sys, time, json
sys.path.insert(0, {root!r})
import numpy as np
import jax, jax.numpy as jnp
from benchmarks import mlp
args = [jnp.asarray(a) for a in mlp.make_data({rows})]

def loss(W1, b1, W2, b2, X, Y):
    h = jnp.maximum(X @ W1 + b1, 0.0)
    return jnp.mean((h @ W2 + b2 - Y) ** 2)

step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
start = time.perf_counter()
jax.block_until_ready(step(*args))
first = time.perf_counter()
jax.block_until_ready(step(*args))
second = time.perf_counter()
print(json.dumps({{"transform_s": (first - start) - (second - first)}}))
"""


def scale(x):
    return x * 2.0


def handwritten_scale_gradient(x):
    return 2.0


def _fresh_samples(template, runs, **fields):
    code = template.format(root=ROOT, rows=ROWS, **fields)
    return [r["transform_s"] for r in harness.run_fresh(code, runs)]


def run(repeat=15, size="full"):
    runs = max(1, min(repeat, 7 if size == "full" else 2))
    status = harness.adtrans_status()
    call_rows, calls = _cached_calls(status)
    rows = list(call_rows)
    if calls:
        samples = harness.time_per_call_interleaved(calls, repeat=repeat)
        for row in call_rows:
            row.samples = samples.get((row.system, row.measure), [])
        harness.fill_ratios(call_rows, reference="handwritten")
        for measure in ("call: float", "call: W1 8 rows"):
            code = next(r for r in call_rows if r.system == GENERATED and r.measure == measure)
            api = next(r for r in call_rows if r.system == "adtrans" and r.measure == measure)
            if code.samples and api.samples:
                pairs = [a - c for a, c in zip(api.samples, code.samples)]
                api.note += (f"; API overhead {harness.format_seconds(statistics.median(pairs))} "
                             f"per call (paired, vs the generated code alone)")
    transform_rows = [
        harness.Row("adtrans", "transform (cold)",
                    note="first differentiation in a fresh process: loads the compiler and rules"),
        harness.Row("adtrans", "transform (warm)",
                    note="compiler and rules already loaded: each further function"),
    ]
    rows += transform_rows
    for row, warm in zip(transform_rows, (False, True)):
        if status is not None:
            row.status = status
            continue
        try:
            row.samples = _fresh_samples(_FIRST_CALL, runs, warm=warm)
        except Exception as exc:    # report, keep the other numbers
            row.status = harness.failure(exc)
    jax_row = harness.Row("jax.jit", "transform (cold)", note="trace + compile of value_and_grad")
    rows.append(jax_row)
    if harness.import_peer("jax") is None:
        jax_row.status = harness.missing_peer_status()
    else:
        try:
            jax_row.samples = _fresh_samples(_JAX_COMPILE, runs)
        except Exception as exc:
            jax_row.status = harness.failure(exc)

    return harness.Result(NAME, TITLE, {"rows": ROWS, "repeat": repeat, "fresh_runs": runs}, rows,
                          ["transform: first call minus second call, fresh processes (one "
                           "sample each), inputs of 8 rows",
                           "call: timeit loops interleaved; API overhead = median over rounds of "
                           "(adtrans - adtrans code), aim < 5 us"])


def _cached_calls(status):
    args = mlp.make_data(ROWS)
    rows = [harness.Row("handwritten", "call: float", note="reference: d(2x)/dx = 2.0"),
            harness.Row("handwritten", "call: W1 8 rows", note="reference: mlp's handwritten gradient")]
    calls = {("handwritten", "call: float"): lambda: handwritten_scale_gradient(1.5),
             ("handwritten", "call: W1 8 rows"): lambda: mlp.handwritten_value_and_grad(*args)}
    adtrans_rows = [harness.Row("adtrans", "call: float", note="gradient(scale, 1.5)"),
                    harness.Row("adtrans", "call: W1 8 rows", note="value_with_gradient(loss, ...)")]
    generated_rows = [harness.Row(GENERATED, "call: float", note="the generated function called directly"),
                      harness.Row(GENERATED, "call: W1 8 rows", note="the generated function called directly")]
    rows += generated_rows + adtrans_rows
    if status is not None:
        for row in adtrans_rows + generated_rows:
            row.status = status
        return rows, calls
    import adtrans
    from adtrans import api

    if adtrans.gradient(scale, 1.5) != 2.0:
        raise harness.Disagreement("adtrans: d(2x)/dx != 2.0")
    value, grads = adtrans.value_with_gradient(mlp.loss, *args, wrt=WRT)
    want_value, want = mlp.handwritten_value_and_grad(*args)
    harness.assert_close("value", value, want_value, 1e-3, 1e-4)
    for label, g, w in zip(WRT, grads, want):
        harness.assert_close(label, g, w, 1e-3, 1e-4)
    # What gradient() runs once it has found its plan: the fused value-and-gradient function.
    scale_fused = api._plan_for(scale, (1.5,), {}, None).fused
    loss_fused = api._plan_for(mlp.loss, args, {}, WRT).fused
    calls[("adtrans", "call: float")] = lambda: adtrans.gradient(scale, 1.5)
    calls[("adtrans", "call: W1 8 rows")] = lambda: adtrans.value_with_gradient(mlp.loss, *args, wrt=WRT)
    calls[(GENERATED, "call: float")] = lambda: scale_fused(1.5)
    calls[(GENERATED, "call: W1 8 rows")] = lambda: loss_fused(*args)
    return rows, calls


def generated_source():
    import adtrans

    return adtrans.generated_source(mlp.loss, wrt=WRT)


if __name__ == "__main__":
    print(harness.format_table(run(repeat=9)))
