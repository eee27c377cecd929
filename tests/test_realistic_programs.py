"""Realistic numeric programs, written as a user writes them, differentiated and checked.

Each program below is a plain function such as one finds in a notebook or a
small research code base: the max-subtraction trick in a softmax, a causal
mask made with ``np.triu``, an integrator with an early exit, parameters in
a dataclass or a dict, keyword arguments with defaults, helpers defined in
the module. None of them is written to please the compiler.

Every test compares adtrans's gradient with central finite differences in
float64 (or a closed form), through the three entry points a user reaches
for: ``gradient`` (the fused function), ``value_with_gradient`` (whose value
must be ``f``'s, bit for bit) and ``value_with_pullback``. Where a program
failed, a minimal reproducer of the failure sits next to it
(``test_minimal_*``).
"""

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import pytest

import adtrans
from structured_check import assert_gradient


RNG = np.random.default_rng(20240607)


def randn(*shape):
    return RNG.standard_normal(shape)


# -- 1. Logistic regression with an L2 penalty -------------------------------------------------

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def logistic_loss(w, b, X, y, lam=1e-2):
    p = sigmoid(X @ w + b)
    eps = 1e-12
    nll = -np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))
    return nll + 0.5 * lam * np.sum(w ** 2)


def test_logistic_regression_with_l2_penalty():
    X = randn(20, 3)
    y = (RNG.random(20) > 0.5).astype(float)
    assert_gradient(logistic_loss, randn(3), 0.1, X, y, wrt=(0, 1))
    assert_gradient(logistic_loss, randn(3), 0.1, X, y, wrt=(0, 1), lam=0.5)


# -- 2. Softmax cross-entropy by hand, with the max-subtraction trick --------------------------

def softmax_cross_entropy(logits, labels):
    z = logits - np.max(logits, axis=1, keepdims=True)
    log_probs = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    n = logits.shape[0]
    return -np.mean(log_probs[np.arange(n), labels])


def test_softmax_cross_entropy_by_hand():
    logits = randn(6, 4)
    labels = np.array([0, 3, 1, 1, 2, 0])
    (g,) = assert_gradient(softmax_cross_entropy, logits, labels, wrt=(0,))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = z / z.sum(axis=1, keepdims=True)
    p[np.arange(6), labels] -= 1.0
    np.testing.assert_allclose(g, p / 6, rtol=1e-10, atol=1e-12)


# -- 3. Layer norm, with array methods ----------------------------------------------------------

def layer_norm(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta


def layer_norm_loss(x, gamma, beta, target):
    out = layer_norm(x, gamma, beta)
    return np.sum((out - target) ** 2)


def test_layer_norm():
    assert_gradient(layer_norm_loss, randn(4, 5), 1.0 + 0.1 * randn(5), 0.1 * randn(5), randn(4, 5),
                    wrt=(0, 1, 2))


# -- 4. Scaled dot-product attention with a causal mask ----------------------------------------

def causal_attention(q, k, v):
    T, d = q.shape
    scores = q @ k.T / np.sqrt(d)
    mask = np.triu(np.ones((T, T), dtype=bool), k=1)
    scores = np.where(mask, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return weights @ v


def attention_loss(q, k, v, target):
    return 0.5 * np.sum((causal_attention(q, k, v) - target) ** 2)


def test_causal_attention():
    T, d = 5, 3
    assert_gradient(attention_loss, randn(T, d), randn(T, d), randn(T, d), randn(T, d), wrt=(0, 1, 2))


# -- 5. Gaussian mixture log-likelihood, logsumexp by hand --------------------------------------

def logsumexp(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def gmm_log_likelihood(means, log_sigmas, logits, x):
    log_w = logits - logsumexp(logits, axis=0)
    sigmas = np.exp(log_sigmas)
    diff = x[:, None] - means[None, :]
    log_pdf = -0.5 * (diff / sigmas) ** 2 - log_sigmas - 0.5 * math.log(2 * math.pi)
    return np.sum(logsumexp(log_w + log_pdf, axis=1))


def test_gaussian_mixture_log_likelihood():
    x = np.concatenate([randn(10) - 2.0, randn(10) + 2.0])
    assert_gradient(gmm_log_likelihood, np.array([-1.0, 0.5, 1.5]), np.array([0.1, -0.2, 0.3]),
                    np.array([0.2, 0.0, -0.1]), x, wrt=(0, 1, 2))


# -- 6. RK4 pendulum with an early exit ----------------------------------------------------------

def pendulum(theta, omega, damping, g=9.81, length=1.0):
    return omega, -g / length * math.sin(theta) - damping * omega


def rk4_pendulum(theta0, omega0, damping, dt=0.01, steps=200, max_angle=3.0):
    theta, omega = theta0, omega0
    for step in range(steps):
        k1t, k1w = pendulum(theta, omega, damping)
        k2t, k2w = pendulum(theta + 0.5 * dt * k1t, omega + 0.5 * dt * k1w, damping)
        k3t, k3w = pendulum(theta + 0.5 * dt * k2t, omega + 0.5 * dt * k2w, damping)
        k4t, k4w = pendulum(theta + dt * k3t, omega + dt * k3w, damping)
        theta = theta + dt / 6.0 * (k1t + 2 * k2t + 2 * k3t + k4t)
        omega = omega + dt / 6.0 * (k1w + 2 * k2w + 2 * k3w + k4w)
        if abs(theta) > max_angle:
            break
    return theta ** 2 + 0.1 * omega ** 2


def test_rk4_pendulum():
    assert_gradient(rk4_pendulum, 1.0, 0.0, 0.3, rtol=1e-5)


def test_rk4_pendulum_exits_early():
    # A fast start swings over the top: the loop breaks long before 200 steps.
    assert_gradient(rk4_pendulum, 0.5, 8.0, 0.1, rtol=1e-5)


# -- 7. Leapfrog integration of a small N-body system --------------------------------------------

def accelerations(pos, masses, softening=0.1):
    diff = pos[None, :, :] - pos[:, None, :]
    dist2 = np.sum(diff ** 2, axis=-1) + softening ** 2
    inv3 = dist2 ** -1.5
    return np.sum(diff * (masses[None, :, None] * inv3[:, :, None]), axis=1)


def nbody_energy_after(pos, vel, masses, dt=0.01, steps=30):
    acc = accelerations(pos, masses)
    for _ in range(steps):
        vel = vel + 0.5 * dt * acc
        pos = pos + dt * vel
        acc = accelerations(pos, masses)
        vel = vel + 0.5 * dt * acc
    kinetic = 0.5 * np.sum(masses[:, None] * vel ** 2)
    return kinetic + np.sum(pos[0] ** 2)


def test_leapfrog_nbody():
    pos = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.2]])
    vel = np.array([[0.0, 0.1], [0.0, -0.3], [0.2, 0.0]])
    assert_gradient(nbody_energy_after, pos, vel, np.array([1.0, 0.5, 0.3]))


# -- 8. Newton's method with a tolerance ---------------------------------------------------------

def cube_root(a, tol=1e-12, max_iter=100):
    x = a if a > 1.0 else 1.0
    it = 0
    while abs(x ** 3 - a) > tol * a and it < max_iter:
        x = x - (x ** 3 - a) / (3.0 * x ** 2)
        it += 1
    return x


def test_newton_iteration_with_while():
    (g,) = assert_gradient(cube_root, 5.0)
    assert g == pytest.approx(1.0 / (3.0 * 5.0 ** (2.0 / 3.0)), rel=1e-8)


# -- 9. Horner's rule over a list of coefficients ------------------------------------------------

def horner(coeffs, x):
    result = 0.0
    for c in coeffs:
        result = result * x + c
    return result


def test_horner_over_a_list_of_coefficients():
    coeffs = [0.5, -1.0, 2.0, 3.0]
    dc, dx = assert_gradient(horner, coeffs, 1.3)
    assert dx == pytest.approx(3 * 0.5 * 1.3 ** 2 - 2.0 * 1.3 + 2.0, rel=1e-12)
    assert list(dc) == pytest.approx([1.3 ** 3, 1.3 ** 2, 1.3, 1.0], rel=1e-12)


def horner_reversed(coeffs, x):
    """Coefficients from the constant term up, as numpy.polynomial stores them."""
    result = 0.0
    for c in reversed(coeffs):
        result = result * x + c
    return result


def test_horner_with_reversed():
    # reversed(xs) runs as xs[::-1].
    dc, dx = assert_gradient(horner_reversed, np.array([3.0, 2.0, -1.0, 0.5]), 1.3)
    np.testing.assert_allclose(dc, [1.0, 1.3, 1.3 ** 2, 1.3 ** 3], rtol=1e-12)
    assert assert_gradient(horner_reversed, [3.0, 2.0, -1.0, 0.5], 1.3)[1] == pytest.approx(dx, rel=1e-12)


# -- 10. A GRU cell unrolled over a sequence ----------------------------------------------------

def gru_cell(x, h, Wz, Uz, Wr, Ur, Wh, Uh):
    z = sigmoid(x @ Wz + h @ Uz)
    r = sigmoid(x @ Wr + h @ Ur)
    h_tilde = np.tanh(x @ Wh + (r * h) @ Uh)
    return (1 - z) * h + z * h_tilde


def gru_sequence_loss(xs, h0, Wz, Uz, Wr, Ur, Wh, Uh, targets):
    h = h0
    outputs = []
    for x in xs:
        h = gru_cell(x, h, Wz, Uz, Wr, Ur, Wh, Uh)
        outputs.append(h)
    hs = np.stack(outputs)
    return np.mean((hs - targets) ** 2)


def test_gru_unrolled_with_append_and_stack():
    T, n_in, n_h = 4, 2, 3
    xs = randn(T, n_in)
    weights = [0.5 * randn(n_in, n_h) if i % 2 == 0 else 0.5 * randn(n_h, n_h) for i in range(6)]
    assert_gradient(gru_sequence_loss, xs, randn(n_h), *weights, randn(T, n_h), wrt=(0, 1, 2, 3, 4, 5, 6, 7))


# -- 11. An LSTM with a tuple state, over a list of inputs -------------------------------------

def lstm_step(state, x, W, b):
    h, c = state
    gates = np.concatenate([x, h]) @ W + b
    n = h.shape[0]
    i = sigmoid(gates[:n])
    f = sigmoid(gates[n:2 * n])
    o = sigmoid(gates[2 * n:3 * n])
    g = np.tanh(gates[3 * n:])
    c = f * c + i * g
    h = o * np.tanh(c)
    return h, c


def lstm_last_output(inputs, W, b, w_out):
    n = w_out.shape[0]
    state = (np.zeros(n), np.zeros(n))
    for x in inputs:
        state = lstm_step(state, x, W, b)
    h, _ = state
    return float(h @ w_out)


def test_lstm_over_a_list_of_inputs():
    n_in, n = 2, 3
    inputs = [randn(n_in) for _ in range(5)]
    assert_gradient(lstm_last_output, inputs, 0.4 * randn(n_in + n, 4 * n), 0.1 * randn(4 * n), randn(n))


# -- 12. A dataclass of parameters --------------------------------------------------------------

@dataclasses.dataclass
class Params:
    W: np.ndarray
    b: np.ndarray


def mlp_regression_loss(params, X, y):
    hidden = np.tanh(X @ params.W + params.b)
    pred = hidden.sum(axis=1)
    return np.mean((pred - y) ** 2)


def test_dataclass_of_parameters():
    params = Params(W=0.5 * randn(3, 4), b=0.1 * randn(4))
    (g,) = assert_gradient(mlp_regression_loss, params, randn(8, 3), randn(8), wrt=(0,))
    assert isinstance(g, Params)


@dataclasses.dataclass
class TrainingConfig:
    W: np.ndarray
    b: np.ndarray
    weight_decay: float = 1e-3
    n_classes: int = 3
    name: str = "model"


def classifier_loss(model, X, labels):
    logits = X @ model.W + model.b
    return (softmax_cross_entropy(logits, labels)
            + model.weight_decay * np.sum(model.W * model.W))


def test_dataclass_with_hyperparameter_fields():
    model = TrainingConfig(W=0.3 * randn(4, 3), b=np.zeros(3), weight_decay=0.05)
    assert_gradient(classifier_loss, model, randn(7, 4), np.array([0, 1, 2, 2, 1, 0, 1]), wrt=(0,))


# -- 13. Keyword arguments with defaults, called with keywords ---------------------------------

def elastic_net(w, X, y, *, alpha=1.0, l1_ratio=0.5, smooth=1e-3):
    residual = X @ w - y
    l1 = np.sum(np.sqrt(w ** 2 + smooth))
    l2 = 0.5 * np.sum(w ** 2)
    return 0.5 * np.mean(residual ** 2) + alpha * (l1_ratio * l1 + (1.0 - l1_ratio) * l2)


def test_keyword_arguments_called_with_keywords():
    w, X, y = randn(4), randn(10, 4), randn(10)
    assert_gradient(elastic_net, w, X, y, wrt=(0,))
    assert_gradient(elastic_net, w, X, y, wrt=(0,), alpha=0.3, l1_ratio=0.9)


def weighted_loss(pred, target, weight=1.0, reduction="mean"):
    err = weight * (pred - target) ** 2
    if reduction == "mean":
        return np.mean(err)
    elif reduction == "sum":
        return np.sum(err)
    return err


def test_keyword_argument_selecting_a_branch():
    assert_gradient(weighted_loss, randn(5), randn(5), wrt=(0,), reduction="sum", weight=2.0)
    assert_gradient(weighted_loss, randn(5), randn(5), wrt=(0,), weight=0.5)


def test_float_keyword_argument_is_differentiated_by_name():
    pred, target = randn(5), randn(5)
    g = adtrans.gradient(weighted_loss, pred, target, wrt="weight", weight=2.0, reduction="sum")
    assert g == pytest.approx(np.sum((pred - target) ** 2), rel=1e-12)


# -- 14. Helpers defined in the module, called from the differentiated function ----------------

def relu(x):
    return np.maximum(x, 0.0)


def dense(x, W, b, activation=None):
    y = x @ W + b
    if activation is not None:
        y = activation(y)
    return y


def two_layer_net_loss(W1, b1, W2, b2, X, y):
    h = dense(X, W1, b1, activation=np.tanh)
    h = dense(h, W2, b2, activation=relu)
    out = dense(h, np.ones((h.shape[1], 1)), 0.0)
    return np.mean((out[:, 0] - y) ** 2)


def test_module_helpers_with_function_arguments():
    assert_gradient(two_layer_net_loss, 0.5 * randn(3, 4), 0.1 * randn(4), 0.5 * randn(4, 2), 0.3 + 0.1 * randn(2),
                    randn(6, 3), randn(6), wrt=(0, 1, 2, 3))


# -- 15. math and NumPy mixed on floats ---------------------------------------------------------

def black_scholes_call(spot, strike, rate, vol, t):
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol ** 2) * t) / (vol * math.sqrt(t))
    d2 = d1 - vol * np.sqrt(t)
    cdf1 = 0.5 * (1.0 + math.erf(d1 / math.sqrt(2.0)))
    cdf2 = 0.5 * (1.0 + math.erf(d2 / np.sqrt(2.0)))
    return spot * cdf1 - strike * np.exp(-rate * t) * cdf2


def test_black_scholes_mixing_math_and_numpy():
    spot, strike, rate, vol, t = 100.0, 95.0, 0.02, 0.25, 0.5
    grads = assert_gradient(black_scholes_call, spot, strike, rate, vol, t)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol ** 2) * t) / (vol * math.sqrt(t))
    delta = 0.5 * (1.0 + math.erf(d1 / math.sqrt(2.0)))
    assert float(grads[0]) == pytest.approx(delta, rel=1e-10)


# -- 16. Slicing, fancy indexing and boolean masks ----------------------------------------------

def total_variation_with_selection(x, idx, threshold=0.0):
    tv = np.sum(np.abs(x[1:] - x[:-1]))
    curvature = np.sum((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2)
    picked = np.sum(x[idx] ** 2)
    positive = x[x > threshold]
    return tv + curvature + picked + np.sum(np.log1p(positive))


def test_slicing_fancy_indexing_and_boolean_masks():
    x = np.array([0.3, -0.7, 1.2, 0.4, -0.1, 2.0, 0.8])
    assert_gradient(total_variation_with_selection, x, np.array([0, 2, 2, 5]), wrt=(0,))


def image_patch_loss(img, r0, c0, size=3):
    patch = img[r0:r0 + size, c0:c0 + size]
    border = img[0, :].sum() + img[-1, :].sum() + img[1:-1, 0].sum() + img[1:-1, -1].sum()
    return np.sum(patch ** 2) - 0.1 * border + np.sum(img[..., ::2] * img[..., 1::2][..., :1])


def test_two_dimensional_slices_and_ellipsis():
    assert_gradient(image_patch_loss, randn(5, 6), 1, 2, wrt=(0,))


# -- 17. In-place updates on a local copy --------------------------------------------------------

def exponential_smoothing(x, alpha):
    y = x.copy()
    for i in range(1, len(y)):
        y[i] += alpha * (y[i - 1] - y[i])
    return np.sum(y ** 2)


def test_in_place_update_on_a_local_copy():
    assert_gradient(exponential_smoothing, randn(6), 0.3)


def heat_equation_explicit(u0, kappa, steps=20):
    u = u0.copy()
    n = u.shape[0]
    for _ in range(steps):
        lap = np.zeros(n)
        lap[1:-1] = u[2:] - 2 * u[1:-1] + u[:-2]
        u[1:-1] += kappa * lap[1:-1]
        u[0] = u[-1] = 0.0
    return np.sum(u ** 2)


def test_explicit_heat_equation_with_slice_updates():
    u0 = np.sin(np.linspace(0, np.pi, 8)) + 0.1 * randn(8)
    assert_gradient(heat_equation_explicit, u0, 0.2)


def test_minimal_chained_assignment_whose_first_target_is_a_subscript():
    # Reduced from heat_equation_explicit: `u[0] = u[-1] = 0.0` crashes inside
    # ast.unparse (TypeError: sequence item ...: expected str instance, NoneType found).
    # `v = u[0] = ...` works; `u[0] = v = ...` and `u[0] = u[-1] = ...` crash.
    def f(x):
        u = x.copy()
        u[0] = u[-1] = 0.0
        return np.sum(u ** 2)

    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(adtrans.gradient(f, x), [0.0, 4.0, 0.0])


# -- 18. Gaussian-process marginal likelihood with Cholesky and solve ---------------------------

def rbf_kernel(X1, X2, lengthscale, variance):
    sq = np.sum(X1 ** 2, 1)[:, None] + np.sum(X2 ** 2, 1)[None, :] - 2 * X1 @ X2.T
    return variance * np.exp(-0.5 * sq / lengthscale ** 2)


def gp_negative_log_marginal_likelihood(log_lengthscale, log_variance, log_noise, X, y):
    n = X.shape[0]
    K = rbf_kernel(X, X, np.exp(log_lengthscale), np.exp(log_variance))
    K = K + (np.exp(log_noise) + 1e-8) * np.eye(n)
    L = np.linalg.cholesky(K)
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
    return 0.5 * y @ alpha + np.sum(np.log(np.diag(L))) + 0.5 * n * np.log(2 * np.pi)


def test_gp_marginal_likelihood_with_cholesky_and_solve():
    X = np.linspace(-2, 2, 7)[:, None]
    y = np.sin(2 * X[:, 0]) + 0.1 * randn(7)
    assert_gradient(gp_negative_log_marginal_likelihood, 0.1, -0.2, -2.0, X, y, wrt=(0, 1, 2, 3))


def gp_nll_with_slogdet(theta, X, y):
    K = rbf_kernel(X, X, theta[0], theta[1]) + theta[2] ** 2 * np.eye(len(y))
    sign, logdet = np.linalg.slogdet(K)
    return 0.5 * y @ np.linalg.solve(K, y) + 0.5 * logdet


def test_gp_with_slogdet_and_a_parameter_vector():
    X = randn(6, 2)
    y = randn(6)
    assert_gradient(gp_nll_with_slogdet, np.array([0.9, 1.3, 0.4]), X, y)


# -- 19. A piecewise function with if/elif/else on values -----------------------------------------

def smooth_step(x, edge0=0.0, edge1=1.0):
    t = (x - edge0) / (edge1 - edge0)
    if t <= 0.0:
        return 0.0
    elif t >= 1.0:
        return 1.0
    else:
        return t * t * (3.0 - 2.0 * t)


def piecewise_cost(x, y):
    if x < -1.0:
        c = -2.0 * x - 1.0
    elif x < 1.0:
        c = x ** 2
    else:
        c = 2.0 * x - 1.0
    return c * smooth_step(y, edge0=-1.0, edge1=2.0) + math.exp(-y)


@pytest.mark.parametrize("x,y", [(-3.0, 0.5), (0.4, -2.0), (0.4, 0.5), (2.5, 3.0), (2.5, 1.5)])
def test_piecewise_function_on_values(x, y):
    assert_gradient(piecewise_cost, x, y)


# -- 20. enumerate and zip loops -----------------------------------------------------------------

def discounted_return_loss(rewards, values, gamma=0.9):
    G = 0.0
    returns = []
    for r in rewards[::-1]:
        G = r + gamma * G
        returns.append(G)
    returns = returns[::-1]
    loss = 0.0
    for t, (ret, v) in enumerate(zip(returns, values)):
        loss = loss + (gamma ** t) * (ret - v) ** 2
    return loss / len(values)


def test_enumerate_and_zip_loops():
    assert_gradient(discounted_return_loss, randn(5), randn(5))


def weighted_sum_of_residuals(params, xs, ys, weights):
    total = 0.0
    for i, (x, y) in enumerate(zip(xs, ys)):
        pred = params[0] + params[1] * x + params[2] * x ** 2
        total += weights[i] * (pred - y) ** 2
    return total


def test_enumerate_zip_with_augmented_assignment():
    xs = [0.0, 0.5, 1.0, 1.5]
    ys = [1.0, 1.3, 2.1, 3.2]
    assert_gradient(weighted_sum_of_residuals, np.array([0.9, 0.2, 0.8]), xs, ys, [1.0, 0.5, 2.0, 1.0], wrt=(0,))


# -- 21. A dict of parameters --------------------------------------------------------------------

def init_mlp(sizes):
    params = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = 0.5 * RNG.standard_normal((m, n))
        params[f"b{i}"] = 0.1 * RNG.standard_normal(n)
    return params


def mlp_dict_loss(params, X, y, n_layers=2):
    h = X
    for i in range(n_layers):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_layers - 1:
            h = np.tanh(h)
    return np.mean((h[:, 0] - y) ** 2)


def test_dict_of_parameters_with_formatted_keys():
    assert_gradient(mlp_dict_loss, init_mlp([3, 4, 1]), randn(5, 3), randn(5), wrt=(0,))


def adam_free_loss(params, x):
    out = params["scale"] * np.tanh(x * params["w"]) + params["shift"]
    return np.sum(out ** 2)


def test_dict_of_parameters_with_literal_keys():
    params = {"w": randn(3), "scale": 1.5, "shift": 0.2}
    grads = assert_gradient(adam_free_loss, params, randn(3), wrt=(0,))
    assert set(grads[0]) == {"w", "scale", "shift"}


# -- 22. A loss with einsum ----------------------------------------------------------------------

def bilinear_attention_loss(Q, K, W, V):
    scores = np.einsum("id,de,je->ij", Q, W, K)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    out = np.einsum("ij,jd->id", weights, V)
    return np.einsum("id,id->", out, out)


def test_einsum_loss():
    assert_gradient(bilinear_attention_loss, randn(3, 2), randn(4, 2), 0.5 * randn(2, 2), randn(4, 2))


def batched_quadratic_form(x, A):
    return np.sum(np.einsum("bi,ij,bj->b", x, A, x) ** 2)


def test_einsum_with_a_repeated_operand():
    assert_gradient(batched_quadratic_form, randn(3, 4), randn(4, 4))


# -- 23. Huber loss with np.where ----------------------------------------------------------------

def huber_loss(pred, target, delta=1.0):
    r = pred - target
    abs_r = np.abs(r)
    quadratic = 0.5 * r ** 2
    linear = delta * (abs_r - 0.5 * delta)
    return np.mean(np.where(abs_r <= delta, quadratic, linear))


def test_huber_loss_with_where():
    pred = np.array([0.1, -2.0, 3.5, 0.7, -0.4, 1.6])
    g, = assert_gradient(huber_loss, pred, np.zeros(6), wrt=(0,))
    np.testing.assert_allclose(g, np.clip(pred, -1.0, 1.0) / 6, rtol=1e-12)


# -- 24. An early return from inside a loop ----------------------------------------------------

def first_passage_value(x, threshold):
    total = 0.0
    for i in range(len(x)):
        total = total + x[i] ** 2
        if total > threshold:
            return total * (i + 1)
    return -total


@pytest.mark.parametrize("threshold", [1.0, 100.0])
def test_early_return_inside_a_loop(threshold):
    assert_gradient(first_passage_value, np.array([0.3, 0.6, 0.9, 1.2]), threshold, wrt=(0,))


def bisection_then_refine(a, lo=0.0, hi=10.0):
    """sqrt(a) by bisection to a bracket, then Newton steps, returning as soon as converged."""
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if mid * mid > a:
            hi = mid
        else:
            lo = mid
        if hi - lo < 0.1:
            break
    x = 0.5 * (lo + hi)
    for _ in range(50):
        x_new = 0.5 * (x + a / x)
        if abs(x_new - x) < 1e-14:
            return x_new
        x = x_new
    return x


def test_newton_with_early_return_after_bisection():
    (g,) = assert_gradient(bisection_then_refine, 2.0)
    assert g == pytest.approx(0.5 / math.sqrt(2.0), rel=1e-8)


# -- 25. A NamedTuple state and a float32 model ---------------------------------------------------

class State(NamedTuple):
    position: np.ndarray
    velocity: np.ndarray


def spring_step(state, k, dt):
    acc = -k * state.position
    velocity = state.velocity + dt * acc
    return State(state.position + dt * velocity, velocity)


def spring_energy(state, k, dt=0.05, steps=10):
    for _ in range(steps):
        state = spring_step(state, k, dt)
    return 0.5 * np.sum(state.velocity ** 2) + 0.5 * k * np.sum(state.position ** 2)


def test_named_tuple_state_through_a_loop():
    assert_gradient(spring_energy, State(randn(3), randn(3)), 2.0)


def float32_mlp_loss(W1, W2, X):
    h = np.maximum(X @ W1, 0)
    out = h @ W2
    return np.mean(out ** 2)


def test_float32_model_keeps_float32_gradients():
    W1 = (0.5 * randn(3, 4)).astype(np.float32)
    W2 = (0.5 * randn(4, 2)).astype(np.float32)
    X = randn(5, 3).astype(np.float32)
    g1, g2 = adtrans.gradient(float32_mlp_loss, W1, W2, X, wrt=(0, 1))
    assert g1.dtype == np.float32 and g2.dtype == np.float32
    W1d, W2d, Xd = W1.astype(np.float64), W2.astype(np.float64), X.astype(np.float64)
    f64 = assert_gradient(float32_mlp_loss, W1d, W2d, Xd, wrt=(0, 1))
    np.testing.assert_allclose(g1, f64[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g2, f64[1], rtol=1e-4, atol=1e-5)


# -- 26. Sinkhorn iterations with a convergence test ------------------------------------------------

def sinkhorn_cost(C, a, b, reg=0.5, tol=1e-10, max_iter=500):
    K = np.exp(-C / reg)
    u = np.ones_like(a)
    v = np.ones_like(b)
    for it in range(max_iter):
        u_prev = u
        u = a / (K @ v)
        v = b / (K.T @ u)
        if np.max(np.abs(u - u_prev)) < tol:
            break
    P = u[:, None] * K * v[None, :]
    return np.sum(P * C)


def test_sinkhorn_with_convergence_break():
    C = np.abs(randn(4, 3))
    a = np.full(4, 0.25)
    b = np.array([0.2, 0.5, 0.3])
    assert_gradient(sinkhorn_cost, C, a, b, rtol=1e-5, atol=1e-7)


# -- 27. Built-in sum over a generator, min/max on floats, sorting -----------------------------------

def robust_trimmed_loss(residuals, trim=1):
    r = np.sort(residuals ** 2)
    kept = r[:len(r) - trim]
    worst = max(float(kept[-1]), 0.5)
    return sum(v / worst for v in kept) + min(kept[0], 0.1)


def test_sort_generator_sum_and_builtin_min_max():
    assert_gradient(robust_trimmed_loss, np.array([0.5, -1.3, 0.2, 2.1, -0.8]))


def test_minimal_enumerate_of_zip_over_differentiated_sequences():
    # Reduced from discounted_return_loss: `for i, (a, b) in enumerate(zip(xs, ys))` is a
    # DifferentiationError "function 'zip' is not differentiable" when xs or ys is
    # differentiated (it works when both are constants, and `for a, b in zip(...)` works).
    def f(xs, ys):
        s = 0.0
        for i, (a, b) in enumerate(zip(xs, ys)):
            s = s + i * a * b
        return s

    xs, ys = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0])
    dx, dy = adtrans.gradient(f, xs, ys)
    np.testing.assert_allclose(dx, [0.0, -1.0, 4.0])
    np.testing.assert_allclose(dy, [0.0, 2.0, 6.0])


# -- 28. Closures: a nested helper and a lambda reading the parameters -----------------------------

def loss_with_nested_predict(w, b, X, y):
    def predict(inputs):
        return np.tanh(inputs @ w + b)

    return np.mean((predict(X) - y) ** 2)


def test_nested_helper_closing_over_the_parameters():
    assert_gradient(loss_with_nested_predict, randn(3), 0.1, randn(6, 3), randn(6), wrt=(0, 1))


def loss_with_lambda_model(w, X, y):
    model = lambda inputs: sigmoid(inputs @ w)
    return np.sum((model(X) - y) ** 2)


def test_lambda_closing_over_the_parameters():
    assert_gradient(loss_with_lambda_model, randn(3), randn(6, 3), RNG.random(6), wrt=(0,))


def test_minimal_closure_reading_a_differentiated_variable():
    # A nested function (or lambda) that reads a differentiated variable of the enclosing
    # function gets a zero derivative for it, with a ZeroDerivativeWarning claiming the result
    # does not depend on `w`. d/dw sum((x * w)^2) = 2 w sum(x^2) = 2 * 2 * 5 = 20.
    def f(w, x):
        def g(v):
            return v * w
        return np.sum(g(x) ** 2)

    x = np.array([1.0, 2.0])
    assert adtrans.gradient(f, 2.0, x, wrt=0) == pytest.approx(20.0, rel=1e-12)


# -- 29. Nested dataclass modules with __call__ -------------------------------------------------------

@dataclasses.dataclass
class Linear:
    W: np.ndarray
    b: np.ndarray

    def __call__(self, x):
        return x @ self.W + self.b


@dataclasses.dataclass
class TwoLayer:
    first: Linear
    second: Linear

    def __call__(self, x):
        return self.second(np.tanh(self.first(x)))


def module_regression_loss(model, X, y):
    return np.mean((model(X)[:, 0] - y) ** 2)


def test_nested_dataclass_modules_with_call():
    model = TwoLayer(Linear(0.5 * randn(3, 4), 0.1 * randn(4)), Linear(0.5 * randn(4, 1), 0.1 * randn(1)))
    (g,) = assert_gradient(module_regression_loss, model, randn(5, 3), randn(5), wrt=(0,))
    assert isinstance(g.first, Linear) and g.second.W.shape == (4, 1)


# -- 30. Differentiating through hand-written gradient steps (MAML-style), and a Kalman filter ---------

def maml_outer_loss(w0, X_train, y_train, X_val, y_val, lr=0.1, inner_steps=3):
    w = w0
    for _ in range(inner_steps):
        grad = 2 * X_train.T @ (X_train @ w - y_train) / len(y_train)
        w = w - lr * grad
    return np.mean((X_val @ w - y_val) ** 2)


def test_differentiating_through_inner_gradient_steps():
    assert_gradient(maml_outer_loss, randn(3), randn(6, 3), randn(6), randn(4, 3), randn(4), wrt=(0,), lr=0.2)


def kalman_negative_log_likelihood(Q, R, zs, F, H):
    n = F.shape[0]
    x = np.zeros(n)
    P = np.eye(n)
    nll = 0.0
    for z in zs:
        x = F @ x
        P = F @ P @ F.T + Q
        S = H @ P @ H.T + R
        K = P @ H.T @ np.linalg.inv(S)
        innovation = z - H @ x
        nll = nll + 0.5 * (np.log(np.linalg.det(S)) + innovation @ np.linalg.solve(S, innovation))
        x = x + K @ innovation
        P = (np.eye(n) - K @ H) @ P
    return nll


def test_kalman_filter_likelihood():
    F = np.array([[1.0, 0.1], [0.0, 1.0]])
    H = np.array([[1.0, 0.0]])
    zs = [randn(1) for _ in range(5)]
    assert_gradient(kalman_negative_log_likelihood, 0.1 * np.eye(2), 0.5 * np.eye(1), zs, F, H, wrt=(0, 1))


def pairwise_similarity_energy(X):
    n = X.shape[0]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            D[i, j] = np.sqrt(np.sum((X[i] - X[j]) ** 2))
    return np.sum(np.exp(-D))


def test_double_loop_filling_a_matrix_with_continue():
    assert_gradient(pairwise_similarity_energy, randn(4, 2))


# -- 31. Writing through repeated indices --------------------------------------------------------------

def last_write_wins_table(values, weights):
    # Slots 0 and 2 are written twice: NumPy keeps the last value written.
    table = np.zeros(4)
    slots = np.array([0, 2, 0, 3, 2])
    table[slots] += values
    return np.sum(weights * table ** 2)


def test_augmented_assignment_through_repeated_indices():
    values = np.array([0.5, -1.0, 2.0, 0.3, 1.5])
    weights = np.array([1.0, 2.0, 3.0, 4.0])
    (g,) = assert_gradient(last_write_wins_table, values, weights, wrt=(0,))
    # table = [2.0, 0, 1.5, 0.3]; only the last write to each slot reaches the result.
    np.testing.assert_allclose(g, [0.0, 0.0, 2 * 1.0 * 2.0, 2 * 4.0 * 0.3, 2 * 3.0 * 1.5])


def test_minimal_assignment_through_repeated_indices():
    # y[[0, 0, 1]] = w keeps w[1] in y[0] (the last write); w[0] is overwritten and has no
    # influence. adtrans gives d_w = [1, 1, 10] instead of [0, 1, 10].
    def f(w):
        y = np.zeros(2)
        y[np.array([0, 0, 1])] = w
        return y[0] + 10.0 * y[1]

    np.testing.assert_array_equal(adtrans.gradient(f, np.array([1.0, 2.0, 3.0])), [0.0, 1.0, 10.0])


# -- 32. Functional updates of a parameter dict, and unpacking into a call -------------------------------

def sgd_unrolled_dict(params, X, y, lr=0.1, steps=2):
    for _ in range(steps):
        r = X @ params["w"] + params["b"] - y
        params = {**params, "w": params["w"] - lr * X.T @ r / len(y), "b": params["b"] - lr * np.mean(r)}
    return np.sum((X @ params["w"] + params["b"] - y) ** 2)


def test_functional_dict_update_with_double_star():
    assert_gradient(sgd_unrolled_dict, {"w": randn(3), "b": 0.3}, randn(6, 3), randn(6), wrt=(0,))


def test_minimal_dict_display_with_double_star():
    # `{**d}` crashes inside ast.unparse: AttributeError: 'NoneType' object has no attribute '_fields'.
    def f(d):
        e = {**d}
        return np.sum(e["w"] ** 2)

    g = adtrans.gradient(f, {"w": np.array([1.0, 2.0])})
    np.testing.assert_array_equal(g["w"], [2.0, 4.0])


def affine_sum(x, a, b):
    return np.sum(a * x + b)


def loss_unpacking_parameters(params, x):
    return affine_sum(x, *params) ** 2


def test_call_unpacking_a_tuple_of_parameters():
    assert_gradient(loss_unpacking_parameters, (randn(3), 0.5), randn(3), wrt=(0,))


def test_minimal_call_with_star_argument():
    # `affine_sum(x, *ab)` was rejected as "this call does not match affine_sum(x, a, b)" /
    # "missing a required argument: 'b'", though the call is valid; now it is differentiated.
    def f(ab, x):
        return affine_sum(x, *ab)

    d_ab = adtrans.gradient(f, (np.ones(2), 3.0), np.ones(2), wrt=0)
    assert isinstance(d_ab, tuple)
    np.testing.assert_array_equal(d_ab[0], np.ones(2))
    assert d_ab[1] == 2.0


# -- The checker itself can fail -------------------------------------------------------------------

def _scaled_square(x):
    return x * x


@adtrans.derivative(of=_scaled_square)
def _scaled_square_wrong_vjp(x):
    return x * x, lambda d: d * 3.0 * x      # wrong on purpose: the derivative is 2 x


def _uses_wrong_rule(x, w):
    return np.sum(_scaled_square(x) * w)


def test_assert_gradient_catches_a_wrong_derivative():
    with pytest.raises(AssertionError, match="gradient w.r.t. argument 0"):
        assert_gradient(_uses_wrong_rule, randn(3), randn(3))
