"""Whole scientific programs, written the way a scientist writes NumPy, differentiated end to end.

Each program is 10-40 lines of the kind found in a physics, finance,
statistics or signal-processing notebook: finite-difference stencils on
slices with boundaries set by chained assignment (``u[0] = u[-1] = 0``),
pairwise distances by broadcasting with a masked diagonal, Verlet and
leapfrog integrators, a ``while`` loop stopped by a physical condition,
``math.erf`` option pricing, linear solves, power iteration, convolutions
by loops over slices, an RNN over characters, an HMM forward pass in log
space... Arguments are Python floats, float64 and float32 arrays, tuples,
NamedTuples and dataclasses of parameters.

Every program is checked against central finite differences in float64
through ``gradient``, ``value_with_gradient`` and ``value_with_pullback``
(`assert_gradient`, which also checks the value is ``f``'s, bit for bit)
and through ``adtrans.check_gradient``; some also against a closed form
(Black-Scholes Greeks, the derivative of a ridge solution, of an
eigenvalue). Some are differentiated again with ``checkpointed``,
``@differentiable(checkpoint=True)``, ``recomputed()`` and ``segmented``
and must give the plain program's gradient.

Bugs found are kept as the correct expectation, marked ``xfail(strict=True)``
with a minimal reproducer beside the realistic program (``test_minimal_*``).
"""

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pytest

import adtrans
from structured_check import assert_gradient


def check(f, *args, wrt=None, rtol=1e-5, atol=1e-7):
    """Finite differences through the three entry points, then adtrans's own dot-product check."""
    grads = assert_gradient(f, *args, wrt=wrt, rtol=rtol, atol=atol)
    adtrans.check_gradient(f, *args, wrt=wrt)
    return grads


def leaves(t):
    """The arrays and floats of a tangent, in order."""
    if isinstance(t, (list, tuple)):
        return [x for item in t for x in leaves(item)]
    if dataclasses.is_dataclass(t):
        return [x for f in dataclasses.fields(t) for x in leaves(getattr(t, f.name))]
    return [t]


def to_float32(a):
    if isinstance(a, np.ndarray) and a.dtype == np.float64:
        return a.astype(np.float32)
    if isinstance(a, float):
        return np.float32(a)
    if isinstance(a, tuple) and hasattr(a, "_fields"):
        return type(a)(*[to_float32(x) for x in a])
    if isinstance(a, (list, tuple)):
        return type(a)(to_float32(x) for x in a)
    return a


def check_float32(f, *args, rtol=2e-3):
    """In float32 the value is f's (same bits, same type), every gradient stays float32, and it is
    the float64 gradient to float32 accuracy."""
    args32 = tuple(to_float32(a) for a in args)
    positions = tuple(i for i, a in enumerate(args) if not isinstance(a, (int, list)) or isinstance(a, bool)
                      or (isinstance(a, list) and isinstance(a[0], np.ndarray)))
    value, grads = adtrans.value_with_gradient(f, *args32, wrt=positions)
    expected = f(*args32)
    assert type(value) is type(expected) and np.array_equal(value, expected), (value, expected)
    _, grads64 = adtrans.value_with_gradient(f, *args, wrt=positions)
    for g32, g64 in zip(leaves(grads), leaves(grads64)):
        assert np.asarray(g32).dtype == np.float32, (type(g32), getattr(g32, "dtype", None))
        scale = max(1.0, float(np.max(np.abs(g64))))
        np.testing.assert_allclose(np.asarray(g32, dtype=np.float64), g64, rtol=rtol, atol=rtol * scale)


# == 1. Partial differential equations on grids ==================================================

def wave_1d(c, u0, v0, dt=0.01, dx=0.1, steps=30):
    """Leapfrog for u_tt = c^2 u_xx with fixed ends; returns the L2 energy at the end."""
    u_prev = u0.copy()
    u = u0 + dt * v0
    u[0] = u[-1] = 0.0
    r2 = (c * dt / dx) ** 2
    for _ in range(steps):
        u_next = np.empty_like(u)
        u_next[1:-1] = 2 * u[1:-1] - u_prev[1:-1] + r2 * (u[2:] - 2 * u[1:-1] + u[:-2])
        u_next[0] = u_next[-1] = 0.0
        u_prev, u = u, u_next
    return np.sum(u ** 2) * dx


def test_wave_equation_leapfrog_with_fixed_ends():
    rng = np.random.default_rng(1)
    u0 = np.sin(np.linspace(0, np.pi, 12))
    v0 = 0.1 * rng.standard_normal(12)
    check(wave_1d, 1.3, u0, v0)
    check_float32(wave_1d, 1.3, u0, v0)


def heat_in_place(u0, alpha, steps=20):
    u = u0.copy()
    for _ in range(steps):
        u[1:-1] += alpha * (u[2:] - 2 * u[1:-1] + u[:-2])
        u[0] = u[-1] = 0.0
    return np.sum(u * np.linspace(0, 1, len(u)))


def test_heat_equation_with_an_augmented_slice_update():
    rng = np.random.default_rng(2)
    u0 = np.sin(np.linspace(0, np.pi, 10)) + 0.1 * rng.standard_normal(10)
    check(heat_in_place, u0, 0.2)


def jacobi_poisson(f, n_iter=30):
    """Jacobi sweeps for -laplace(u) = f on the unit square, zero boundary."""
    n = f.shape[0]
    u = np.zeros((n + 2, n + 2))
    h2 = (1.0 / (n + 1)) ** 2
    for _ in range(n_iter):
        u[1:-1, 1:-1] = 0.25 * (u[2:, 1:-1] + u[:-2, 1:-1] + u[1:-1, 2:] + u[1:-1, :-2] + h2 * f)
    return np.sum(u ** 2)


def test_jacobi_iteration_for_poisson_in_two_dimensions():
    check(jacobi_poisson, np.random.default_rng(3).standard_normal((4, 4)))


# == 2. Particles =================================================================================

def nbody_potential(x, m, eps=0.1):
    n = x.shape[0]
    r = x[:, None, :] - x[None, :, :]
    d2 = np.sum(r ** 2, axis=-1) + eps ** 2
    inv = 1.0 / np.sqrt(d2)
    mask = ~np.eye(n, dtype=bool)
    return -0.5 * np.sum((m[:, None] * m[None, :] * inv)[mask])


def test_softened_gravitational_potential_with_a_boolean_mask():
    rng = np.random.default_rng(4)
    x, m = rng.standard_normal((4, 3)), rng.uniform(1, 2, 4)
    check(nbody_potential, x, m)
    check_float32(nbody_potential, x, m)
    # the force on each body is minus the gradient: momentum is conserved, forces sum to zero
    force = -adtrans.gradient(nbody_potential, x, m, wrt=0)
    np.testing.assert_allclose(force.sum(axis=0), 0.0, atol=1e-12)


def nbody_simulation(x, v, m, dt=0.01, steps=10, eps=0.1):
    n = x.shape[0]
    for _ in range(steps):
        r = x[None, :, :] - x[:, None, :]
        d2 = np.sum(r * r, axis=2) + eps * eps
        inv3 = d2 ** -1.5
        inv3[np.arange(n), np.arange(n)] = 0.0
        a = np.sum(m[None, :, None] * r * inv3[:, :, None], axis=1)
        v = v + dt * a
        x = x + dt * v
    return np.sum(x[:, 0]) + 0.5 * np.sum(m * np.sum(v ** 2, axis=1))


def test_nbody_euler_cromer_with_a_diagonal_set_by_fancy_indexing():
    rng = np.random.default_rng(5)
    check(nbody_simulation, rng.standard_normal((4, 2)), 0.1 * rng.standard_normal((4, 2)),
          rng.uniform(1, 2, 4))


def lennard_jones(positions, sigma, epsilon):
    """A list of 3-vectors, a double loop over pairs, math.sqrt of a dot product."""
    n = len(positions)
    energy = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = positions[i] - positions[j]
            r = math.sqrt(d @ d)
            sr6 = (sigma / r) ** 6
            energy += 4 * epsilon * (sr6 ** 2 - sr6)
    return energy


def test_lennard_jones_over_a_list_of_positions():
    rng = np.random.default_rng(6)
    positions = [2.0 * rng.standard_normal(3) for _ in range(4)]
    grads = check(lennard_jones, positions, 1.0, 0.5)
    # translation invariance: the forces on all particles sum to zero
    np.testing.assert_allclose(np.sum(grads[0], axis=0), 0.0, atol=1e-10)
    # energy is homogeneous of degree one in epsilon
    assert math.isclose(grads[2], lennard_jones(positions, 1.0, 0.5) / 0.5, rel_tol=1e-12)


def spring_chain(k, x0, m=1.0, dt=0.05, steps=40):
    """Velocity Verlet for a chain of masses joined by springs of rest length one."""
    n = len(x0)
    x = x0.copy()
    v = np.zeros(n)

    def force(x):
        f = np.zeros_like(x)
        ext = x[1:] - x[:-1] - 1.0
        f[:-1] += k * ext
        f[1:] -= k * ext
        return f

    a = force(x) / m
    for _ in range(steps):
        x = x + dt * v + 0.5 * dt ** 2 * a
        a_new = force(x) / m
        v = v + 0.5 * dt * (a + a_new)
        a = a_new
    return x[-1] - x[0]


def test_spring_chain_velocity_verlet_with_a_nested_force():
    check(spring_chain, 2.0, np.arange(5.0) * 1.1)


def projectile_range(v0, angle, drag):
    x, y = 0.0, 0.0
    vx = v0 * math.cos(angle)
    vy = v0 * math.sin(angle)
    dt = 0.01
    g = 9.81
    while y >= 0.0:
        speed = math.sqrt(vx * vx + vy * vy)
        vx -= drag * speed * vx * dt
        vy -= (g + drag * speed * vy) * dt
        x += vx * dt
        y += vy * dt
    return x


def projectile_landing(v0, angle, drag):
    """The same with `while True` / `break` and a linear interpolation of the landing point."""
    x, y = 0.0, 0.0
    vx, vy = v0 * math.cos(angle), v0 * math.sin(angle)
    dt = 0.02
    while True:
        x_prev, y_prev = x, y
        speed = math.hypot(vx, vy)
        vx, vy = vx - drag * speed * vx * dt, vy - (9.81 + drag * speed * vy) * dt
        x, y = x + vx * dt, y + vy * dt
        if y < 0.0:
            break
    return x_prev + (x - x_prev) * y_prev / (y_prev - y)


@pytest.mark.parametrize("program", [projectile_range, projectile_landing])
def test_projectile_with_drag_stopped_by_the_ground(program):
    check(program, 10.0, 0.7, 0.05)
    # without drag, the interpolated range is close to v0^2 sin(2a) / g, and so is its derivative
    if program is projectile_landing:
        g_v0 = adtrans.gradient(program, 10.0, 0.7, 0.0, wrt=0)
        assert abs(g_v0 - 2 * 10.0 * math.sin(1.4) / 9.81) < 0.05


def nbody_accel(x, m, eps):
    n = x.shape[0]
    r = x[None, :, :] - x[:, None, :]
    d2 = np.sum(r * r, axis=2) + eps * eps
    inv3 = d2 ** -1.5
    inv3[np.arange(n), np.arange(n)] = 0.0
    return np.sum(m[None, :, None] * r * inv3[:, :, None], axis=1)


def leapfrog_step(state, m, dt):
    x, v = state
    v = v + 0.5 * dt * nbody_accel(x, m, 0.1)
    x = x + dt * v
    v = v + 0.5 * dt * nbody_accel(x, m, 0.1)
    return (x, v)


@adtrans.differentiable(checkpoint=True)
def leapfrog_step_checkpointed(state, m, dt):
    x, v = state
    v = v + 0.5 * dt * nbody_accel(x, m, 0.1)
    x = x + dt * v
    v = v + 0.5 * dt * nbody_accel(x, m, 0.1)
    return (x, v)


def nbody_leapfrog(state, m, dt, steps=6):
    for _ in range(steps):
        state = leapfrog_step(state, m, dt)
    x, v = state
    return np.sum(x[:, 0] * m) + 0.5 * np.sum(m[:, None] * v ** 2)


def nbody_leapfrog_checkpointed(state, m, dt, steps=6):
    for _ in range(steps):
        state = leapfrog_step_checkpointed(state, m, dt)
    x, v = state
    return np.sum(x[:, 0] * m) + 0.5 * np.sum(m[:, None] * v ** 2)


def test_leapfrog_on_a_tuple_state_checkpointed_equals_plain():
    rng = np.random.default_rng(7)
    state = (3.0 * rng.standard_normal((3, 2)), 0.1 * rng.standard_normal((3, 2)))
    m = rng.uniform(1, 2, 3)
    plain = check(nbody_leapfrog, state, m, 0.05)
    value, ckpt = adtrans.value_with_gradient(nbody_leapfrog_checkpointed, state, m, 0.05)
    assert value == nbody_leapfrog(state, m, 0.05)
    for a, b in zip(leaves(ckpt), leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


class Pendulum(NamedTuple):
    m1: float
    m2: float
    l1: float
    l2: float


def double_pendulum(p, th, om, dt=0.01, steps=20):
    """A 2x2 mass matrix built with np.array from scalars and solved each step."""
    g = 9.81
    for _ in range(steps):
        d = th[0] - th[1]
        M = np.array([[(p.m1 + p.m2) * p.l1, p.m2 * p.l2 * np.cos(d)],
                      [p.l1 * np.cos(d), p.l2]])
        rhs = np.array([-p.m2 * p.l2 * om[1] ** 2 * np.sin(d) - (p.m1 + p.m2) * g * np.sin(th[0]),
                        p.l1 * om[0] ** 2 * np.sin(d) - g * np.sin(th[1])])
        acc = np.linalg.solve(M, rhs)
        om = om + dt * acc
        th = th + dt * om
    return th[1]


def test_double_pendulum_with_a_namedtuple_of_parameters():
    check(double_pendulum, Pendulum(1.0, 1.5, 1.0, 0.7), np.array([0.5, -0.3]), np.array([0.0, 0.1]))


@dataclass
class LotkaVolterra:
    alpha: float
    beta: float
    gamma: float
    delta: float


def lotka_volterra_fit(p, y0, data, dt=0.05):
    """ODE parameter fit: a trajectory written row by row into a preallocated array."""
    T = data.shape[0]
    traj = np.zeros((T, 2))
    y = y0.copy()
    for t in range(T):
        traj[t] = y
        prey, pred = y[0], y[1]
        dy = np.array([p.alpha * prey - p.beta * prey * pred,
                       p.delta * prey * pred - p.gamma * pred])
        y = y + dt * dy
    return np.mean((traj - data) ** 2)


def test_lotka_volterra_fit_with_a_dataclass_of_floats():
    rng = np.random.default_rng(8)
    check(lotka_volterra_fit, LotkaVolterra(1.0, 0.4, 0.8, 0.3), np.array([2.0, 1.0]),
          rng.uniform(0.5, 2, (10, 2)))


def mean_field_ising(J, h, beta, iters=40):
    m = np.zeros(len(h))
    for _ in range(iters):
        m = 0.5 * m + 0.5 * np.tanh(beta * (J @ m + h))
    return np.sum(m)


def test_mean_field_ising_damped_fixed_point():
    rng = np.random.default_rng(9)
    A = rng.standard_normal((4, 4))
    check(mean_field_ising, 0.1 * (A + A.T), 0.2 * rng.standard_normal(4), 1.3)


# == 3. Finance ===================================================================================

def black_scholes_call(S, K, T, r, sigma):
    d1 = (math.log(S / K) + (r + 0.5 * sigma ** 2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    N = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    return S * N(d1) - K * math.exp(-r * T) * N(d2)


def test_black_scholes_greeks_against_their_closed_forms():
    S, K, T, r, sigma = 100.0, 95.0, 0.5, 0.03, 0.2
    delta, dK, dT, rho, vega = check(black_scholes_call, S, K, T, r, sigma)
    d1 = (math.log(S / K) + (r + 0.5 * sigma ** 2) * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    N = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    phi = math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi)
    assert math.isclose(delta, N(d1), rel_tol=1e-12)
    assert math.isclose(dK, -math.exp(-r * T) * N(d2), rel_tol=1e-12)
    assert math.isclose(dT, S * phi * sigma / (2 * math.sqrt(T)) + r * K * math.exp(-r * T) * N(d2), rel_tol=1e-12)
    assert math.isclose(rho, K * T * math.exp(-r * T) * N(d2), rel_tol=1e-12)
    assert math.isclose(vega, S * phi * math.sqrt(T), rel_tol=1e-12)
    assert all(type(g) is float for g in (delta, dK, dT, rho, vega))


def monte_carlo_call(S0, sigma, r, T, K, z):
    ST = S0 * np.exp((r - 0.5 * sigma ** 2) * T + sigma * np.sqrt(T) * z)
    payoff = np.maximum(ST - K, 0.0)
    return np.exp(-r * T) * payoff.mean()


def test_monte_carlo_call_pathwise_delta_and_vega():
    z = np.random.default_rng(10).standard_normal(400)
    S0, sigma, r, T, K = 100.0, 0.2, 0.03, 1.0, 100.0
    grads = check(monte_carlo_call, S0, sigma, r, T, K, z, wrt=(0, 1))
    # the pathwise delta is the discounted mean of ST/S0 over the paths in the money
    ST = S0 * np.exp((r - 0.5 * sigma ** 2) * T + sigma * np.sqrt(T) * z)
    assert math.isclose(grads[0], np.exp(-r * T) * np.mean(np.where(ST > K, ST / S0, 0.0)), rel_tol=1e-12)


# == 4. Statistics and machine learning ===========================================================

def ridge_error(w_true, X, y, lam):
    A = X.T @ X + lam * np.eye(X.shape[1])
    w = np.linalg.solve(A, X.T @ y)
    return np.sum((w - w_true) ** 2)


def test_ridge_regression_through_solve_and_its_closed_form_in_lambda():
    rng = np.random.default_rng(11)
    w_true, X, y = rng.standard_normal(3), rng.standard_normal((10, 3)), rng.standard_normal(10)
    grads = check(ridge_error, w_true, X, y, 0.5)
    A = X.T @ X + 0.5 * np.eye(3)
    w = np.linalg.solve(A, X.T @ y)
    # dw/dlam = -A^{-1} w
    assert math.isclose(grads[3], -2 * (w - w_true) @ np.linalg.solve(A, w), rel_tol=1e-10)


def power_iteration(A, iters=60):
    v = np.ones(A.shape[0]) / np.sqrt(A.shape[0])
    for _ in range(iters):
        w = A @ v
        v = w / np.linalg.norm(w)
    return v @ A @ v


def test_power_iteration_eigenvalue_derivative_is_v_v_transpose():
    B = np.random.default_rng(12).standard_normal((4, 4))
    A = B @ B.T
    (g,) = check(power_iteration, A)
    vals, vecs = np.linalg.eigh(A)
    v = vecs[:, -1]
    np.testing.assert_allclose(g, np.outer(v, v), atol=1e-8)


def pca_deflation(X, k=2, iters=60):
    C = X.T @ X / X.shape[0]
    total = 0.0
    for _ in range(k):
        v = np.ones(C.shape[0])
        for _ in range(iters):
            v = C @ v
            v /= np.linalg.norm(v)
        lam = v @ C @ v
        total += lam
        C = C - lam * np.outer(v, v)
    return total


def test_pca_by_power_iteration_with_deflation():
    X = np.random.default_rng(13).standard_normal((10, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    (g,) = check(pca_deflation, X)
    # the sum of the top two eigenvalues of X^T X / n: its gradient is 2 X V V^T / n
    _, vecs = np.linalg.eigh(X.T @ X / 10)
    V = vecs[:, -2:]
    np.testing.assert_allclose(g, 2 * X @ V @ V.T / 10, atol=1e-7)


def soft_kmeans(X, C, beta=2.0):
    d = np.sum((X[:, None, :] - C[None, :, :]) ** 2, axis=-1)
    logits = -beta * d
    logits = logits - logits.max(axis=1, keepdims=True)
    r = np.exp(logits)
    r /= r.sum(axis=1, keepdims=True)
    return np.sum(r * d)


def test_soft_kmeans_responsibilities():
    rng = np.random.default_rng(14)
    X, C = rng.standard_normal((8, 2)), rng.standard_normal((3, 2))
    check(soft_kmeans, X, C)
    check_float32(soft_kmeans, X, C)


def svm_objective(w, b, X, y, C=1.0):
    margins = y * (X @ w + b)
    return 0.5 * w @ w + C * np.sum(np.maximum(0, 1 - margins))


def test_linear_svm_hinge_loss_against_its_subgradient():
    rng = np.random.default_rng(15)
    w, X, y = rng.standard_normal(3), rng.standard_normal((10, 3)), np.sign(rng.standard_normal(10))
    gw, gb = check(svm_objective, w, 0.1, X, y, wrt=(0, 1))
    active = (y * (X @ w + 0.1)) < 1
    np.testing.assert_allclose(gw, w - X[active].T @ y[active], rtol=1e-12)
    assert math.isclose(gb, -np.sum(y[active]), rel_tol=1e-12)


def batch_norm_loss(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=0, keepdims=True)
    xhat = (x - mu) / np.sqrt(var + eps)
    out = gamma * xhat + beta
    return np.sum(out ** 3)


def test_batch_norm_by_hand_float64_and_float32():
    rng = np.random.default_rng(16)
    args = (rng.standard_normal((6, 3)), rng.standard_normal(3), rng.standard_normal(3))
    gx, _, _ = check(batch_norm_loss, *args)
    # the normalised output does not change when x is shifted per column: gradient columns sum to 0
    np.testing.assert_allclose(gx.sum(axis=0), 0.0, atol=1e-9)
    check_float32(batch_norm_loss, *args)


def softmax_xent(W, X, y):
    logits = X @ W
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = X.shape[0]
    return -np.mean(np.log(p[np.arange(n), y]))


def test_softmax_cross_entropy_with_integer_labels_by_fancy_indexing():
    rng = np.random.default_rng(17)
    W, X, y = rng.standard_normal((3, 4)), rng.standard_normal((6, 3)), np.array([0, 1, 3, 2, 1, 0])
    (g,) = check(softmax_xent, W, X, y, wrt=(0,))
    P = np.exp(X @ W)
    P /= P.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(g, X.T @ (P - np.eye(4)[y]) / 6, rtol=1e-10, atol=1e-14)


def char_rnn_loss(Wxh, Whh, Why, xs, ys):
    h = np.zeros(Whh.shape[0])
    loss = 0.0
    for t in range(len(xs)):
        x = np.zeros(Wxh.shape[1])
        x[xs[t]] = 1.0
        h = np.tanh(Wxh @ x + Whh @ h)
        logits = Why @ h
        p = np.exp(logits - np.max(logits))
        p /= p.sum()
        loss += -np.log(p[ys[t]])
    return loss


def test_character_rnn_with_one_hot_inputs():
    rng = np.random.default_rng(18)
    Ws = (0.5 * rng.standard_normal((4, 5)), 0.5 * rng.standard_normal((4, 4)), 0.5 * rng.standard_normal((5, 4)))
    check(char_rnn_loss, *Ws, [0, 3, 1, 4], [3, 1, 4, 2], wrt=(0, 1, 2))


@dataclass
class RNNParams:
    Wxh: np.ndarray
    Whh: np.ndarray
    Why: np.ndarray
    vocab: int = field(default=5, metadata={"no_derivative": True})


def char_rnn_segmented(p, xs, ys, k):
    h = np.zeros(p.Whh.shape[0])
    loss = 0.0
    for x_t, y_t in adtrans.segmented(zip(xs, ys), k):
        x = np.zeros(p.vocab)
        x[x_t] = 1.0
        h = np.tanh(p.Wxh @ x + p.Whh @ h)
        logits = p.Why @ h
        p_t = np.exp(logits - np.max(logits))
        p_t /= p_t.sum()
        loss += -np.log(p_t[y_t])
    return loss


def char_rnn_plain(p, xs, ys, k):
    h = np.zeros(p.Whh.shape[0])
    loss = 0.0
    for x_t, y_t in zip(xs, ys):
        x = np.zeros(p.vocab)
        x[x_t] = 1.0
        h = np.tanh(p.Wxh @ x + p.Whh @ h)
        logits = p.Why @ h
        p_t = np.exp(logits - np.max(logits))
        p_t /= p_t.sum()
        loss += -np.log(p_t[y_t])
    return loss


@pytest.mark.parametrize("k", [1, 2, 3, 7, 10])
def test_character_rnn_on_a_dataclass_segmented_equals_plain(k):
    rng = np.random.default_rng(19)
    p = RNNParams(0.5 * rng.standard_normal((4, 5)), 0.5 * rng.standard_normal((4, 4)),
                  0.5 * rng.standard_normal((5, 4)))
    xs, ys = [0, 3, 1, 4, 2, 2, 0], [3, 1, 4, 2, 2, 0, 1]
    (plain,) = check(char_rnn_plain, p, xs, ys, k, wrt=(0,))
    value, seg = adtrans.value_with_gradient(char_rnn_segmented, p, xs, ys, k, wrt=0)
    assert value == char_rnn_plain(p, xs, ys, k)
    assert isinstance(seg, type(plain))
    for a, b in zip(leaves(seg), leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def gaussian_loglik(mu, L, X):
    S = L @ L.T + 0.1 * np.eye(len(mu))
    sign, logdet = np.linalg.slogdet(S)
    D = X - mu
    sol = np.linalg.solve(S, D.T)
    n, d = X.shape
    return -0.5 * (np.sum(D.T * sol) + n * logdet + n * d * np.log(2 * np.pi))


def test_multivariate_gaussian_log_likelihood_with_slogdet_and_solve():
    rng = np.random.default_rng(20)
    mu, L, X = rng.standard_normal(3), rng.standard_normal((3, 3)), rng.standard_normal((5, 3))
    g_mu, _, _ = check(gaussian_loglik, mu, L, X)
    S = L @ L.T + 0.1 * np.eye(3)
    np.testing.assert_allclose(g_mu, np.linalg.solve(S, np.sum(X - mu, axis=0)), rtol=1e-10)


def poisson_nll(w, X, y):
    eta = X @ w
    return -np.sum(y * eta - np.exp(eta))


def test_poisson_regression_negative_log_likelihood():
    rng = np.random.default_rng(21)
    w, X = 0.3 * rng.standard_normal(3), rng.standard_normal((8, 3))
    y = rng.poisson(1.0, 8).astype(float)
    (g,) = check(poisson_nll, w, X, y, wrt=(0,))
    np.testing.assert_allclose(g, X.T @ (np.exp(X @ w) - y), rtol=1e-12)


def huber(pred, target, delta=1.0):
    r = pred - target
    a = np.abs(r)
    return np.mean(np.where(a <= delta, 0.5 * r ** 2, delta * (a - 0.5 * delta)))


def test_huber_loss_is_a_clipped_residual():
    rng = np.random.default_rng(22)
    pred, target = 2.0 * rng.standard_normal(10), rng.standard_normal(10)
    (g,) = check(huber, pred, target, wrt=(0,))
    np.testing.assert_allclose(g, np.clip(pred - target, -1.0, 1.0) / 10, rtol=1e-12)
    check_float32(huber, pred, target)


def mixture_density_nll(logit_pi, mu, log_s, y):
    lp = logit_pi - np.max(logit_pi)
    lp = lp - np.log(np.sum(np.exp(lp)))
    comp = -0.5 * ((y[:, None] - mu) / np.exp(log_s)) ** 2 - log_s - 0.5 * np.log(2 * np.pi)
    a = lp + comp
    m = a.max(axis=1, keepdims=True)
    return -np.sum(m[:, 0] + np.log(np.sum(np.exp(a - m), axis=1)))


def test_mixture_density_negative_log_likelihood_with_logsumexp():
    rng = np.random.default_rng(23)
    check(mixture_density_nll, rng.standard_normal(3), rng.standard_normal(3), 0.3 * rng.standard_normal(3),
          rng.standard_normal(5))


def logsumexp(a, axis=None, keepdims=False):
    m = np.max(a, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))
    if not keepdims:
        out = np.squeeze(out, axis=axis)
    return out


def hmm_forward(log_pi, log_A, log_B, obs):
    alpha = log_pi + log_B[:, obs[0]]
    for t in range(1, len(obs)):
        alpha = logsumexp(alpha[:, None] + log_A, axis=0) + log_B[:, obs[t]]
    return logsumexp(alpha)


def test_hmm_forward_algorithm_in_log_space():
    log_pi = np.log(np.array([0.6, 0.4]))
    log_A = np.log(np.array([[0.7, 0.3], [0.2, 0.8]]))
    log_B = np.log(np.array([[0.5, 0.4, 0.1], [0.1, 0.3, 0.6]]))
    obs = [0, 1, 2, 2, 1]
    g_pi, g_A, g_B = check(hmm_forward, log_pi, log_A, log_B, obs)
    # d log p / d log pi_i is the posterior of the first state: a probability vector
    assert math.isclose(np.sum(g_pi), 1.0, rel_tol=1e-12)
    # each observation is explained by exactly one state: the expected counts sum to len(obs)
    assert math.isclose(np.sum(g_B), len(obs), rel_tol=1e-12)
    assert math.isclose(np.sum(g_A), len(obs) - 1, rel_tol=1e-12)


def kde_loglik(data, bandwidth, pts):
    d = (pts[:, None] - data[None, :]) / bandwidth
    logk = -0.5 * d ** 2 - np.log(bandwidth) - 0.5 * np.log(2 * np.pi)
    return np.sum(logsumexp(logk, axis=1) - np.log(len(data)))


def test_kernel_density_log_likelihood_in_the_bandwidth():
    rng = np.random.default_rng(24)
    check(kde_loglik, rng.standard_normal(8), 0.7, rng.standard_normal(5))


def ista_lasso(A, b, lam, steps=25):
    L = np.linalg.norm(A, 2) ** 2
    w = np.zeros(A.shape[1])
    for _ in range(steps):
        g = A.T @ (A @ w - b)
        z = w - g / L
        w = np.sign(z) * np.maximum(np.abs(z) - lam / L, 0.0)
    return np.sum((A @ w - b) ** 2)


def test_unrolled_ista_with_soft_thresholding():
    rng = np.random.default_rng(25)
    check(ista_lasso, rng.standard_normal((6, 4)), rng.standard_normal(6), 0.3, wrt=(1, 2))


def conjugate_gradient_loss(A_half, b, tol=1e-10):
    A = A_half @ A_half.T + np.eye(len(b))
    x = np.zeros_like(b)
    r = b - A @ x
    p = r.copy()
    rs = r @ r
    while np.sqrt(rs) > tol:
        Ap = A @ p
        alpha = rs / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = r @ r
        p = r + (rs_new / rs) * p
        rs = rs_new
    return np.sum(x ** 2)


def test_conjugate_gradient_unrolled_until_the_residual_is_small():
    rng = np.random.default_rng(26)
    A_half, b = 0.5 * rng.standard_normal((4, 4)), rng.standard_normal(4)
    _, gb = check(conjugate_gradient_loss, A_half, b)
    A = A_half @ A_half.T + np.eye(4)
    np.testing.assert_allclose(gb, 2 * np.linalg.solve(A, np.linalg.solve(A, b)), rtol=1e-7)


# == 5. Signals, images, geometry =================================================================

def conv1d_loops(x, w):
    k = len(w)
    n = len(x) - k + 1
    out = np.zeros(n)
    for i in range(n):
        out[i] = np.sum(x[i:i + k] * w)
    return np.sum(np.tanh(out))


def conv2d_loops(img, kern):
    H, W = img.shape
    kh, kw = kern.shape
    out = np.zeros((H - kh + 1, W - kw + 1))
    for i in range(H - kh + 1):
        for j in range(W - kw + 1):
            out[i, j] = (img[i:i + kh, j:j + kw] * kern).sum()
    return np.sum(out ** 2)


def max_pool_2x2(x):
    H, W = x.shape
    p = x.reshape(H // 2, 2, W // 2, 2).max(axis=(1, 3))
    return np.sum(p * np.arange(p.size).reshape(p.shape))


def test_convolutions_by_loops_over_slices_and_reshape_max_pooling():
    rng = np.random.default_rng(27)
    check(conv1d_loops, rng.standard_normal(10), rng.standard_normal(3))
    check(conv2d_loops, rng.standard_normal((5, 5)), rng.standard_normal((2, 3)))
    x = rng.standard_normal((4, 6))
    (g,) = check(max_pool_2x2, x)
    # each window's maximum gets its output's weight, the others nothing
    assert np.count_nonzero(g) == 5 and sorted(g[g != 0]) == [1.0, 2.0, 3.0, 4.0, 5.0]
    check_float32(conv2d_loops, rng.standard_normal((5, 5)), rng.standard_normal((2, 3)))


def bezier_length(P, n=50):
    t = np.linspace(0, 1, n)[:, None]
    pts = (1 - t) ** 3 * P[0] + 3 * (1 - t) ** 2 * t * P[1] + 3 * (1 - t) * t ** 2 * P[2] + t ** 3 * P[3]
    seg = np.diff(pts, axis=0)
    return np.sum(np.sqrt(np.sum(seg ** 2, axis=1)))


def test_bezier_curve_length():
    P = np.random.default_rng(28).standard_normal((4, 2))
    (g,) = check(bezier_length, P)
    # length is invariant under translation: the control-point gradients sum to zero
    np.testing.assert_allclose(g.sum(axis=0), 0.0, atol=1e-12)
    # and homogeneous of degree one under scaling
    assert math.isclose(np.sum(g * P), bezier_length(P), rel_tol=1e-12)


def arm_reach(angles, lengths, target):
    phi = np.cumsum(angles)
    x = np.sum(lengths * np.cos(phi))
    y = np.sum(lengths * np.sin(phi))
    return (x - target[0]) ** 2 + (y - target[1]) ** 2


def test_robot_arm_forward_kinematics_with_cumulative_angles():
    rng = np.random.default_rng(29)
    angles, lengths, target = rng.standard_normal(3), np.array([1.0, 0.8, 0.5]), np.array([1.0, 1.0])
    g_angles, _, _ = check(arm_reach, angles, lengths, target)
    check_float32(arm_reach, angles, lengths, target)
    # the Jacobian transpose of the end effector, by hand
    phi = np.cumsum(angles)
    ex, ey = np.sum(lengths * np.cos(phi)) - 1.0, np.sum(lengths * np.sin(phi)) - 1.0
    dx = -np.cumsum((lengths * np.sin(phi))[::-1])[::-1]
    dy = np.cumsum((lengths * np.cos(phi))[::-1])[::-1]
    np.testing.assert_allclose(g_angles, 2 * (ex * dx + ey * dy), rtol=1e-12)


def bilinear_sample(grid, pts):
    ix = np.floor(pts[:, 0]).astype(int)
    iy = np.floor(pts[:, 1]).astype(int)
    tx = pts[:, 0] - ix
    ty = pts[:, 1] - iy
    v00 = grid[ix, iy]
    v10 = grid[ix + 1, iy]
    v01 = grid[ix, iy + 1]
    v11 = grid[ix + 1, iy + 1]
    val = (1 - tx) * (1 - ty) * v00 + tx * (1 - ty) * v10 + (1 - tx) * ty * v01 + tx * ty * v11
    return np.sum(val ** 2)


def hermite_spline(ys, ms, xq):
    xs = np.arange(len(ys), dtype=float)
    i = np.clip(np.searchsorted(xs, xq) - 1, 0, len(ys) - 2)
    t = xq - xs[i]
    h00 = 2 * t ** 3 - 3 * t ** 2 + 1
    h10 = t ** 3 - 2 * t ** 2 + t
    h01 = -2 * t ** 3 + 3 * t ** 2
    h11 = t ** 3 - t ** 2
    return np.sum(h00 * ys[i] + h10 * ms[i] + h01 * ys[i + 1] + h11 * ms[i + 1])


def test_interpolation_with_integer_cells_computed_from_the_points():
    rng = np.random.default_rng(30)
    check(bilinear_sample, rng.standard_normal((5, 5)), rng.uniform(0, 3.9, (6, 2)))
    check(hermite_spline, rng.standard_normal(5), rng.standard_normal(5), rng.uniform(0.1, 3.9, 7))


def ray_sphere_depth(origin, direction, center, radius):
    d = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    oc = origin - center
    b = np.sum(oc * d, axis=1)
    c = np.sum(oc * oc, axis=1) - radius ** 2
    disc = b * b - c
    hit = disc > 0
    t = np.where(hit, -b - np.sqrt(np.where(hit, disc, 1.0)), 0.0)
    return np.sum(t)


def test_ray_sphere_intersection_with_the_double_where_trick():
    rng = np.random.default_rng(31)
    grads = check(ray_sphere_depth, rng.standard_normal((5, 3)), rng.standard_normal((5, 3)),
                  np.array([0.1, 0.2, 0.3]), 1.5)
    assert all(np.all(np.isfinite(g)) for g in leaves(grads))



# == 5b. Periodic and Neumann boundaries, buffer rotation, checkpointed time loops ===============

def diffusion_roll(u0, D, steps=10):
    u = u0.copy()
    for _ in range(steps):
        u = u + D * (np.roll(u, 1) - 2 * u + np.roll(u, -1))
    return np.sum(u ** 3)


def diffusion_padded(u0, D, mode, steps=10):
    u = u0.copy()
    for _ in range(steps):
        up = np.pad(u, 1, mode=mode)
        u = u + D * (up[2:] - 2 * up[1:-1] + up[:-2])
    return np.sum(u ** 3)


def test_periodic_diffusion_by_roll_and_by_wrap_padding_agree():
    u0 = np.random.default_rng(50).standard_normal(8)
    g_roll = check(diffusion_roll, u0, 0.2)
    g_wrap = check(diffusion_padded, u0, 0.2, "wrap", wrt=(0, 1))
    np.testing.assert_allclose(g_wrap[0], g_roll[0], rtol=1e-12)
    assert math.isclose(g_wrap[1], g_roll[1], rel_tol=1e-12)
    # periodic diffusion conserves the total: d sum(u) / d u0 is all ones and d sum(u) / d D zero
    g_u, g_D = adtrans.gradient(periodic_total, u0, 0.2)
    np.testing.assert_allclose(g_u, 1.0, rtol=1e-12)
    assert abs(g_D) < 1e-12


def periodic_total(u0, D, steps=10):
    u = u0.copy()
    for _ in range(steps):
        u = u + D * (np.roll(u, 1) - 2 * u + np.roll(u, -1))
    return np.sum(u)


@pytest.mark.parametrize("mode", ["edge", "reflect"])
def test_diffusion_with_padded_neumann_boundaries(mode):
    check(diffusion_padded, np.random.default_rng(51).standard_normal(8), 0.2, mode, wrt=(0, 1))


def wave_rotating_buffers(c, u0, steps=12):
    """Three preallocated buffers, written in place and rotated, as in C."""
    u_prev = u0.copy()
    u = u0.copy()
    u_next = np.zeros_like(u0)
    r2 = (c * 0.1) ** 2
    for _ in range(steps):
        u_next[1:-1] = 2 * u[1:-1] - u_prev[1:-1] + r2 * (u[2:] - 2 * u[1:-1] + u[:-2])
        u_next[0] = 0.0
        u_next[-1] = 0.0
        u_prev, u, u_next = u, u_next, u_prev
    return np.sum(u ** 2)


def wave_step(u, u_prev, r2):
    u_next = np.empty_like(u)
    u_next[1:-1] = 2 * u[1:-1] - u_prev[1:-1] + r2 * (u[2:] - 2 * u[1:-1] + u[:-2])
    u_next[0] = u_next[-1] = 0.0
    return u_next, u


wave_step_checkpointed = adtrans.checkpointed(wave_step)


def wave_by_steps(c, u0, steps=13):
    u_prev = u0.copy()
    u = u0.copy()
    r2 = (c * 0.1) ** 2
    for _ in range(steps):
        u, u_prev = wave_step(u, u_prev, r2)
    return np.sum(u ** 2)


def wave_by_checkpointed_steps(c, u0, steps=13):
    u_prev = u0.copy()
    u = u0.copy()
    r2 = (c * 0.1) ** 2
    for _ in range(steps):
        u, u_prev = wave_step_checkpointed(u, u_prev, r2)
    return np.sum(u ** 2)


def wave_segmented(c, u0, steps=13):
    u_prev = u0.copy()
    u = u0.copy()
    r2 = (c * 0.1) ** 2
    for _ in adtrans.segmented(range(steps), 4):
        u_next = np.empty_like(u)
        u_next[1:-1] = 2 * u[1:-1] - u_prev[1:-1] + r2 * (u[2:] - 2 * u[1:-1] + u[:-2])
        u_next[0] = u_next[-1] = 0.0
        u_prev, u = u, u_next
    return np.sum(u ** 2)


def wave_recomputed(c, u0, steps=13):
    u_prev = u0.copy()
    u = u0.copy()
    r2 = (c * 0.1) ** 2
    for _ in range(steps):
        with adtrans.recomputed():
            u_next = np.empty_like(u)
            u_next[1:-1] = 2 * u[1:-1] - u_prev[1:-1] + r2 * (u[2:] - 2 * u[1:-1] + u[:-2])
            u_next[0] = u_next[-1] = 0.0
            u_prev, u = u, u_next
    return np.sum(u ** 2)


def heat_in_place_segmented(u0, alpha, steps=11):
    u = u0.copy()
    for _ in adtrans.segmented(range(steps), 3):
        u[1:-1] += alpha * (u[2:] - 2 * u[1:-1] + u[:-2])
        u[0] = u[-1] = 0.0
    return np.sum(u * np.linspace(0, 1, len(u)))


def test_wave_equation_checkpointed_segmented_recomputed_equal_plain():
    u0 = np.sin(np.linspace(0, np.pi, 9))
    c_plain, u_plain = check(wave_by_steps, 1.3, u0)
    c_rot, u_rot = check(wave_rotating_buffers, 1.3, u0, wrt=(0, 1))
    assert math.isclose(c_rot, adtrans.gradient(wave_rotating_buffers, 1.3, u0, wrt=0), rel_tol=1e-12)
    for program in (wave_by_checkpointed_steps, wave_segmented, wave_recomputed):
        value, (gc, gu) = adtrans.value_with_gradient(program, 1.3, u0)
        assert value == wave_by_steps(1.3, u0)
        assert type(gc) is float
        assert math.isclose(gc, c_plain, rel_tol=1e-12)
        np.testing.assert_allclose(gu, u_plain, rtol=1e-12, atol=1e-14)
    u1 = u0 + 0.1
    g_plain = adtrans.gradient(heat_in_place, u1, 0.2, steps=11)
    value, g_seg = adtrans.value_with_gradient(heat_in_place_segmented, u1, 0.2)
    assert value == heat_in_place(u1, 0.2, steps=11)
    np.testing.assert_allclose(g_seg[0], g_plain[0], rtol=1e-12, atol=1e-14)
    assert math.isclose(g_seg[1], g_plain[1], rel_tol=1e-12)


# == 5c. More statistics and a dataclass model with methods =====================================

def reparameterised_gaussian(mu, L_raw, eps):
    """A Cholesky factor with a positive diagonal set through np.diag_indices, then z = mu + eps L^T."""
    L = np.tril(L_raw)
    L[np.diag_indices(len(mu))] = np.exp(np.diag(L_raw))
    z = mu + eps @ L.T
    return np.mean(np.sum(z ** 2, axis=1))


def test_reparameterised_gaussian_samples_with_a_cholesky_factor():
    rng = np.random.default_rng(52)
    g_mu, g_L = check(reparameterised_gaussian, rng.standard_normal(3), rng.standard_normal((3, 3)),
                      rng.standard_normal((5, 3)), wrt=(0, 1))
    assert np.all(g_L[np.triu_indices(3, 1)] == 0.0)


def pair_repulsion(X):
    i, j = np.triu_indices(X.shape[0], k=1)
    d = np.linalg.norm(X[i] - X[j], axis=1)
    return np.sum(1.0 / d)


def sorted_median(x):
    s = np.sort(x)
    n = len(s)
    return 0.5 * (s[n // 2 - 1] + s[n // 2]) if n % 2 == 0 else s[n // 2]


def test_pairs_by_triu_indices_and_a_median_by_sort():
    rng = np.random.default_rng(53)
    (g,) = check(pair_repulsion, rng.standard_normal((4, 3)))
    np.testing.assert_allclose(g.sum(axis=0), 0.0, atol=1e-12)
    x = rng.standard_normal(6)
    (gm,) = check(sorted_median, x)
    order = np.argsort(x)
    expected = np.zeros(6)
    expected[order[2]] = expected[order[3]] = 0.5
    np.testing.assert_array_equal(gm, expected)


@dataclass
class Oscillator:
    omega: float
    zeta: float
    amp: float
    n_steps: int = field(default=50, metadata={"no_derivative": True})

    @property
    def damping(self):
        return 2.0 * self.zeta * self.omega

    def accel(self, x, v):
        return -self.omega ** 2 * x - self.damping * v

    def simulate(self, dt):
        x, v = self.amp, 0.0
        xs = []
        for _ in range(self.n_steps):
            v = v + dt * self.accel(x, v)
            x = x + dt * v
            xs.append(x)
        return np.array(xs)


def oscillator_misfit(osc, data, dt=0.02):
    pred = osc.simulate(dt)
    return np.mean((pred - data) ** 2)


def test_damped_oscillator_fit_with_a_dataclass_and_move():
    rng = np.random.default_rng(54)
    data = Oscillator(3.0, 0.1, 1.0).simulate(0.02) + 0.01 * rng.standard_normal(50)
    osc = Oscillator(2.8, 0.15, 0.9)
    (g,) = check(oscillator_misfit, osc, data, wrt=(0,))
    assert all(type(getattr(g, name)) is float for name in ("omega", "zeta", "amp"))
    loss = oscillator_misfit(osc, data)
    for _ in range(3):
        osc = adtrans.move(osc, adtrans.gradient(oscillator_misfit, osc, data, wrt=0), scale=-0.05)
    assert oscillator_misfit(osc, data) < loss and osc.n_steps == 50


# == 5d. Bugs: np.r_ / np.c_ and np.full_like ====================================================

def heat_with_dirichlet_values(u0, left, right, alpha=0.2, steps=10):
    """Boundary values glued on with np.r_, as in many notebooks."""
    u = u0.copy()
    for _ in range(steps):
        ext = np.r_[left, u, right]
        u = u + alpha * (ext[2:] - 2 * ext[1:-1] + ext[:-2])
    return np.sum(u ** 2)


def test_heat_equation_with_boundary_values_glued_by_r_():
    right_or_refused(heat_with_dirichlet_values, np.random.default_rng(55).standard_normal(6), 1.0, -0.5)


def glue_r(a, b):
    return np.sum(np.r_[a, b] ** 2)


def glue_c(a, b):
    return np.sum(np.c_[a, b] ** 3)


@pytest.mark.parametrize("f", [glue_r, glue_c])
def test_minimal_r_and_c_index_tricks(f):
    rng = np.random.default_rng(56)
    right_or_refused(f, rng.standard_normal(3), rng.standard_normal(3))


def initial_temperature(T_ambient, u):
    T = np.full_like(u, T_ambient)
    return np.sum(T * u)


def test_minimal_full_like_with_a_differentiated_fill_value_and_template():
    u = np.array([0.5, 1.5, -1.0])
    g_T, g_u = check(initial_temperature, 20.0, u)
    assert g_T == np.sum(u)
    np.testing.assert_array_equal(g_u, np.full(3, 20.0))

# == 6. Bugs: changes in place seen through another name (a view or an alias) =====================
#
# NumPy's `+=`, `-=`, `/=` and `a[i] = v` change the array object, so every other name for it
# (a view `q = y[:n]`, a row `for row in P`, a reshape, a plain alias `z = y`, a list holding it)
# sees the change. Differentiated code makes a new value instead (SPEC "changes in place are
# values"), so the other name keeps the old one: the VALUE differs from Python's and the gradient
# is silently wrong. The right outcome is Python's value with its gradient, or a located
# DifferentiationError at the user's line; a different number is neither.

def right_or_refused(f, *args, wrt=None):
    """f's gradient is right (its value Python's), or differentiating f is refused at one of f's
    own lines in this file."""
    try:
        assert_gradient(f, *args, wrt=wrt)
    except adtrans.DifferentiationError as error:
        first = f.__code__.co_firstlineno
        last = first + len(__import__("inspect").getsource(f).splitlines())
        assert error.filename is not None and error.filename.endswith("test_hunt6_science.py"), error.filename
        assert first <= error.lineno < last, (error.lineno, first, last, str(error))


def symplectic_euler_on_views(y0, k, dt=0.1, steps=5):
    """Positions and momenta are views of one state vector, updated in place."""
    n = len(y0) // 2
    y = y0.copy()
    q = y[:n]
    p = y[n:]
    for _ in range(steps):
        p -= dt * k * q
        q += dt * p
    return np.sum(y ** 2)


def test_symplectic_euler_on_views_of_a_state_vector():
    right_or_refused(symplectic_euler_on_views, np.random.default_rng(40).standard_normal(6), 1.5)


def normalise_rows_in_place(A):
    P = np.exp(A)
    for row in P:
        row /= row.sum()
    return np.sum(P * A)


def test_row_normalisation_through_the_rows_of_a_loop():
    right_or_refused(normalise_rows_in_place, np.random.default_rng(41).standard_normal((3, 4)))


def heat_with_ghost_cells(u0, alpha, steps=3):
    u = np.zeros(len(u0) + 2)
    interior = u[1:-1]
    interior[:] = u0
    for _ in range(steps):
        u[0] = u[1]
        u[-1] = u[-2]
        lap = u[2:] - 2 * u[1:-1] + u[:-2]
        interior += alpha * lap
    return np.sum(interior ** 2)


def test_heat_equation_with_ghost_cells_and_an_interior_view():
    right_or_refused(heat_with_ghost_cells, np.random.default_rng(42).standard_normal(5), 0.2)


def center_first_column(X):
    Y = X.copy()
    c = Y[:, 0]
    c -= c.mean()
    return np.sum(Y ** 2)


def fill_through_reshape(x):
    z = np.zeros(6)
    m = z.reshape(2, 3)
    m[0] = x
    return np.sum(z * np.arange(6))


def fill_through_transpose(x):
    z = np.zeros((3, 2))
    zt = z.T
    zt[0] = x
    return np.sum(z ** 2)


def alias_then_add_in_place(x):
    y = x * 2
    z = y
    z += 1
    return np.sum(y * z)


def alias_then_set_item(x):
    y = x * 2
    z = y
    z[0] = 0.0
    return np.sum(y ** 2)


def trajectory_of_one_array(x0, v, dt=0.1):
    x = x0.copy()
    traj = []
    for _ in range(3):
        traj.append(x)
        x += dt * v
    return np.sum(np.stack(traj) ** 2)


def array_held_in_a_dict(x):
    params = {"w": x * 1.0}
    w = params["w"]
    w -= 0.1
    return np.sum(params["w"] ** 2)


@pytest.mark.parametrize("f", [center_first_column, fill_through_reshape, fill_through_transpose,
                               alias_then_add_in_place, alias_then_set_item, trajectory_of_one_array,
                               array_held_in_a_dict])
def test_minimal_change_in_place_through_another_name(f):
    x = np.random.default_rng(43).uniform(1, 2, (4, 3) if f is center_first_column else 3)
    args = (x, np.array([0.3, -0.2, 0.5])) if f is trajectory_of_one_array else (x,)
    right_or_refused(f, *args)


def alias_of_an_argument(x):
    y = x
    y *= 2.0
    return np.sum(x)


def test_minimal_alias_of_an_argument_changed_in_place():
    x0 = np.array([1.0, 2.0, 3.0])
    try:
        value, grad = adtrans.value_with_gradient(alias_of_an_argument, x0.copy())
    except adtrans.DifferentiationError as error:
        assert error.filename.endswith("test_hunt6_science.py")
        return
    # Python: y is x, so x is doubled before it is summed
    assert value == alias_of_an_argument(x0.copy()) == 12.0
    np.testing.assert_array_equal(grad, [2.0, 2.0, 2.0])


# == 7. Bugs: NumPy functions that change their first argument =====================================
#
# `np.add.at(a, i, v)` (scatter-add: finite-element assembly, graph message passing), `np.copyto`,
# `np.put`, `np.putmask`, `np.place`, `np.fill_diagonal`, and `out=` a part of a local array
# change an array the transform treats as unchanged: the value is Python's (the same object is
# changed) but the pullback never sees the change, so the gradient is silently wrong.
# `adtrans/mutation.py` lists these functions (_CHANGING_FIRST_ARGUMENT), but only for
# checkpoint copies; `ReverseTransform.check_mutations` only refuses methods.

def gnn_message_passing(H, W, src, dst):
    msg = np.tanh(H[src] @ W)
    agg = np.zeros((H.shape[0], W.shape[1]))
    np.add.at(agg, dst, msg)
    return np.sum(agg ** 2)


def test_graph_message_passing_with_scatter_add():
    rng = np.random.default_rng(44)
    right_or_refused(gnn_message_passing, rng.standard_normal((4, 3)), rng.standard_normal((3, 2)),
                     np.array([0, 1, 2, 3, 0]), np.array([1, 1, 3, 0, 1]), wrt=(0, 1))


def fem_compliance(k_el, n_nodes):
    """Assemble a 1-D stiffness matrix from element matrices with np.add.at, solve, compliance."""
    K = np.zeros((n_nodes, n_nodes))
    for e in range(n_nodes - 1):
        idx = np.array([e, e + 1])
        ke = k_el[e] * np.array([[1.0, -1.0], [-1.0, 1.0]])
        np.add.at(K, (idx[:, None], idx[None, :]), ke)
    K[0, 0] += 1.0
    f = np.ones(n_nodes)
    u = np.linalg.solve(K, f)
    return f @ u


def fem_compliance_by_slices(k_el, n_nodes):
    K = np.zeros((n_nodes, n_nodes))
    for e in range(n_nodes - 1):
        K[e:e + 2, e:e + 2] += k_el[e] * np.array([[1.0, -1.0], [-1.0, 1.0]])
    K[0, 0] += 1.0
    f = np.ones(n_nodes)
    u = np.linalg.solve(K, f)
    return f @ u


def test_finite_element_assembly_by_slices():
    check(fem_compliance_by_slices, np.random.default_rng(45).uniform(1, 2, 4), 5, wrt=(0,))


def test_finite_element_assembly_with_add_at():
    right_or_refused(fem_compliance, np.random.default_rng(45).uniform(1, 2, 4), 5, wrt=(0,))


def scatter_add(vals, idx):
    out = np.zeros(4)
    np.add.at(out, idx, vals)
    return np.sum(out ** 2)


def scatter_subtract(vals, idx):
    out = np.ones(4)
    np.subtract.at(out, idx, vals)
    return np.sum(out ** 2)


def copy_into(x, idx):
    out = np.zeros(3)
    np.copyto(out, x[:3])
    return np.sum(out ** 2)


def put_into(x, idx):
    out = np.zeros(5)
    np.put(out, idx[:2], x[:2])
    return np.sum(out ** 2)


def putmask_into(x, idx):
    z = x * 1.0
    np.putmask(z, z > 1.5, x[::-1])
    return np.sum(z ** 2)


def place_into(x, idx):
    z = x * 1.0
    np.place(z, z > 1.5, x[:2])
    return np.sum(z ** 2)


def zero_diagonal_of_a_gram_matrix(x, idx):
    S = np.outer(x, x)
    np.fill_diagonal(S, 0.0)
    return np.sum(np.exp(S))


def out_into_a_row(x, idx):
    z = np.zeros((2, 6))
    np.exp(x, out=z[0])
    return np.sum(z ** 2)


@pytest.mark.parametrize("f", [scatter_add, scatter_subtract, copy_into, put_into, putmask_into, place_into,
                               zero_diagonal_of_a_gram_matrix, out_into_a_row])
def test_minimal_numpy_function_changing_its_first_argument(f):
    x = np.random.default_rng(46).uniform(1, 2, 6)
    right_or_refused(f, x, np.array([0, 1, 1, 3, 0, 0]), wrt=(0,))


# == 8. Bugs: a wrapper made with functools.wraps is differentiated as the function it wraps =========
#
# `adtrans/source.py` `parse_function` calls `inspect.unwrap(fn)`, which follows `__wrapped__`:
# a decorator written with `functools.wraps` (a penalty, a change of units) is skipped, and so is
# `gradient_of(f)`, whose entry point is made with `functools.wraps(f)`. The value and the
# gradient are those of the undecorated function.

def with_l2_penalty(lam):
    def decorate(loss):
        @functools.wraps(loss)
        def penalised(w, X, y):
            return loss(w, X, y) + lam * np.sum(w ** 2)
        return penalised
    return decorate


@with_l2_penalty(0.5)
def penalised_squared_error(w, X, y):
    return np.sum((X @ w - y) ** 2)


def with_l2_penalty_no_wraps(lam):
    def decorate(loss):
        def penalised(w, X, y):
            return loss(w, X, y) + lam * np.sum(w ** 2)
        return penalised
    return decorate


@with_l2_penalty_no_wraps(0.5)
def penalised_squared_error_no_wraps(w, X, y):
    return np.sum((X @ w - y) ** 2)


def test_penalty_added_by_a_decorator_without_functools_wraps():
    rng = np.random.default_rng(60)
    w, X, y = rng.standard_normal(3), rng.standard_normal((5, 3)), rng.standard_normal(5)
    (g,) = check(penalised_squared_error_no_wraps, w, X, y, wrt=(0,))
    np.testing.assert_allclose(g, 2 * X.T @ (X @ w - y) + w, rtol=1e-12)


def test_penalty_added_by_a_decorator_with_functools_wraps():
    rng = np.random.default_rng(60)
    w, X, y = rng.standard_normal(3), rng.standard_normal((5, 3)), rng.standard_normal(5)
    value, g = adtrans.value_with_gradient(penalised_squared_error, w, X, y, wrt=0)
    assert value == penalised_squared_error(w, X, y)
    np.testing.assert_allclose(g, 2 * X.T @ (X @ w - y) + w, rtol=1e-12)


def cube(x):
    return x * x * x


def sine_times_x(x):
    return math.sin(x) * x


def test_minimal_gradient_of_gradient_of_gives_the_second_derivative_or_a_located_error():
    # Black-Scholes gamma is what a user wants this for. Second order is a later feature (SPEC
    # section 11), so a DifferentiationError is acceptable; the first derivative is not.
    try:
        second = adtrans.gradient(adtrans.gradient_of(cube), 3.0)
    except adtrans.DifferentiationError:
        return
    assert second == 18.0


def test_minimal_gradient_of_gradient_of_is_right_or_a_located_error():
    try:
        second = adtrans.gradient(adtrans.gradient_of(sine_times_x), 0.5)
    except adtrans.DifferentiationError:
        return
    assert math.isclose(second, 2 * math.cos(0.5) - 0.5 * math.sin(0.5), rel_tol=1e-12)
