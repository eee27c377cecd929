"""Programs using syntax Python 3.8 and 3.9 cannot parse, imported by tests only on 3.10+."""


def uses_match(x, kind):
    match kind:
        case "square":
            return x * x
        case _:
            return x
