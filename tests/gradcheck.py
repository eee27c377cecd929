"""Testing built-in rules: evaluate a rule with ``vjp_from_rule`` and check it numerically.

``check_rule_vjp(fn, *args, **kwargs)`` finds the rule for `fn`, pulls a
random cotangent back through it and compares every differentiable float
argument's cotangent with central finite differences in float64 (a
dot-product test plus element-by-element differences for small arguments),
checks each cotangent has its argument's structure, shape and dtype, and runs
the same call again in float32 to check no cotangent is widened to float64.
"""

import dataclasses
import inspect
from typing import Any, Dict, Tuple

import gast
import numpy as np
import pytest

import adtrans.rules  # noqa: F401  (registers the rules)
from adtrans import registry
from adtrans.checking import (
    check_against_differences, inner, is_float_value, leaves, random_like, rebuild, structure_problem)


def check_rule_vjp(fn, *args, wrt=None, symmetric=(), rtol=1e-6, atol=1e-8, eps=1e-6, float32=True, **kwargs):
    """Check the rule of `fn` at ``fn(*args, **kwargs)``; return the cotangents it gave.

    `wrt` names the parameters to check (default: every differentiable
    parameter bound to a float value); `symmetric` names matrix parameters
    perturbed only symmetrically (for functions that read one triangle).
    """
    rule = registry.lookup_rule(fn)
    assert rule is not None, f"no rule registered for {fn!r}"
    if not callable(fn):     # a property such as np.ndarray.T: read it from its `self`
        fn = _property_getter(fn)
        rule = dataclasses.replace(rule, fn=fn)
    bound = rule.signature.bind(*args, **kwargs)
    if wrt is None:
        adjoints = rule.cases[selected_case(rule, args, kwargs)].adjoints
        # A template "None" (np.full_like's a, read for its shape) has no cotangent to check.
        wrt = [name for name, value in bound.arguments.items()
               if adjoints.get(name, "None") != "None" and is_float_value(value)]
    assert wrt, f"{rule.name}: no differentiable float argument to check"
    rng = np.random.default_rng(0)
    y, pullback = registry.vjp_from_rule(rule, args, kwargs, wanted=list(wrt))
    v = random_like(y, rng)
    cotangents = pullback(v)
    for name in wrt:
        x = bound.arguments[name]
        problem = structure_problem(cotangents[name], x)
        assert problem is None, f"{rule.name}: the cotangent of {name!r} is wrong: {problem}"

        def evaluate(value, name=name):
            trial = rule.signature.bind(*args, **kwargs)
            trial.arguments[name] = value
            return inner(v, fn(*trial.args, **trial.kwargs))

        check_against_differences(f"{rule.name} parameter {name!r}", evaluate, x, cotangents[name], rng,
                                  rtol, atol, eps, symmetric=name in symmetric)
    if float32:
        _check_float32(rule, fn, args, kwargs, wrt, v, cotangents)
    return cotangents


def _property_getter(descriptor):
    def read(self):
        return descriptor.__get__(self, type(self))
    return read


def _narrow(x):
    """`x` with float64 arrays and scalars made float32 (Python floats stay floats)."""
    if isinstance(x, list):
        return [_narrow(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_narrow(v) for v in x)
    if isinstance(x, np.ndarray) and x.dtype == np.float64:
        return x.astype(np.float32)
    if isinstance(x, np.float64):
        return np.float32(x)
    return x


def _cast_like(d, y):
    """The cotangent leaf `d` in the dtype of the result leaf `y`."""
    if y is None or isinstance(y, float):
        return d
    d = np.asarray(d, dtype=y.dtype)
    return d if isinstance(y, np.ndarray) else d[()]


def _check_float32(rule, fn, args, kwargs, wrt, v, cotangents):
    args32 = [_narrow(a) for a in args]
    kwargs32 = {k: _narrow(a) for k, a in kwargs.items()}
    y32, pullback = registry.vjp_from_rule(rule, args32, kwargs32, wanted=list(wrt))
    v32 = rebuild(y32, [_cast_like(d, y_leaf) for d, y_leaf in zip(leaves(v), leaves(y32))])
    bound = rule.signature.bind(*args32, **kwargs32)
    cotangents32 = pullback(v32)
    for name in wrt:
        x32 = bound.arguments[name]
        problem = structure_problem(cotangents32[name], x32)
        assert problem is None, f"{rule.name} in float32: the cotangent of {name!r} is wrong: {problem}"
        for c32, c64 in zip(leaves(cotangents32[name]), leaves(cotangents[name])):
            c64 = np.asarray(c64, dtype=np.float64)
            scale = float(np.max(np.abs(c64), initial=1.0))
            np.testing.assert_allclose(np.asarray(c32, np.float64), c64, rtol=2e-3, atol=2e-3 * scale,
                                       err_msg=f"{rule.name} in float32: cotangent of {name!r}")


# -- Tables of cases, and which rule cases they exercise -------------------------------

@dataclasses.dataclass
class Case:
    fn: Any
    args: Tuple
    kwargs: Dict
    options: Dict = dataclasses.field(default_factory=dict)


def case(fn, *args, check=None, **kwargs):
    """One call to check: ``case(np.sum, x, axis=1)``; `check` holds check_rule_vjp options."""
    rule = registry.lookup_rule(fn)
    name = rule.name if rule is not None else repr(fn)
    return pytest.param(Case(fn, args, kwargs, dict(check or {})), id=name)


def run_case(c):
    return check_rule_vjp(c.fn, *c.args, **c.options, **c.kwargs)


def selected_case(rule, args, kwargs):
    """The index of the rule case ``vjp_from_rule`` uses for this call."""
    bound = rule.signature.bind(*args, **kwargs)
    bound.apply_defaults()
    constants = {k: v for k, v in bound.arguments.items()
                 if isinstance(v, (int, float, bool, type(None), str))}
    chosen = rule.case_for(constants)
    return next(i for i, c in enumerate(rule.cases) if c is chosen)


def untested(module_name, params):
    """The rule cases of `module_name` that no entry of `params` (a list of `case`s) selects."""
    covered = set()
    for p in params:
        c = p.values[0]
        rule = registry.lookup_rule(c.fn)
        covered.add((id(rule), selected_case(rule, c.args, c.kwargs)))
    missing = []
    for rule in registry.all_rules():
        if rule.namespace.get("__name__") != module_name:
            continue
        for i, _ in enumerate(rule.cases):
            if (id(rule), i) not in covered:
                missing.append(f"{rule.name} case {i} (when={rule.cases[i].when})")
    return missing


# -- Templates are well-formed ------------------------------------------------------------

_BINDING_NODES = (gast.Lambda, gast.ListComp, gast.SetComp, gast.DictComp, gast.GeneratorExp, gast.NamedExpr)


def template_problems(rule):
    """What is wrong with the templates of `rule`: unknown names, shadowing, bindings."""
    problems = []
    params = {p.name for p in rule.params}
    for reserved in ("y", "d_y"):
        if reserved in params:
            problems.append(f"{rule.name}: a parameter is named {reserved!r}, which templates reserve")
    for case_ in rule.cases:
        for param in case_.adjoints:
            try:
                tree = rule.template(case_, param)
            except SyntaxError as e:
                problems.append(f"{rule.name}: template for {param!r} does not parse: {e}")
                continue
            for node in gast.walk(tree):
                if isinstance(node, _BINDING_NODES):
                    problems.append(f"{rule.name}: template for {param!r} binds names ({type(node).__name__})")
                if isinstance(node, gast.Call) and isinstance(node.func, gast.Name) and node.func.id in params:
                    problems.append(f"{rule.name}: template for {param!r} calls parameter {node.func.id!r}")
                if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Load):
                    if node.id not in params | {"y", "d_y"} and node.id not in rule.namespace:
                        problems.append(f"{rule.name}: template for {param!r} uses unknown name {node.id!r}")
                if isinstance(node, gast.Attribute):
                    problem = _attribute_problem(node, rule.namespace, params)
                    if problem:
                        problems.append(f"{rule.name}: template for {param!r}: {problem}")
    return problems


def _attribute_problem(node, namespace, params):
    chain = []
    while isinstance(node, gast.Attribute):
        chain.append(node.attr)
        node = node.value
    if not isinstance(node, gast.Name) or node.id in params | {"y", "d_y"} or node.id not in namespace:
        return None
    value = namespace[node.id]
    if not inspect.ismodule(value):
        return None
    for attr in reversed(chain):
        if not hasattr(value, attr):
            return f"{node.id}.{'.'.join(reversed(chain))} does not exist"
        value = getattr(value, attr)
    return None


def module_rules(module_name):
    return [r for r in registry.all_rules() if r.namespace.get("__name__") == module_name]


# -- Data of the tanh chains the memory tests differentiate -------------------------------

def tanh_chain_data(layers, rows, dtype):
    """(x, Ws, bs) of a chain of `layers` tanh layers of width 5 on `rows` rows, from seed 0."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 5)).astype(dtype)
    Ws = [(rng.standard_normal((5, 5)) * 0.5).astype(dtype) for _ in range(layers)]
    bs = [rng.standard_normal(5).astype(dtype) for _ in range(layers)]
    return x, Ws, bs


# -- The tables of docs/rules.md ------------------------------------------------------------

_DOC_SECTIONS = [("adtrans.rules.builtins", "Operators and built-in functions (`adtrans/rules/builtins.py`)"),
                 ("adtrans.rules.math", "`math` (`adtrans/rules/math.py`)"),
                 ("adtrans.rules.numpy", "NumPy (`adtrans/rules/numpy.py`)")]
_LATER_PYTHON_RULES = [
    ("sumprod", "| `math.sumprod` (Python 3.12+) | `p, q` | `p`: `sumprod_cotangent(d_y, p, q)`; "
                "`q`: `sumprod_cotangent(d_y, q, p)` |"),
    ("fma", "| `math.fma` (Python 3.13+) | `a, b, c` | `a`: `d_y * b`; `b`: `d_y * a`; `c`: `d_y` |"),
]


def rules_tables():
    """The rule tables at the end of docs/rules.md (``python tests/gradcheck.py`` prints them)."""
    import math

    out = []
    for module, title in _DOC_SECTIONS:
        out += [f"### {title}", "",
                "| function | parameters | cotangents (`d_y`: the result's cotangent, `y`: the result) |",
                "|---|---|---|"]
        for rule in module_rules(module):
            cases = []
            for c in rule.cases:
                body = "; ".join(f"`{p}`: `{t}`" for p, t in c.adjoints.items())
                when = ", ".join(f"{k}={v!r}" for k, v in c.when.items())
                cases.append(f"when {when}: {body}" if when else body)
            name = rule.name.replace("_operator.", "operator.")
            params = str(rule.signature)[1:-1]
            out.append(f"| `{name}` | `{params}` | {'<br>'.join(cases)} |")
        if module == "adtrans.rules.math":
            out += [row for attr, row in _LATER_PYTHON_RULES if not hasattr(math, attr)]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(rules_tables())
