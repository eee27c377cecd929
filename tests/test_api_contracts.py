"""The API's contracts at their edges: `wrt` positions, registrations made late, user pullbacks
that break their contract, decorators made with `functools.wraps`, and entry points that are
themselves differentiated. Gradients are checked against central differences
(`adtrans.check_gradient`) or analytic ones."""

import functools
import math
import warnings

import numpy as np
import pytest

import adtrans
from adtrans import api, registry


@pytest.fixture
def registry_restored():
    """Registrations a test makes are undone after it, with every cache of generated code."""
    saved = dict(registry._user_vjps)
    yield
    registry._user_vjps.clear()
    registry._user_vjps.update(saved)
    api._forget_derivatives()


# -- wrt positions count as JAX's argnums --------------------------------------------------------

def loss_with_regulariser(p, x, y, reg=0.1, *, power=2):
    return p * x * y ** power + reg * p


def test_negative_position_counts_back_from_the_last_argument_passed():
    # jax.grad(f, argnums=-1)(p, x, y) is d/dy: the default 'reg' and keyword-only 'power' have no say
    assert adtrans.gradient(loss_with_regulariser, 1.5, 2.0, 3.0, wrt=-1) == pytest.approx(2 * 1.5 * 2.0 * 3.0)
    assert adtrans.gradient(loss_with_regulariser, 1.5, 2.0, 3.0, 0.5, wrt=-1) == pytest.approx(1.5)
    assert adtrans.gradient(loss_with_regulariser, 1.5, 2.0, 3.0, wrt=(0, -2)) == pytest.approx((18.1, 13.5))
    # a position may name a parameter passed by keyword or left at its default, as before
    assert adtrans.gradient(loss_with_regulariser, 1.5, 2.0, y=3.0, wrt=2) == pytest.approx(18.0)
    assert adtrans.gradient(loss_with_regulariser, 1.5, 2.0, 3.0, wrt=3) == pytest.approx(1.5)


def test_positions_past_the_positional_arguments_are_out_of_range():
    with pytest.raises(adtrans.DifferentiationError, match="position -4 is out of range.*was passed 3"):
        adtrans.gradient(loss_with_regulariser, 1.5, 2.0, 3.0, wrt=-4)
    with pytest.raises(adtrans.DifferentiationError, match="position 4 is out of range"):
        adtrans.gradient(loss_with_regulariser, 1.5, 2.0, 3.0, wrt=4)     # 'power' is keyword-only


def test_negative_positions_of_rules_and_registered_derivatives():
    assert adtrans.gradient(math.atan2, 3.0, 4.0, wrt=-1) == pytest.approx(-3.0 / 25.0)
    assert adtrans.gradient(math.hypot, 3.0, 4.0, wrt=(0, -1)) == pytest.approx((0.6, 0.8))
    mul = adtrans.differentiable_function(lambda a, b=2.0, *, c=1.0: (a * b * c, lambda d: (d * b * c, d * a * c, d * a * b)))
    assert adtrans.gradient(mul, 2.0, 3.0, wrt=-1) == 2.0


def test_numpy_integers_are_positions_everywhere():
    positions = np.arange(3)
    assert adtrans.gradient(loss_with_regulariser, 1.5, 2.0, 3.0, wrt=positions[2]) == pytest.approx(18.0)
    assert adtrans.gradient(loss_with_regulariser, 1.5, 2.0, 3.0, wrt=tuple(positions[:2])) == pytest.approx((18.1, 13.5))
    assert adtrans.gradient_of(loss_with_regulariser, wrt=np.int32(1))(1.5, 2.0, 3.0) == pytest.approx(13.5)
    assert adtrans.gradient(math.atan2, 3.0, 4.0, wrt=np.int64(0)) == pytest.approx(4.0 / 25.0)


# -- a registration empties every cache ----------------------------------------------------------

def cubed(x):
    return x ** 3


def uses_cubed(x):
    return cubed(x) * 2.0


def uses_cubed_on_arrays(a, b):
    return np.sum(cubed(a) * b)


def test_value_with_gradient_of_and_array_entries_see_a_later_registration(registry_restored):
    value_and_gradient = adtrans.value_with_gradient_of(uses_cubed)
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    assert value_and_gradient(2.0) == (16.0, 24.0)
    for _ in range(2):      # the second call goes through the array entry
        np.testing.assert_allclose(adtrans.value_with_gradient(uses_cubed_on_arrays, a, b)[1][0], 3 * a ** 2 * b)

    @adtrans.derivative(of=cubed)
    def cubed_vjp(x):
        return x ** 3, lambda d: d      # deliberately not the derivative: it must be the one used

    assert value_and_gradient(2.0) == (16.0, 2.0)
    np.testing.assert_array_equal(adtrans.value_with_gradient(uses_cubed_on_arrays, a, b)[1][0], b)


# -- a registered derivative's contract ----------------------------------------------------------

def scaled_cube(a, s):
    return s * a ** 3


def scaled_cube_vjp(a, s):
    return scaled_cube(a, s), lambda d: d * 3.0 * s * a ** 2


def active_scale(x):
    return np.sum(scaled_cube(x, np.sum(x)))


def constant_scale(x, s):
    return np.sum(scaled_cube(x, adtrans.without_derivative(s)))


def test_an_argument_carrying_a_derivative_outside_the_registered_wrt_is_a_located_error(registry_restored):
    adtrans.derivative(of=scaled_cube, wrt="a")(scaled_cube_vjp)
    with pytest.raises(adtrans.DifferentiationError, match="gives no tangent for 's'") as error:
        adtrans.gradient(active_scale, np.array([1.0, 2.0]))
    assert error.value.filename.endswith("test_api_contracts.py")
    assert error.value.lineno == active_scale.__code__.co_firstlineno + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # said with without_derivative: no ZeroDerivativeWarning
        d_x, d_s = adtrans.gradient(constant_scale, np.array([1.0, 2.0]), 2.0)
    np.testing.assert_allclose(d_x, [6.0, 24.0])
    assert d_s == 0.0


def two_parameters(a, b):
    return a * a + b


def one_tangent_vjp(a, b):
    return two_parameters(a, b), lambda d: d * 2.0 * a      # a mistake: b's tangent is missing


def first_only(x):
    return np.sum(two_parameters(x, 1.0))


def test_a_pullback_returning_one_array_for_two_parameters_is_not_indexed(registry_restored):
    adtrans.derivative(of=two_parameters)(one_tangent_vjp)
    # one argument active: the pullback's result is still indexed, and must be a pair
    with pytest.raises(adtrans.DifferentiationError, match="'one_tangent_vjp' must return 2 tangents"):
        adtrans.gradient(first_only, np.array([1.0, 2.0]))
    assert "checked_tangents(" in adtrans.generated_source(first_only)


def test_a_derivative_taking_fewer_parameters_than_a_ufunc_gives_tangents_for_those(registry_restored):
    @adtrans.derivative(of=np.hypot)
    def hypot_vjp(a, b):
        h = np.hypot(a, b)
        return h, lambda d: (d * a / h, d * b / h)

    def distance(x, y):
        return np.sum(np.hypot(x, y) ** 2)

    x, y = np.array([1.0, 2.0]), np.array([3.0, 0.5])
    d_x, d_y = adtrans.gradient(distance, x, y)
    np.testing.assert_allclose(d_x, 2 * x)
    np.testing.assert_allclose(d_y, 2 * y)
    d_x, d_y = adtrans.value_with_pullback(np.hypot, x, y)[1](np.ones(2))
    np.testing.assert_allclose(d_x, x / np.hypot(x, y))


# -- a decorator made with functools.wraps is differentiated as it runs --------------------------

def doubled(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return 2.0 * f(*args, **kwargs)
    return wrapper


@doubled
def squared_error(w, x):
    return np.sum((w * x - 1.0) ** 2)


def with_y_fixed(f):
    @functools.wraps(f)
    def wrapper(x):         # not f's parameters: its own are what calls bind to
        return f(x, 3.0) + x
    return wrapper


@with_y_fixed
def product(x, y):
    return x * y


def doubled_product(x):
    return product(x) * 2.0


def test_a_wrapper_with_parameters_of_its_own_is_called_with_them():
    assert adtrans.gradient(doubled_product, 2.0) == 8.0
    assert adtrans.gradient(product, 2.0) == 4.0
    adtrans.check_gradient(doubled_product, 2.0)


def test_a_wrapper_taking_args_and_kwargs_is_differentiated_with_what_it_adds():
    w, x = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    np.testing.assert_allclose(adtrans.gradient(squared_error, w, x, wrt=0), 4.0 * (w * x - 1.0) * x)
    adtrans.check_gradient(squared_error, w, x)
    adtrans.check_gradient(lambda w: squared_error(w, x=x) * 3.0, w)


# -- an entry point differentiated: a located error, never the first derivative ------------------

def cube(x):
    return x * x * x


def with_default(x, k=2.0):
    return k * x * x


value_and_gradient_of_cube = adtrans.value_with_gradient_of(cube)
gradient_of_with_default = adtrans.gradient_of(with_default)


def slope_twice(x):
    return value_and_gradient_of_cube(x)[1] * 2.0


def test_an_entry_point_called_in_differentiated_code_is_located_at_the_call():
    with pytest.raises(adtrans.DifferentiationError, match="'value_with_gradient_of[(]cube[)]'.*not supported") as error:
        adtrans.gradient(slope_twice, 3.0)
    assert error.value.lineno == slope_twice.__code__.co_firstlineno + 1
    with pytest.raises(adtrans.DifferentiationError, match="not supported") as error:
        adtrans.gradient(lambda x: value_and_gradient_of_cube(x)[1], 3.0)
    assert error.value.filename.endswith("test_api_contracts.py")


def test_an_entry_point_differentiated_directly_is_located_at_the_users_function():
    for entry in (gradient_of_with_default, adtrans.gradient_of(adtrans.gradient_of(cube)),
                  adtrans.value_with_gradient_of(lambda x: x * x)):
        with pytest.raises(adtrans.DifferentiationError, match="derivatives of derivatives") as error:
            adtrans.gradient(entry, 3.0)
        assert error.value.filename.endswith("test_api_contracts.py")
    with pytest.raises(adtrans.DifferentiationError, match="derivatives of derivatives"):
        adtrans.gradient(lambda x: gradient_of_with_default(x) + x, 3.0)
    assert gradient_of_with_default(3.0) == 12.0        # the entry point itself still works


def pair_product(a, b):
    return a * b


checkpointed_pair_product = adtrans.checkpointed(pair_product)


def checkpointed_loss(x, y):
    return np.sum(checkpointed_pair_product(x, y) ** 2)


def test_a_checkpointed_function_with_a_registered_derivative_checks_its_pullback(registry_restored):
    @adtrans.derivative(of=pair_product)
    def pair_product_vjp(a, b):
        return a * b, lambda d: (d * b, d * a)

    x, y = np.array([1.0, 2.0]), np.array([0.5, -1.5])
    adtrans.check_gradient(checkpointed_loss, x, y)
    assert "checked_tangents(" in adtrans.generated_source(checkpointed_loss)

    @adtrans.derivative(of=pair_product)
    def forgetful_vjp(a, b):
        return a * b, lambda d: d * b

    with pytest.raises(adtrans.DifferentiationError, match="forgetful_vjp' must return 2 tangents"):
        adtrans.gradient(checkpointed_loss, x, y)
