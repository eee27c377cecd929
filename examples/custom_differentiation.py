"""Custom differentiation: the Swift for TensorFlow tutorial, in Python with adtrans.

The original tutorial ("Custom differentiation", tensorflow/swift) shows five
ways to take control of derivatives. Each has its own section below:

1. a custom derivative for an existing function (``@adtrans.derivative``),
2. stopping derivatives (``adtrans.without_derivative``),
3. derivative surgery: watching and rewriting a cotangent mid-pullback
   (``adtrans.with_derivative``),
4. value and pullback together (``adtrans.value_with_pullback``),
5. recomputing activations in the pullback instead of keeping them,
   written by the user in five lines (``adtrans.differentiable_function``).

Run it with ``python examples/custom_differentiation.py``. Every function
here is top level, so ``adtrans dump examples/custom_differentiation.py:foo``
prints the code adtrans generates for it.
"""

import math

import adtrans

# --- 1. Custom derivatives --------------------------------------------------


def silly_exp(x):
    """e to the power of x, announcing itself every time it runs."""
    e = math.e
    print(f"Taking e({e}) to the power of {x}!")
    return math.pow(e, x)


@adtrans.derivative(of=silly_exp)
def silly_derivative(x):
    """The derivative of e**x is e**x: reuse the value in the pullback."""
    y = silly_exp(x)
    return y, lambda v: v * y


# --- 2. Stopping derivatives --------------------------------------------------


def sines_plus_stopped_cosines(x, y):
    """sin(sin(sin(x))) plus a term of y that is treated as a constant."""
    return math.sin(math.sin(math.sin(x))) + adtrans.without_derivative(math.cos(math.cos(math.cos(y))))


# --- 3. Derivative surgery ----------------------------------------------------


def print_sin_cotangent(d):
    """Watch the cotangent flowing into sin(x); returning None leaves it unchanged."""
    print(f"d+/dsin = {d}")


def rewrite_to_half(d):
    """Replace the cotangent flowing into x through log by 0.5."""
    print(f"dlog/dx = {d}, but rewritten to 0.5")
    return 0.5


def derivative_surgery(x):
    """sin(x) + log(x), with a hook on each path back to x."""
    a = adtrans.with_derivative(math.sin(x), print_sin_cotangent)
    b = math.log(adtrans.with_derivative(x, rewrite_to_half))
    return a + b


# --- 4. Value and pullback ------------------------------------------------------


def foo(x):
    return (x + x) * (x + x)


# --- 5. Recomputing activations during backpropagation ------------------------


def make_recomputed_in_gradient(original):
    """`original` as a differentiable function whose pullback recomputes its forward pass."""
    return adtrans.differentiable_function(
        lambda x: (original(x), lambda v: adtrans.pullback(original, x)(v))
    )


def square_impl(x):
    print("  Computing square...")
    return x * x


square = make_recomputed_in_gradient(square_impl)


def cos_squared(x):
    """The function main() differentiates as a lambda, named so `adtrans dump` can show it."""
    return square(math.cos(x))


# --- Running the tutorial -------------------------------------------------------


def main():
    print("== Custom derivatives ==")
    print("exp(3) =", silly_exp(3.0))
    print("gradient of exp at 3 =", adtrans.gradient(silly_exp, 3.0))

    print()
    print("== Stopping derivatives ==")
    print("gradient at (2, 3) =", adtrans.gradient(sines_plus_stopped_cosines, 2.0, 3.0))

    print()
    print("== Derivative surgery ==")
    print("gradient at 30 =", adtrans.gradient(derivative_surgery, 30.0))

    print()
    print("== Value and pullback ==")
    value, pullback = adtrans.value_with_pullback(foo, 3.0)
    print("foo(3) =", value)
    print("pullback(1) =", pullback(1.0))

    print()
    print("== Recomputing activations during backpropagation ==")
    print("Running original computation...")
    output, backprop = adtrans.value_with_pullback(lambda x: square(math.cos(x)), 10.0)
    print("Output =", output)
    print("Running backpropagation...")
    grad = backprop(1.0)
    print("Gradient =", grad)


if __name__ == "__main__":
    main()
