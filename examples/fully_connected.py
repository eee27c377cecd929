"""The fast.ai lesson "fully connected": a two-layer MLP's gradients three ways, then training.

After normalising the data, the lesson's model ``mse(lin(relu(lin(x, w1, b1)), w2, b2), y)``
(regression on the digit's value, as in the lesson) is differentiated

1. by hand: a forward pass that keeps its intermediates and a backward pass
   written out layer by layer;
2. in the "value with chain" style of the lesson's Swift version: each
   operation returns its value and a closure mapping the output's cotangent
   to its inputs' (what adtrans generates, written by hand);
3. by adtrans, from a ``@dataclass`` model whose ``__call__`` is plain NumPy.

The three gradients are checked to agree and timed.  Then a classifier
(64 -> 64 relu -> 10, softmax cross-entropy) is trained with adtrans.nn and
its validation accuracy reported.

The data is scikit-learn's ``load_digits`` (1797 8x8 handwritten digits,
shipped inside the package): install it with ``pip install -e '.[examples]'``
(or ``pip install scikit-learn``).  Run it with
``python examples/fully_connected.py``.
"""

import time
from dataclasses import dataclass

import numpy as np

import adtrans
from adtrans import nn


def load_data(validation=297, seed=0):
    """Normalised (train_x, train_y, valid_x, valid_y), or None when scikit-learn is missing."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    train_x, valid_x = x[validation:], x[:validation]
    train_y, valid_y = y[validation:], y[:validation]
    mean, std = train_x.mean(), train_x.std()       # the lesson normalises with the training statistics
    return (train_x - mean) / std, train_y, (valid_x - mean) / std, valid_y


# -- 1. forward and backward by hand

def lin(x, w, b):
    return x @ w + b


def relu(x):
    return np.maximum(x, 0)


def mse(output, target):
    return np.mean((output[:, 0] - target) ** 2)


def handwritten_gradients(x, target, w1, b1, w2, b2):
    # forward, keeping what the backward pass needs
    l1 = lin(x, w1, b1)
    l2 = relu(l1)
    out = lin(l2, w2, b2)
    loss = mse(out, target)
    # backward
    d_out = (2.0 * (out[:, 0] - target) / len(target))[:, None].astype(out.dtype)
    d_w2, d_b2 = l2.T @ d_out, d_out.sum(0)
    d_l2 = d_out @ w2.T
    d_l1 = d_l2 * (l1 > 0)
    d_w1, d_b1 = x.T @ d_l1, d_l1.sum(0)
    return loss, (d_w1, d_b1, d_w2, d_b2)


# -- 2. value with chain: each operation returns its value and its pullback

def lin_with_chain(x, w, b):
    def chain(d):
        return d @ w.T, x.T @ d, d.sum(0)
    return x @ w + b, chain


def relu_with_chain(x):
    mask = x > 0
    return np.where(mask, x, 0), lambda d: d * mask


def mse_with_chain(output, target):
    error = output[:, 0] - target

    def chain(d):
        return (d * 2.0 * error / len(target))[:, None].astype(output.dtype)
    return np.mean(error ** 2), chain


def chained_gradients(x, target, w1, b1, w2, b2):
    l1, l1_chain = lin_with_chain(x, w1, b1)
    l2, l2_chain = relu_with_chain(l1)
    out, out_chain = lin_with_chain(l2, w2, b2)
    loss, loss_chain = mse_with_chain(out, target)
    d_out = loss_chain(1.0)
    d_l2, d_w2, d_b2 = out_chain(d_out)
    d_l1 = l2_chain(d_l2)
    _, d_w1, d_b1 = l1_chain(d_l1)
    return loss, (d_w1, d_b1, d_w2, d_b2)


# -- 3. a dataclass model differentiated by adtrans

@dataclass
class TwoLayerModel:
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def __call__(self, x):
        return lin(relu(lin(x, self.w1, self.b1)), self.w2, self.b2)


def model_loss(model, x, target):
    return mse(model(x), target)


def adtrans_gradients(x, target, w1, b1, w2, b2):
    loss, gradient = adtrans.value_with_gradient(model_loss, TwoLayerModel(w1, b1, w2, b2), x, target,
                                                 wrt="model")
    return loss, (gradient.w1, gradient.b1, gradient.w2, gradient.b2)


def _timed(f, *args, repeat=20):
    f(*args)
    start = time.perf_counter()
    for _ in range(repeat):
        f(*args)
    return (time.perf_counter() - start) / repeat


def compare_three_ways(x, y, hidden=50, seed=0, repeat=20):
    """The lesson's three gradients: checked to agree, then timed. Returns the seconds per gradient."""
    rng = np.random.default_rng(seed)
    n_in = x.shape[1]
    w1 = (rng.standard_normal((n_in, hidden)) * np.sqrt(2.0 / n_in)).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2 = (rng.standard_normal((hidden, 1)) / np.sqrt(hidden)).astype(np.float32)
    b2 = np.zeros(1, np.float32)
    target = y.astype(np.float32)
    args = (x, target, w1, b1, w2, b2)
    ways = {"handwritten": handwritten_gradients, "value with chain": chained_gradients,
            "adtrans": adtrans_gradients}
    results = {name: f(*args) for name, f in ways.items()}
    reference_loss, reference = results["handwritten"]
    for name, (loss, grads) in results.items():
        assert np.isclose(loss, reference_loss, rtol=1e-6), (name, loss, reference_loss)
        for got, want, label in zip(grads, reference, ("w1", "b1", "w2", "b2")):
            assert got.dtype == np.float32, (name, label, got.dtype)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{name}: d{label}")
    print(f"loss {reference_loss:.4f}: the three gradients agree")
    seconds = {name: _timed(f, *args, repeat=repeat) for name, f in ways.items()}
    for name, s in seconds.items():
        print(f"  {name:>16}: {s * 1e3:7.3f} ms per gradient "
              f"({s / seconds['handwritten']:.2f}x handwritten)")
    return seconds


# -- training a classifier with adtrans.nn

def classification_loss(model, x, labels):
    return nn.softmax_cross_entropy(model(x), labels)


def accuracy(model, x, labels):
    return float(np.mean(np.argmax(model(x), axis=1) == labels))


def train_classifier(train_x, train_y, valid_x, valid_y, epochs=10, batch_size=64,
                     learning_rate=0.1, seed=0):
    rng = np.random.default_rng(seed)
    model = nn.Sequential([nn.Dense(train_x.shape[1], 64, nn.relu, rng=rng), nn.Dense(64, 10, rng=rng)])
    optimizer = nn.SGD(model, learning_rate=learning_rate, momentum=0.9)
    for epoch in range(epochs):
        order = rng.permutation(len(train_x))
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            gradient = adtrans.gradient(classification_loss, model, train_x[batch], train_y[batch],
                                        wrt="model")
            model = optimizer.update(model, along=gradient)
        loss = classification_loss(model, valid_x, valid_y)
        print(f"epoch {epoch}: validation loss {loss:.4f}, "
              f"accuracy {accuracy(model, valid_x, valid_y):.3f}")
    return model, accuracy(model, valid_x, valid_y)


def main(epochs=10, repeat=20):
    data = load_data()
    if data is None:
        print("This example needs scikit-learn for its data set (load_digits). Install it with\n"
              "    pip install -e '.[examples]'      (or: pip install scikit-learn)")
        return None
    train_x, train_y, valid_x, valid_y = data
    print(f"{len(train_x)} training and {len(valid_x)} validation digits; "
          f"training mean {train_x.mean():.3f}, std {train_x.std():.3f} after normalising")
    print("== The lesson's model (regression on the digit), three ways ==")
    compare_three_ways(train_x, train_y, repeat=repeat)
    print("== Training a 64-64-10 classifier with adtrans.nn ==")
    model, valid_accuracy = train_classifier(train_x, train_y, valid_x, valid_y, epochs=epochs)
    print(f"validation accuracy {valid_accuracy:.3f}")
    return valid_accuracy


if __name__ == "__main__":
    main()
