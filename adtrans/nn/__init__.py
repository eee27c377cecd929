"""adtrans.nn: a small neural-network library whose layers adtrans differentiates.

Layers are dataclasses with an ordinary NumPy ``__call__``; the compiler
differentiates them (SPEC section 10).  Only the convolution and pooling
primitives carry registered VJPs.  See docs/nn.md.

    import adtrans
    from adtrans import nn

    model = nn.Sequential([nn.Dense(2, 10, nn.relu, rng=0), nn.Dense(10, 1, rng=1)])
    optimizer = nn.SGD(model, learning_rate=0.02)
    loss, gradient = adtrans.value_with_gradient(
        lambda model, x, y: nn.mean_squared_error(model(x), y), model, x, y, wrt="model")
    model = optimizer.update(model, along=gradient)
"""

from adtrans.nn.activations import identity, log_softmax, relu, sigmoid, softmax, tanh
from adtrans.nn.layers import (AvgPool2D, Conv2D, Dense, DiscardingActivations, Flatten, Layer,
                               MaxPool2D, Sequential, sequenced)
from adtrans.nn.losses import mean_squared_error, softmax_cross_entropy
from adtrans.nn.optimizers import SGD, Adam
from adtrans.nn.primitives import avg_pool2d, conv2d, max_pool2d

__all__ = [
    "Adam", "AvgPool2D", "Conv2D", "Dense", "DiscardingActivations", "Flatten", "Layer", "MaxPool2D",
    "SGD", "Sequential", "avg_pool2d", "conv2d", "identity", "log_softmax", "max_pool2d",
    "mean_squared_error", "relu", "sequenced", "sigmoid", "softmax", "softmax_cross_entropy", "tanh",
]
