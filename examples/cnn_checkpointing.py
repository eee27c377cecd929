"""A small CNN whose convolution layer discards its activations: they are recomputed in the pullback.

The Swift for TensorFlow tutorial's model, on adtrans.nn::

    conv   Conv2D (5, 5, 3, 6), relu            wrapped with discarding_activations()
    pool   MaxPool2D 2x2, stride 2
    flatten
    dense  Dense 216 -> 10

trained with softmax cross-entropy and SGD on random [10, 16, 16, 3] images
with labels 0..9.  ``discarding_activations()`` keeps only the conv layer's
input for the pullback; the pullback runs the layer again, differentiated.
A counting wrapper around the convolution shows it: two applications per
training step, one forward and one recomputation.

Run it with ``python examples/cnn_checkpointing.py``.
"""

from dataclasses import dataclass

import numpy as np

import adtrans
from adtrans import nn

applications = []     # one entry each time the wrapped conv layer runs, forward or recomputed


@dataclass
class Counted(nn.Layer):
    """`layer`, noting each application (the note is ordinary code: it runs in the recomputation too)."""

    layer: nn.Layer

    def __call__(self, x):
        applications.append(type(self.layer).__name__)
        return self.layer(x)


def make_model(seed=0):
    rng = np.random.default_rng(seed)
    conv = Counted(nn.Conv2D((5, 5, 3, 6), activation=nn.relu, rng=rng))
    return nn.Sequential([
        conv.discarding_activations(),
        nn.MaxPool2D(pool_size=(2, 2), strides=(2, 2)),
        nn.Flatten(),
        nn.Dense(6 * 6 * 6, 10, rng=rng),
    ])


def loss(model, images, labels):
    return nn.softmax_cross_entropy(model(images), labels)


def main(steps=5, learning_rate=0.1, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((10, 16, 16, 3)).astype(np.float32)
    labels = np.arange(10)
    model = make_model(seed)
    optimizer = nn.SGD(model, learning_rate=learning_rate)
    losses = []
    for step in range(steps):
        del applications[:]
        value, gradient = adtrans.value_with_gradient(loss, model, images, labels, wrt="model")
        model = optimizer.update(model, along=gradient)
        losses.append(float(value))
        print(f"step {step}: loss {value:.4f}, conv layer applied {len(applications)} times "
              f"(forward and recomputation in the pullback)")
    return model, losses


if __name__ == "__main__":
    main()
