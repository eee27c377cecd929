"""The benchmark workloads at tiny sizes: adtrans agrees with the handwritten
references, and the runner works end to end.

Correctness only: nothing here asserts a time.
"""

import json
import math
import os
import sys

import numpy as np
import pytest

# benchmarks/ is a folder of the repository, not part of the installed package.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness, mlp, run, sincos  # noqa: E402


# ------------------------------------------------ the references themselves

def test_mlp_reference_matches_finite_differences():
    W1, b1, W2, b2, X, Y = (a.astype(np.float64) for a in mlp.make_data(20))
    value, grads = mlp.handwritten_value_and_grad(W1, b1, W2, b2, X, Y)
    assert value == pytest.approx(mlp.loss(W1, b1, W2, b2, X, Y), rel=1e-12)
    params = [W1, b1, W2, b2]
    rng = np.random.default_rng(1)
    eps = 1e-6
    for i, (param, grad) in enumerate(zip(params, grads)):
        assert grad.shape == param.shape
        direction = rng.standard_normal(param.shape)
        plus = list(params)
        minus = list(params)
        plus[i] = param + eps * direction
        minus[i] = param - eps * direction
        numeric = (mlp.loss(*plus, X, Y) - mlp.loss(*minus, X, Y)) / (2 * eps)
        assert np.sum(grad * direction) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_mlp_reference_keeps_float32():
    value, grads = mlp.handwritten_value_and_grad(*mlp.make_data(10))
    assert np.asarray(value).dtype == np.float32
    assert [g.dtype for g in grads] == [np.float32] * 4


def test_sincos_reference_matches_the_tutorial_and_finite_differences():
    dx, dy = sincos.handwritten_gradient(2.0, 3.0)
    assert dx == pytest.approx(-0.18009877594743354, rel=1e-15)
    eps = 1e-6
    numeric_dy = (sincos.f(2.0, 3.0 + eps) - sincos.f(2.0, 3.0 - eps)) / (2 * eps)
    assert dy == pytest.approx(numeric_dy, rel=1e-7)


# ------------------------------------------------ adtrans against them
# adtrans is the package under test: these fail, never skip, when it breaks.

def test_adtrans_mlp_gradients_agree_with_handwritten():
    mlp.check_adtrans(n=200)


def test_adtrans_sincos_gradient_agrees_with_handwritten():
    sincos.check_adtrans()


def test_adtrans_generated_source_is_available_for_each_workload():
    for module in (mlp, sincos):
        source = module.generated_source()
        assert isinstance(source, str) and "def " in source


def test_disagreement_is_detected():
    want = np.ones(3, dtype=np.float32)
    with pytest.raises(harness.Disagreement, match="largest difference"):
        harness.assert_close("d", want * 1.01, want, rtol=1e-3, atol_scale=1e-4)
    with pytest.raises(harness.Disagreement, match="dtype float64"):
        harness.assert_close("d", want.astype(np.float64), want, rtol=1e-3, atol_scale=1e-4)


# ------------------------------------------------ the runner, end to end

@pytest.mark.parametrize("workload", sorted(run.WORKLOADS))
def test_runner_reports_every_system(workload, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert run.main(["--only", workload, "--size", "tiny", "--repeat", "2",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("machine: ")
    payload = json.loads(out.read_text())
    assert payload["machine"]["numpy"] == np.__version__
    (result,) = payload["results"]
    rows = {row["system"]: row for row in result["rows"]}
    assert rows["handwritten"]["ratio"] == 1.0
    assert rows["handwritten"]["median_s"] > 0
    # adtrans was measured, so it agreed with the reference.
    assert rows["adtrans"]["status"] == "ok", rows["adtrans"]["status"]
    assert rows["adtrans"]["median_s"] > 0 and math.isfinite(rows["adtrans"]["ratio"])
    peers = {"autograd": "autograd", "jax (eager)": "jax", "jax.jit": "jax", "torch": "torch"}
    for name, module in peers.items():
        if harness.try_import(module) is None:
            assert rows[name]["status"] == "not installed"
