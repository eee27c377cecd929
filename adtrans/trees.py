"""Copying gast trees, quickly.

The transform copies subtrees often (every use of a rule's template, every
argument repeated in a helper call). ``copy.deepcopy`` is generic and spent
about a third of a small function's transform time; a tree is only nodes,
lists and leaves (names, constants, the objects a phase attached), so a
direct recursive copy does.
"""

import gast

_AST = gast.AST


def clone(node):
    """A copy of `node` (a gast node, or a list of them) sharing no node or list with it.

    Leaves (strings, numbers, None, objects a phase attached to a node such
    as a callee) are shared, not copied.
    """
    if isinstance(node, _AST):
        new = node.__class__.__new__(node.__class__)
        fields = new.__dict__
        for key, value in node.__dict__.items():
            fields[key] = clone(value) if isinstance(value, (_AST, list)) else value
        return new
    if isinstance(node, list):
        return [clone(item) if isinstance(item, (_AST, list)) else item for item in node]
    return node
