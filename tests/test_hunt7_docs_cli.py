"""Hunt 7b: what the documentation promises, and the ``adtrans`` command line.

Part 1 runs the code examples of README.md and docs/*.md (completed the way a
reader would) and checks the values, gradients and printed output the text
around them gives; then one test per "Decisions" bullet of docs/index.md and
docs/control_flow.md that would fail if adtrans did otherwise.

Part 2 runs ``python -m adtrans dump/check`` in a subprocess on small files
written to ``tmp_path``: methods, lambdas, nested functions, errors with
file:line:col, files that do not parse, unknown names, bad ``--wrt``, forward
mode, sibling imports and ``if __name__ == "__main__":`` blocks.

Bugs are kept as the correct expectation, ``xfail(strict=True)``, with the doc
line they contradict in the reason.
"""

import functools
import math
import os
import re
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import adtrans

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def fd(f, x, eps=1e-6):
    """Central difference of a scalar function of a float."""
    return (f(x + eps) - f(x - eps)) / (2 * eps)


def fd_array(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


def run_cli(*args, cwd):
    """``python -m adtrans ...`` in a fresh interpreter importing this checkout's adtrans."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", "adtrans", *map(str, args)], capture_output=True, text=True,
                          cwd=str(cwd), env=env, timeout=120)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def doc_block(doc_text, after):
    """The fenced block that follows the line `after` in a doc."""
    start = doc_text.index(after) + len(after)
    start = doc_text.index("\n", doc_text.index("```", start)) + 1
    return doc_text[start:doc_text.index("```", start)]


# =====================================================================================
# Part 1a: README.md
# =====================================================================================


def readme_f(x, y):
    return math.sin(x) * y


def silly_exp(x):
    return math.pow(math.e, x)


SILLY_CALLS = []


@adtrans.derivative(of=silly_exp)
def silly_exp_vjp(x):
    SILLY_CALLS.append(x)
    y = silly_exp(x)
    return y, lambda v: v * y


def readme_g(x, y):
    a = math.sin(x) + adtrans.without_derivative(math.cos(y))    # no derivative w.r.t. y
    b = adtrans.with_derivative(math.log(x), lambda d: print("cotangent of log(x):", d))
    return a + b


def test_readme_usage_example(capsys):
    assert adtrans.gradient(readme_f, 1.0, 2.0) == (2 * math.cos(1.0), math.sin(1.0))
    assert adtrans.gradient(readme_f, 1.0, 2.0, wrt="x") == 2 * math.cos(1.0)
    value, pullback = adtrans.value_with_pullback(readme_f, 1.0, 2.0)
    assert value == readme_f(1.0, 2.0)
    # "same as the gradient; callable many times"
    assert pullback(1.0) == adtrans.gradient(readme_f, 1.0, 2.0)
    assert pullback(1.0) == adtrans.gradient(readme_f, 1.0, 2.0)

    SILLY_CALLS.clear()
    assert adtrans.gradient(silly_exp, 3.0) == pytest.approx(math.e ** 3, rel=1e-15)
    assert SILLY_CALLS == [3.0]                  # "through silly_exp_vjp"

    capsys.readouterr()
    g = adtrans.gradient(readme_g, 2.0, 3.0)
    assert g == (pytest.approx(math.cos(2.0) + 0.5, rel=1e-15), 0.0)
    assert capsys.readouterr().out == "cotangent of log(x): 1.0\n"


def test_readme_generated_code_of_foo_is_current(tmp_path):
    text = (ROOT / "README.md").read_text()
    shown = doc_block(text, "`adtrans dump examples/custom_differentiation.py:foo` prints:")
    result = run_cli("dump", "examples/custom_differentiation.py:foo", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


# =====================================================================================
# Part 1b: docs/cli.md examples (the check output and the --wrt dump are not pinned elsewhere)
# =====================================================================================

CLI_MODEL = """\
import math


def scaled_sine(x, y):
    return math.sin(x) * y


def truncated_sum(x, y):
    return float(int(x + y))


def main():
    print(scaled_sine(1.0, 2.0))
"""


def test_cli_md_check_example_output_is_current(tmp_path):
    text = (DOCS / "cli.md").read_text()
    assert CLI_MODEL in text.replace("```python\n", "")      # the model.py the doc shows
    (tmp_path / "model.py").write_text(CLI_MODEL)
    shown = doc_block(text, "Transforms functions of `FILE.py` and prints every")
    assert shown.startswith("$ adtrans check model.py\n")
    result = run_cli("check", "model.py", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == shown[len("$ adtrans check model.py\n"):]


def test_cli_md_wrt_dump_is_current(tmp_path):
    text = (DOCS / "cli.md").read_text()
    (tmp_path / "model.py").write_text(CLI_MODEL)
    command = "$ adtrans dump model.py:scaled_sine --wrt x\n"
    start = text.index(command) + len(command)
    shown = text[start:text.index("```", start)]
    result = run_cli("dump", "model.py:scaled_sine", "--wrt", "x", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown


# =====================================================================================
# Part 1c: docs/structures.md, docs/nn.md, docs/rules.md, docs/checkpointing.md examples
# =====================================================================================


@dataclass
class Vector:
    x: float
    y: float

    @property
    @adtrans.differentiable
    def magnitude(self):
        return math.sqrt(self.x * self.x + self.y * self.y)


def test_structures_md_vector_example():
    g = adtrans.gradient(lambda v: v.magnitude, Vector(1.0, 1.0))
    assert isinstance(g, Vector) and type(g) is not Vector
    assert type(g).__qualname__ == "Vector.TangentVector"
    assert g == Vector(1 / math.sqrt(2.0), 1 / math.sqrt(2.0))
    assert repr(g) == "Vector.TangentVector(x=0.7071067811865475, y=0.7071067811865475)"
    assert adtrans.gradient(Vector.magnitude.fget, Vector(1.0, 1.0)) == g
    # at a point where x != y, against finite differences
    g = adtrans.gradient(lambda v: v.magnitude, Vector(0.3, -1.7))
    assert g.x == pytest.approx(fd(lambda t: Vector(t, -1.7).magnitude, 0.3), rel=1e-8)
    assert g.y == pytest.approx(fd(lambda t: Vector(0.3, t).magnitude, -1.7), rel=1e-8)


@dataclass
class DenseLayer:
    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, input):
        return input @ self.weight + self.bias

    def applied_for_backpropagation(self, input):
        return adtrans.value_with_pullback(lambda layer, x: layer(x), self, input)


def test_structures_md_dense_layer_example():
    dense = DenseLayer(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([1.0, 1.0]))
    output, backprop = dense.applied_for_backpropagation(np.array([[3.0, 3.0]]))
    np.testing.assert_array_equal(output, [[7.0, 7.0]])
    d_dense, d_input = backprop(np.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(d_dense.weight, [[3, 3], [3, 3]])
    np.testing.assert_array_equal(d_dense.bias, [1, 1])
    np.testing.assert_array_equal(d_input, [[2, 2]])
    moved = adtrans.move(dense, d_dense, scale=-0.01)
    np.testing.assert_array_equal(moved.weight, dense.weight - 0.01 * d_dense.weight)
    np.testing.assert_array_equal(moved.bias, dense.bias - 0.01 * d_dense.bias)
    np.testing.assert_array_equal(dense.weight, [[1.0, 1.0], [1.0, 1.0]])      # a new model


def test_nn_md_example_runs_and_updates():
    from adtrans import nn

    model = nn.Sequential([
        nn.Conv2D((5, 5, 3, 6), activation=nn.relu, rng=0).discarding_activations(),
        nn.MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
        nn.Flatten(),
        nn.Dense(216, 10, rng=1),
    ])
    optimizer = nn.SGD(model, learning_rate=0.1)

    def loss(model, images, labels):
        return nn.softmax_cross_entropy(model(images), labels)

    rng = np.random.default_rng(0)
    images = rng.standard_normal((2, 16, 16, 3)).astype(np.float32)   # 16 - 5 + 1 = 12; /2 = 6; 6*6*6 = 216
    labels = np.array([3, 7])
    value, gradient = adtrans.value_with_gradient(loss, model, images, labels, wrt="model")
    assert value == loss(model, images, labels)
    dense_grad = gradient.layers[3]
    assert dense_grad.weight.dtype == np.float32 and dense_grad.weight.shape == (216, 10)
    new = optimizer.update(model, along=gradient)
    np.testing.assert_allclose(new.layers[3].bias, model.layers[3].bias - 0.1 * dense_grad.bias, rtol=1e-6)
    assert new is not model
    # the bias gradient of the last layer is the mean of softmax - onehot over the batch (analytic)
    logits = model(images).astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(2), labels] -= 1.0
    np.testing.assert_allclose(dense_grad.bias, p.mean(axis=0), rtol=1e-4, atol=1e-6)


def stable_softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def logaddexp_softplus(x):
    return np.logaddexp(0.0, x)


def test_rules_md_softplus_paragraph():
    # "adtrans gives it 0 at x == 0"; "Write softplus as np.logaddexp(0.0, x) (derivative sigmoid(x)"
    x = np.array([-1.0, 0.0, 2.0])
    sig = 1 / (1 + np.exp(-x))
    g = adtrans.gradient(lambda v: np.sum(stable_softplus(v)), x)
    np.testing.assert_allclose(g[[0, 2]], sig[[0, 2]], rtol=1e-12)
    assert g[1] == 0.0
    g = adtrans.gradient(lambda v: np.sum(logaddexp_softplus(v)), x)
    np.testing.assert_allclose(g, sig, rtol=1e-12)


def test_rules_md_kink_conventions():
    # maximum/minimum split ties; np.maximum(x, 0) is a ReLU; abs has derivative 0 at 0;
    # np.max shares among equal elements; max(..., key=f) gives all to the element returned.
    def tie(x, y):
        return np.maximum(x, y) + np.minimum(x, y) * 2.0
    assert adtrans.gradient(tie, 1.0, 1.0) == (1.5, 1.5)
    assert adtrans.gradient(lambda x: np.maximum(x, 0) + abs(x), 0.0) == 0.0
    assert adtrans.gradient(lambda x: np.maximum(0, x), 0.0) == 0.0
    np.testing.assert_array_equal(adtrans.gradient(lambda x: np.max(x), np.array([2.0, 1.0, 2.0])),
                                  [0.5, 0.0, 0.5])
    assert adtrans.gradient(lambda a, b: max(a, b, key=abs), -2.0, 2.0) in ((1.0, 0.0), (0.0, 1.0))


def ck_layer(h, W):
    return np.tanh(h @ W)


ck_checkpointed_layer = adtrans.checkpointed(ck_layer)


def ck_deep(x, Ws):
    h = x
    for W in Ws:
        h = ck_checkpointed_layer(h, W)
    return np.sum(h)


def test_checkpointing_md_deep_example_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3))
    Ws = [rng.standard_normal((3, 3)) * 0.5 for _ in range(3)]
    value, (gx, gWs) = adtrans.value_with_gradient(ck_deep, x, Ws)
    assert value == ck_deep(x, Ws)
    np.testing.assert_allclose(gx, fd_array(lambda v: ck_deep(v, Ws), x), rtol=1e-7, atol=1e-9)
    for i in range(3):
        def of_w(w, i=i):
            return ck_deep(x, Ws[:i] + [w] + Ws[i + 1:])
        np.testing.assert_allclose(gWs[i], fd_array(of_w, Ws[i]), rtol=1e-7, atol=1e-9)
    assert isinstance(gWs, list)
