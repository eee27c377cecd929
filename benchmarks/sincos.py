"""W2-lite: a scalar Python function of two floats, gradient per call.

``f(x, y) = sin(sin(sin(x))) + cos(cos(cos(y)))`` written with ``math``, at
(x, y) = (2.0, 3.0). Nothing here is an array: the time is all per-call
overhead, which is what a source-to-source compiler should remove. The
reference is a handwritten gradient function in plain Python; adtrans is
timed both through ``gradient(f, x, y)`` (cache lookup on every call) and
through a function made once by ``gradient_of(f)``. Each sample is a timeit
loop of about 50 ms; samples of the systems are interleaved.
"""

import math

from benchmarks import harness

NAME = "sincos"
TITLE = "W2-lite: sin(sin(sin(x))) + cos(cos(cos(y))) with math, gradient per call"
X0, Y0 = 2.0, 3.0


def f(x, y):
    return math.sin(math.sin(math.sin(x))) + math.cos(math.cos(math.cos(y)))


def handwritten_gradient(x, y):
    """The reference: the chain rule by hand."""
    s1 = math.sin(x)
    s2 = math.sin(s1)
    c1 = math.cos(y)
    c2 = math.cos(c1)
    dx = math.cos(s2) * math.cos(s1) * math.cos(x)
    dy = -math.sin(c2) * math.sin(c1) * math.sin(y)
    return dx, dy


# Each builder returns (call, to_floats, rtol, note), or None when the system
# is not installed. ``call()`` computes the gradient at (X0, Y0) once.

def build_adtrans():
    if harness.adtrans_status() is not None:
        return None
    import adtrans
    return (lambda: adtrans.gradient(f, X0, Y0)), tuple, 1e-12, "gradient(f, x, y)"


def build_adtrans_of():
    if harness.adtrans_status() is not None:
        return None
    import adtrans
    grad_f = adtrans.gradient_of(f)
    return (lambda: grad_f(X0, Y0)), tuple, 1e-12, "g = gradient_of(f); g(x, y)"


def build_autograd():
    autograd = harness.import_peer("autograd")
    if autograd is None:
        return None
    anp = harness.import_peer("autograd.numpy")

    def ag_f(x, y):
        return anp.sin(anp.sin(anp.sin(x))) + anp.cos(anp.cos(anp.cos(y)))
    grad_f = autograd.grad(ag_f, argnum=(0, 1))
    return (lambda: grad_f(X0, Y0)), (lambda r: tuple(map(float, r))), 1e-12, ""


def _jax_f(jnp):
    def j_f(x, y):
        return jnp.sin(jnp.sin(jnp.sin(x))) + jnp.cos(jnp.cos(jnp.cos(y)))
    return j_f


def _jax_floats(result):
    return tuple(float(v) for v in result)


def build_jax_eager():
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    import jax.numpy as jnp
    grad_f = jax.grad(_jax_f(jnp), argnums=(0, 1))
    # JAX computes in float32 unless jax_enable_x64 is set.
    return (lambda: jax.block_until_ready(grad_f(X0, Y0))), _jax_floats, 1e-5, "float32"


def build_jax_jit():
    jax = harness.import_peer("jax")
    if jax is None:
        return None
    import jax.numpy as jnp
    import time
    grad_f = jax.jit(jax.grad(_jax_f(jnp), argnums=(0, 1)))
    start = time.perf_counter()
    jax.block_until_ready(grad_f(X0, Y0))
    compile_s = time.perf_counter() - start
    return ((lambda: jax.block_until_ready(grad_f(X0, Y0))), _jax_floats, 1e-5,
            f"float32; first call (trace + compile) {harness.format_seconds(compile_s)}")


def build_torch():
    torch = harness.import_peer("torch")
    if torch is None:
        return None

    def call():
        x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
        y = torch.tensor(Y0, dtype=torch.float64, requires_grad=True)
        out = torch.sin(torch.sin(torch.sin(x))) + torch.cos(torch.cos(torch.cos(y)))
        return torch.autograd.grad(out, (x, y))
    return call, (lambda r: tuple(float(v) for v in r)), 1e-12, "float64 tensors made per call"


SYSTEMS = [
    ("adtrans", build_adtrans),
    ("adtrans (gradient_of)", build_adtrans_of),
    ("autograd", build_autograd),
    ("jax (eager)", build_jax_eager),
    ("jax.jit", build_jax_jit),
    ("torch", build_torch),
]


def check_result(name, got, rtol, strict_type):
    """Raise ``harness.Disagreement`` unless ``got`` matches the reference."""
    want = handwritten_gradient(X0, Y0)
    if len(got) != 2:
        raise harness.Disagreement(f"{name}: {len(got)} gradients, expected 2")
    for label, g, w in zip(("dx", "dy"), got, want):
        if strict_type and not isinstance(g, float):
            raise harness.Disagreement(f"{name}: {label} is {type(g).__name__}, expected float")
        if not math.isclose(g, w, rel_tol=rtol, abs_tol=rtol):
            raise harness.Disagreement(f"{name}: {label} = {g!r}, expected {w!r}")


def check_adtrans():
    """adtrans's gradient of f against the handwritten one; raises on a difference."""
    status = harness.adtrans_status()
    if status is not None:
        raise RuntimeError(f"adtrans {status}")
    for builder in (build_adtrans, build_adtrans_of):
        call, to_floats, rtol, note = builder()
        check_result(f"adtrans ({note})", to_floats(call()), rtol, strict_type=True)


def generated_source():
    import adtrans
    return adtrans.generated_source(f)


def run(repeat=15, size="full"):
    del size    # scalars: one size
    rows = [harness.Row("handwritten", "gradient", note="reference"),
            harness.Row("python", "forward", note="f(x, y) called directly")]
    calls = {("handwritten", "gradient"): lambda: handwritten_gradient(X0, Y0),
             ("python", "forward"): lambda: f(X0, Y0)}
    def check(name, built):
        call, to_floats, rtol, note = built
        check_result(name, to_floats(call()), rtol, strict_type=name.startswith("adtrans"))
        return call, note

    harness.add_checked_systems(rows, calls, SYSTEMS, "gradient", lambda b: b(), check)

    harness.time_and_compare(rows, calls, repeat, "gradient", digits=1)
    return harness.Result(NAME, TITLE, {"x": X0, "y": Y0, "repeat": repeat}, rows,
                          ["each sample: a timeit loop of ~50 ms, divided by its "
                           "loop count; samples interleaved across systems",
                           "ratio: median / the handwritten reference's median; paired: "
                           "median of per-round ratios"])
