"""Convolution and pooling: the primitives of `adtrans.nn`, with registered VJPs.

Everything else in `adtrans.nn` is ordinary Python that adtrans
differentiates; these three functions are the exceptions, because written
as loops over pixels they would be slow to run and slower to differentiate.
Each is a few NumPy calls over a *window view* of its input
(``sliding_window_view``: no copy, no Python loop over pixels), and its
pullback is registered with ``@adtrans.derivative``, so differentiated code
calls it like any other rule::

    y = conv2d(x, filter, strides=(1, 1), padding="same")     # NHWC, HWIO

Layout: inputs are NHWC (batch, height, width, channels); filters are HWIO
(height, width, in channels, out channels).  Padding ``"same"`` follows
TensorFlow: the output has ``ceil(size / stride)`` positions and the
padding is split with the extra row/column at the end.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import adtrans

__all__ = ["conv2d", "max_pool2d", "avg_pool2d"]


# -- windows: the one piece of index arithmetic shared by all three primitives

def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _padding(size, window, stride, padding):
    """(before, after) padding of one spatial axis."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + window - size, 0)
        return total // 2, total - total // 2
    raise ValueError(f"padding must be 'valid' or 'same', not {padding!r}")


def _windows(x, window, strides):
    """The (N, out_h, out_w, C, kh, kw) view of `x`'s windows, taken every `strides`."""
    (kh, kw), (sh, sw) = window, strides
    return sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]


def _scatter_windows(d_windows, shape, strides, dtype):
    """The adjoint of `_windows`: add each window's cotangent (N, oh, ow, kh, kw, C) back into `shape`.

    The loop is over the window's offsets (kh * kw iterations), never over pixels.
    """
    n, oh, ow, kh, kw, c = d_windows.shape
    sh, sw = strides
    if (sh, sw) == (kh, kw):
        # Windows that tile the input (pooling): each element is in at most one window, so the
        # scatter is a transpose; rows and columns no window reaches get zeros.
        tiled = d_windows.transpose(0, 1, 3, 2, 4, 5).reshape(n, oh * kh, ow * kw, c)
        if tiled.shape == tuple(shape):
            return tiled.astype(dtype, copy=False)
        out = np.zeros(shape, dtype=dtype)
        out[:, :oh * kh, :ow * kw, :] = tiled
        return out
    out = np.zeros(shape, dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] += d_windows[:, :, :, i, j, :]
    return out


def _padded(x, window, strides, padding):
    (kh, kw), (sh, sw) = window, strides
    top, bottom = _padding(x.shape[1], kh, sh, padding)
    left, right = _padding(x.shape[2], kw, sw, padding)
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    return x, (top, left)


def _cropped(d_padded, shape, offset):
    top, left = offset
    return d_padded[:, top:top + shape[1], left:left + shape[2], :]


# -- conv2d

def conv2d(x, filter, strides=(1, 1), padding="valid"):
    """The 2-D convolution (cross-correlation, as in every NN library) of NHWC `x` with HWIO `filter`.

    ::

        x = np.ones((1, 4, 4, 1)); f = np.ones((3, 3, 1, 2))
        conv2d(x, f).shape                     # (1, 2, 2, 2)
        conv2d(x, f, padding="same").shape     # (1, 4, 4, 2)
    """
    return _conv2d_vjp(x, filter, strides, padding)[0]


@adtrans.derivative(of=conv2d, wrt=("x", "filter"))
def _conv2d_vjp(x, filter, strides=(1, 1), padding="valid", *, needed=("x", "filter")):
    # `needed`: a network's first layer is never asked for its input's tangent (the images),
    # which costs as much as the filter's.
    window, strides = filter.shape[:2], _pair(strides)
    padded, offset = _padded(x, window, strides, padding)
    windows = _windows(padded, window, strides)                          # N, oh, ow, C, kh, kw
    y = np.tensordot(windows, filter, axes=([4, 5, 3], [0, 1, 2]))      # N, oh, ow, O
    y = y.astype(np.result_type(x, filter), copy=False)

    def pullback(d_y):
        d_x = d_filter = None
        if "filter" in needed:
            d_filter = np.tensordot(windows, d_y, axes=([0, 1, 2], [0, 1, 2]))   # C, kh, kw, O
            d_filter = d_filter.transpose(1, 2, 0, 3).astype(filter.dtype, copy=False)
        if "x" in needed:
            d_windows = np.tensordot(d_y, filter, axes=([3], [3]))                # N, oh, ow, kh, kw, C
            d_padded = _scatter_windows(d_windows, padded.shape, strides, x.dtype)
            d_x = _cropped(d_padded, x.shape, offset)
        return d_x, d_filter

    return y, pullback


# -- pooling

def max_pool2d(x, pool_size=(2, 2), strides=None):
    """The maximum of each `pool_size` window of NHWC `x`, taken every `strides` (default: `pool_size`).

    In the pullback the cotangent of a window goes to its largest element (the first one on ties).
    """
    return _max_pool2d_vjp(x, pool_size, strides)[0]


@adtrans.derivative(of=max_pool2d, wrt="x")
def _max_pool2d_vjp(x, pool_size=(2, 2), strides=None):
    window = _pair(pool_size)
    strides = window if strides is None else _pair(strides)
    windows = _windows(x, window, strides)                                   # N, oh, ow, C, kh, kw
    n, oh, ow, c, kh, kw = windows.shape
    flat = windows.reshape(n, oh, ow, c, kh * kw)
    winner = np.argmax(flat, axis=-1)[..., None]                             # N, oh, ow, C, 1
    y = np.take_along_axis(flat, winner, axis=-1)[..., 0]

    def pullback(d_y):
        d_flat = np.zeros((n, oh, ow, c, kh * kw), dtype=x.dtype)
        np.put_along_axis(d_flat, winner, d_y[..., None], axis=-1)
        d_windows = d_flat.reshape(n, oh, ow, c, kh, kw).transpose(0, 1, 2, 4, 5, 3)
        return _scatter_windows(d_windows, x.shape, strides, x.dtype)

    return y, pullback


def avg_pool2d(x, pool_size=(2, 2), strides=None):
    """The mean of each `pool_size` window of NHWC `x`, taken every `strides` (default: `pool_size`)."""
    return _avg_pool2d_vjp(x, pool_size, strides)[0]


@adtrans.derivative(of=avg_pool2d, wrt="x")
def _avg_pool2d_vjp(x, pool_size=(2, 2), strides=None):
    window = _pair(pool_size)
    strides = window if strides is None else _pair(strides)
    windows = _windows(x, window, strides)
    y = windows.mean(axis=(-2, -1)).astype(x.dtype, copy=False)
    kh, kw = window

    def pullback(d_y):
        share = (d_y / (kh * kw)).astype(x.dtype, copy=False)
        d_windows = np.broadcast_to(share[:, :, :, None, None, :], d_y.shape[:3] + (kh, kw) + d_y.shape[3:])
        return _scatter_windows(d_windows, x.shape, strides, x.dtype)

    return y, pullback
