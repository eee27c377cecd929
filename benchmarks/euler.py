"""W2: a 1000-step explicit Euler integration on Python floats, gradient per call.

A damped oscillator ``x'' = -x - c x'`` integrated from (x0, v0) with step
0.01; the result is the final position, differentiated w.r.t. the initial
position, velocity and the damping ``c`` (issue 3). Nothing here is an array:
the time is the cost of recording 1000 iterations and replaying them
backwards, so the interesting ratios are gradient / function (the aim is 3x
or less; the cheap-gradient principle puts ideal reverse mode at 3-4x) and
adtrans / a handwritten reverse-mode gradient in plain Python.

Also measured: the time to the first gradient in a fresh Python process
(transform + first call, after ``import adtrans``; issue 6's aim is under
50 ms), each sample its own subprocess.

Peers run the very same ``euler`` function (its operators are overloaded by
autograd, JAX and PyTorch), except ``jax.jit``, which gets the loop as a
``lax.fori_loop``: jitting the unrolled Python loop takes ~26 s to compile
(issue 6), too long for a default run.
"""

import math
import os
import statistics
import time

from benchmarks import harness

NAME = "euler"
TITLE = ("W2: 1000-step explicit Euler of a damped oscillator on Python floats, "
         "gradient w.r.t. x0, v0, c per call")
X0, V0, C = 1.0, 0.5, 0.3
DT = 0.01
STEPS = {"full": 1000, "tiny": 20}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def euler(x0, v0, c):
    x, v = x0, v0
    dt = 0.01
    for i in range(1000):
        a = -x - c * v
        x = x + dt * v
        v = v + dt * a
    return x


def euler_tiny(x0, v0, c):
    """``euler`` with 20 steps, for the smoke tests."""
    x, v = x0, v0
    dt = 0.01
    for i in range(20):
        a = -x - c * v
        x = x + dt * v
        v = v + dt * a
    return x


FUNCTIONS = {"full": euler, "tiny": euler_tiny}


def handwritten_gradient(x0, v0, c, steps=1000):
    """The reference: reverse mode by hand, keeping only each step's ``v``."""
    x, v = x0, v0
    dt = DT
    vs = []
    for i in range(steps):
        vs.append(v)
        a = -x - c * v
        x = x + dt * v
        v = v + dt * a
    dx, dv, dc = 1.0, 0.0, 0.0
    for v in reversed(vs):
        # a = -x - c v;  x' = x + dt v;  v' = v + dt a
        da = dt * dv
        dc -= v * da
        dv = dv + dt * dx - c * da
        dx = dx - da
    return dx, dv, dc


# Each builder returns (call, to_floats, rtol, note), or None when the system
# is not installed. ``call()`` computes the gradient at (X0, V0, C) once.

def build_adtrans(fn, steps):
    if harness.adtrans_status() is not None:
        return None
    import adtrans
    return (lambda: adtrans.gradient(fn, X0, V0, C)), tuple, 1e-12, "gradient(euler, x0, v0, c)"


def build_autograd(fn, steps):
    autograd = harness.import_peer("autograd")
    if autograd is None:
        return None
    grad_f = autograd.grad(fn, argnum=(0, 1, 2))
    return (lambda: grad_f(X0, V0, C)), (lambda r: tuple(map(float, r))), 1e-12, ""


def _jax_floats(result):
    return tuple(float(v) for v in result)


def build_jax_eager(fn, steps):
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    grad_f = jax.grad(fn, argnums=(0, 1, 2))
    # float32 unless jax_enable_x64 is set: 1000 float32 steps drift ~1e-6.
    return (lambda: jax.block_until_ready(grad_f(X0, V0, C))), _jax_floats, 1e-4, "float32"


def build_jax_jit(fn, steps):
    jax = harness.import_peer("jax")
    if jax is None:
        return None

    def fori(x0, v0, c):
        def body(i, xv):
            x, v = xv
            a = -x - c * v
            return x + DT * v, v + DT * a
        return jax.lax.fori_loop(0, steps, body, (x0, v0))[0]
    grad_f = jax.jit(jax.grad(fori, argnums=(0, 1, 2)))
    start = time.perf_counter()
    jax.block_until_ready(grad_f(X0, V0, C))
    compile_s = time.perf_counter() - start
    return ((lambda: jax.block_until_ready(grad_f(X0, V0, C))), _jax_floats, 1e-4,
            f"float32, lax.fori_loop; first call (trace + compile) "
            f"{harness.format_seconds(compile_s)}")


def build_torch(fn, steps):
    torch = harness.import_peer("torch")
    if torch is None:
        return None

    def call():
        args = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (X0, V0, C)]
        return torch.autograd.grad(fn(*args), args)
    return call, (lambda r: tuple(float(v) for v in r)), 1e-12, "float64 tensors"


SYSTEMS = [
    ("adtrans", build_adtrans),
    ("autograd", build_autograd),
    ("jax (eager)", build_jax_eager),
    ("jax.jit", build_jax_jit),
    ("torch", build_torch),
]


def check_result(name, got, rtol, strict_type, steps):
    """Raise ``harness.Disagreement`` unless ``got`` matches the reference."""
    want = handwritten_gradient(X0, V0, C, steps)
    if len(got) != 3:
        raise harness.Disagreement(f"{name}: {len(got)} gradients, expected 3")
    for label, g, w in zip(("dx0", "dv0", "dc"), got, want):
        if strict_type and not isinstance(g, float):
            raise harness.Disagreement(f"{name}: {label} is {type(g).__name__}, expected float")
        if not math.isclose(g, w, rel_tol=rtol, abs_tol=rtol):
            raise harness.Disagreement(f"{name}: {label} = {g!r}, expected {w!r}")


def check_adtrans(size="tiny"):
    """adtrans's gradient against the handwritten one; raises on a difference."""
    status = harness.adtrans_status()
    if status is not None:
        raise RuntimeError(f"adtrans {status}")
    call, to_floats, rtol, note = build_adtrans(FUNCTIONS[size], STEPS[size])
    check_result("adtrans", to_floats(call()), rtol, strict_type=True, steps=STEPS[size])


def generated_source():
    import adtrans
    return adtrans.generated_source(euler)


_FIRST_GRADIENT = """
import sys, time, json
sys.path.insert(0, {root!r})
start = time.perf_counter()
import adtrans
imported = time.perf_counter()
from benchmarks import euler
defined = time.perf_counter()
adtrans.gradient(euler.{fn}, {x0!r}, {v0!r}, {c!r})
done = time.perf_counter()
print(json.dumps({{"import_s": imported - start, "first_s": done - defined}}))
"""


def first_gradient_times(size="full", runs=5):
    """(first-gradient seconds, import seconds) of ``runs`` fresh processes."""
    code = _FIRST_GRADIENT.format(root=ROOT, fn=FUNCTIONS[size].__name__, x0=X0, v0=V0, c=C)
    records = harness.run_fresh(code, runs)
    return [r["first_s"] for r in records], [r["import_s"] for r in records]


def run(repeat=15, size="full"):
    fn, steps = FUNCTIONS[size], STEPS[size]
    rows = [harness.Row("handwritten", "gradient", note="reference: reverse mode by hand"),
            harness.Row("python", "forward", note="euler(x0, v0, c) called directly")]
    calls = {("handwritten", "gradient"): lambda: handwritten_gradient(X0, V0, C, steps),
             ("python", "forward"): lambda: fn(X0, V0, C)}
    def check(name, built):
        call, to_floats, rtol, note = built
        check_result(name, to_floats(call()), rtol, name == "adtrans", steps)
        return call, note

    harness.add_checked_systems(rows, calls, SYSTEMS, "gradient", lambda b: b(fn, steps), check)

    harness.time_and_compare(rows, calls, repeat, "gradient", digits=1)

    first = harness.Row("adtrans", "first gradient",
                        note="fresh process: transform + first call, after import adtrans")
    rows.append(first)
    if harness.adtrans_status() is None:
        try:
            first.samples, imports = first_gradient_times(size, runs=max(1, min(repeat, 5)))
            first.note += f"; import adtrans {harness.format_seconds(statistics.median(imports))}"
        except Exception as exc:    # report, keep the other numbers
            first.status = harness.failure(exc)
    else:
        first.status = harness.adtrans_status()
    return harness.Result(NAME, TITLE.replace("1000", str(steps)),
                          {"x0": X0, "v0": V0, "c": C, "steps": steps, "repeat": repeat},
                          rows,
                          ["each sample: a timeit loop of ~50 ms, divided by its loop count; "
                           "samples interleaved across systems",
                           "ratio: median / the handwritten reference's median; paired: "
                           "median of per-round ratios; 'Nx forward': median / euler()'s median",
                           "first gradient: one fresh subprocess per sample (aim < 50 ms)"])
