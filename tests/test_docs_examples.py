"""The generated code shown in the docs is what the generator writes today."""

import pathlib
import sys

import pytest

import adtrans

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"

# Each example: the doc, the function's source, the line it starts on in the docs' example.py.
EXAMPLES = {
    "control_flow.md": ("positive_sines", 13, [
        "def positive_sines(xs, w):",
        "    total = 0.0",
        "    for x in xs:",
        "        if x < 0:",
        "            continue",
        "        total = total + np.sin(x * w)",
        "    return total",
    ]),
    "checkpointing.md": ("deep", 24, [
        "def layer(h, W):",
        "    return np.tanh(h @ W)",
        "",
        "checkpointed_layer = adtrans.checkpointed(layer)",
        "",
        "def deep(x, Ws):",
        "    h = x",
        "    for W in Ws:",
        "        h = checkpointed_layer(h, W)",
        "    return np.sum(h)",
    ]),
}


def shown(doc, name):
    text = (DOCS / doc).read_text()
    start = text.index(f"```python\ndef {name}_value_with_pullback") + len("```python\n")
    return text[start:text.index("```", start)]


@pytest.mark.parametrize("doc", sorted(EXAMPLES))
def test_generated_code_in_the_docs_is_current(doc, tmp_path, monkeypatch):
    name, first_line, source = EXAMPLES[doc]
    header = ["import numpy as np", "import adtrans"]
    lines = header + [""] * (first_line - 1 - len(header)) + source + [""]
    (tmp_path / "example.py").write_text("\n".join(lines))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("example", None)
    import example

    try:
        assert adtrans.generated_source(getattr(example, name)) == shown(doc, name)
    finally:
        sys.modules.pop("example", None)


def test_the_dump_gradient_example_in_cli_md_is_current(tmp_path, monkeypatch, capsys):
    from adtrans.cli import main

    text = (DOCS / "cli.md").read_text()
    command = "$ adtrans dump model.py:scaled_sine --gradient --floats x,y\n"
    start = text.index(command) + len(command)
    (tmp_path / "model.py").write_text("import math\n\n\ndef scaled_sine(x, y):\n    return math.sin(x) * y\n")
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("model", None)      # another test's model.py
    try:
        assert main(["dump", "model.py:scaled_sine", "--gradient", "--floats", "x,y"]) == 0
    finally:
        sys.modules.pop("model", None)
    assert capsys.readouterr().out == text[start:text.index("```", start)]
