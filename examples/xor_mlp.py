"""XOR with a two-layer perceptron: the Swift for TensorFlow tutorial's MLP, on adtrans.nn.

The tutorial's model, written as a dataclass whose ``__call__`` is plain
NumPy that adtrans differentiates::

    struct MLP: Layer {
        var layer1 = Dense<Float>(inputSize: 2, outputSize: 10, activation: relu)
        var layer2 = Dense<Float>(inputSize: 10, outputSize: 1, activation: relu)
        func callAsFunction(_ input: Tensor<Float>) -> Tensor<Float> {
            let h0 = layer1(input).withDerivative { print("∂L/∂layer1 =", $0) }
            return layer2(h0)
        }
    }

``adtrans.with_derivative`` plays ``withDerivative``: during the pullback its
hook sees the cotangent of that activation.  The first phase prints the
loss and both cotangents for 10 steps of SGD (lr 0.02); the second trains the
same model on (500 steps in all) until it answers XOR.  With a ReLU on the
output, some initialisations leave the output unit dead (loss stuck at 0.25
or 0.5); the seed is chosen so that the tutorial's hyperparameters converge.

Run it with ``python examples/xor_mlp.py``.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import adtrans
from adtrans import nn

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
TARGETS = np.array([[0], [1], [1], [0]], dtype=np.float32)


def _quiet(cotangent):
    return None


@dataclass
class MLP(nn.Layer):
    layer1: nn.Dense
    layer2: nn.Dense
    on_layer1: Callable = field(default=_quiet, repr=False)    # sees dL/d(layer1's output)

    def __call__(self, x):
        # without_derivative: the hook is configuration (works around a compiler problem, docs/nn.md).
        h0 = adtrans.with_derivative(self.layer1(x), adtrans.without_derivative(self.on_layer1))
        return self.layer2(h0)


def make_model(hidden=10, seed=0, on_layer1=_quiet):
    rng = np.random.default_rng(seed)
    return MLP(nn.Dense(2, hidden, nn.relu, rng=rng), nn.Dense(hidden, 1, nn.relu, rng=rng), on_layer1)


def _show(name):
    def hook(cotangent):
        rows = np.array2string(cotangent, precision=4, suppress_small=True, max_line_width=120)
        print(f"  dL/d{name} =\n    " + rows.replace("\n", "\n    "))
    return hook


def loss(model, x, y, on_output=_quiet):
    y_hat = adtrans.with_derivative(model(x), on_output)
    return nn.mean_squared_error(y_hat, y)


def train(model, steps, learning_rate=0.02, on_output=_quiet, report=None):
    optimizer = nn.SGD(model, learning_rate=learning_rate)
    for step in range(steps):
        value, backprop = adtrans.value_with_pullback(loss, model, INPUTS, TARGETS, on_output, wrt="model")
        if report is not None:
            report(step, value)
        gradient = backprop(np.ones_like(value))      # runs the hooks
        model = optimizer.update(model, along=gradient)
    return model, value


def main(steps=10, convergence_steps=500, seed=3):
    """`steps` printed steps of the tutorial's MLP, then training on to `convergence_steps` in all."""
    print("== The tutorial's MLP: Dense 2->10 relu, Dense 10->1 relu, SGD lr 0.02 ==")

    def report(step, value):
        print(f"step {step}: loss {value:.6f}")

    model = make_model(seed=seed, on_layer1=_show("layer1"))
    model, _ = train(model, steps, on_output=_show("y_hat"), report=report)

    remaining = max(convergence_steps - steps, 0)
    print(f"== Trained on for {remaining} more steps ==")
    model = dataclasses.replace(model, on_layer1=_quiet)
    model, value = train(model, remaining)
    predictions = model(INPUTS)
    print(f"final loss {value:.6f}")
    for x, y in zip(INPUTS, predictions):
        print(f"  {int(x[0])} xor {int(x[1])} = {y[0]:.3f}")
    return model, value, predictions


if __name__ == "__main__":
    main()
