"""A dense layer as a differentiable dataclass: the Swift design document's ``DenseLayer``.

Swift's "Differentiable Programming Manifesto" builds a layer as a struct
whose stored properties are its parameters, and differentiates a call of
the layer with respect to the layer itself and its input::

    struct DenseLayer: Differentiable {
        var weight: Tensor<Float>
        var bias: Tensor<Float>
        func callAsFunction(_ input: Tensor<Float>) -> Tensor<Float> {
            input • weight + bias
        }
    }

In Python the struct is a ``@dataclass``; the gradient with respect to a
layer is a ``DenseLayer.TangentVector`` with one field per parameter, and
``adtrans.move`` steps the layer along it (what an optimizer does).

Run it with ``python examples/dense_layer.py``.
"""

from dataclasses import dataclass

import numpy as np

import adtrans


@dataclass
class DenseLayer:
    weight: np.ndarray
    bias: np.ndarray

    def __call__(self, input):
        return input @ self.weight + self.bias

    def applied_for_backpropagation(self, input):
        """``(output, backprop)``; ``backprop(d_output)`` gives ``(layer_tangent, input_tangent)``."""
        return adtrans.value_with_pullback(lambda layer, x: layer(x), self, input)


def main():
    dense = DenseLayer(weight=np.array([[1.0, 1.0], [1.0, 1.0]]), bias=np.array([1.0, 1.0]))
    input = np.array([[3.0, 3.0]])

    output, backprop = dense.applied_for_backpropagation(input)
    d_dense, d_input = backprop(np.array([[1.0, 1.0]]))
    print("output:", output)                      # [[7. 7.]]
    print("d_weight:", d_dense.weight.tolist())   # [[3.0, 3.0], [3.0, 3.0]]
    print("d_bias:", d_dense.bias.tolist())       # [1.0, 1.0]
    print("d_input:", d_input.tolist())           # [[2.0, 2.0]]

    # A few steps of gradient descent on the layer itself, towards the output [[0, 0]].
    def loss(layer, x):
        y = layer(x)
        return np.sum(y * y)

    for step in range(3):
        value, gradient = adtrans.value_with_gradient(loss, dense, input, wrt="layer")
        print(f"step {step}: loss {value:.4f}")
        dense = adtrans.move(dense, gradient, scale=-0.01)
    return dense


if __name__ == "__main__":
    main()
