"""Built-in derivative rules, one module per library they cover.

Importing this package registers every rule; the compiler does so before it
looks anything up.
"""

from adtrans.rules import builtins, math, numpy  # noqa: F401  (registration)
