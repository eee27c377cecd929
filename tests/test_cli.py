"""The ``adtrans`` command line: ``dump`` prints generated code, ``check`` reports errors like a compiler."""

import os
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from adtrans.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "custom_differentiation.py"

MODEL = textwrap.dedent(
    """\
    import math


    def scaled_sine(x, y):
        return math.sin(x) * y


    def truncated_sum(x, y):
        return float(int(x + y))


    class Ops:
        @staticmethod
        def double(x):
            return 2.0 * x


    if __name__ == "__main__":
        print("MAIN BLOCK RAN")
    """
)
BAD_LINE = 9  # the line of `float(int(x + y))` above


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return path


def run_cli(*args, cwd=None):
    """Run ``python -m adtrans`` in a fresh interpreter that imports this checkout's adtrans."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run(
        [sys.executable, "-m", "adtrans", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


# --- dump ------------------------------------------------------------------------------


def test_dump_prints_generated_code(model, capsys):
    assert main(["dump", f"{model}:scaled_sine"]) == 0
    out = capsys.readouterr().out
    assert "def " in out
    compile(out, "<dump>", "exec")  # the generated code is valid Python


def test_dump_in_a_subprocess(model):
    result = run_cli("dump", f"{model}:scaled_sine")
    assert result.returncode == 0, result.stderr
    assert "def " in result.stdout
    assert "MAIN BLOCK RAN" not in result.stdout  # the file is imported, not run as __main__


def test_dump_with_wrt(model, capsys):
    assert main(["dump", f"{model}:scaled_sine", "--wrt", "x"]) == 0
    assert "def " in capsys.readouterr().out


def test_dump_gradient_prints_the_fused_functions(model, capsys):
    assert main(["dump", f"{model}:scaled_sine", "--gradient", "--floats", "x,y"]) == 0
    out = capsys.readouterr().out
    compile(out, "<dump>", "exec")
    assert "def scaled_sine_value_with_gradient(x, y):" in out
    assert "def scaled_sine_gradient(x, y):" in out     # a float result: the gradient alone too
    assert "unbroadcast" not in out                     # float arguments need none
    assert main(["dump", f"{model}:scaled_sine", "--gradient"]) == 0
    assert "unbroadcast" in capsys.readouterr().out
    assert main(["dump", f"{model}:scaled_sine", "--floats", "z"]) == 1
    assert "'z' is not a parameter" in capsys.readouterr().err


def test_dump_dotted_name(model, capsys):
    assert main(["dump", f"{model}:Ops.double"]) == 0
    assert "def " in capsys.readouterr().out


def test_dump_of_the_main_example():
    result = run_cli("dump", f"{EXAMPLE}:foo")
    assert result.returncode == 0, result.stderr
    assert "def " in result.stdout
    assert "d_x" in result.stdout
    assert "Taking e(" not in result.stdout  # main() did not run


def test_dump_reports_a_differentiation_error(model, capsys):
    assert main(["dump", f"{model}:truncated_sum"]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"model\.py:{BAD_LINE}:\d+: error: ", err), err
    assert "Traceback" not in err


def test_dump_forward_mode_fails_cleanly(model):
    result = run_cli("dump", f"{model}:scaled_sine", "--mode", "forward")
    assert result.returncode == 1
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "target, message",
    [
        ("{model}:no_such_function", "no function 'no_such_function'"),
        ("{model}:Ops.nothing", "no function 'Ops.nothing'"),
        ("{model}", "expected FILE.py:FUNC"),
        ("{missing}:f", "no such file"),
    ],
)
def test_dump_usage_errors(model, tmp_path, target, message, capsys):
    target = target.format(model=model, missing=tmp_path / "missing.py")
    assert main(["dump", target]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_dump_bad_mode_is_a_usage_error(model):
    result = run_cli("dump", f"{model}:scaled_sine", "--mode", "sideways")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_a_module_that_fails_to_import_is_a_usage_error(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('cannot load weights')\n\ndef f(x):\n    return x\n")
    assert main(["dump", f"{broken}:f"]) == 2
    err = capsys.readouterr().err
    assert "RuntimeError: cannot load weights" in err
    assert "Traceback" not in err


def test_the_file_can_import_its_neighbours(tmp_path, capsys):
    (tmp_path / "helpers.py").write_text("def cube(x):\n    return x * x * x\n")
    (tmp_path / "user.py").write_text("from helpers import cube\n\ndef f(x):\n    return cube(x) + x\n")
    assert main(["dump", f"{tmp_path / 'user.py'}:f"]) == 0
    assert "def " in capsys.readouterr().out


# --- check -------------------------------------------------------------------------------


def test_check_reports_errors_with_locations(model):
    result = run_cli("check", model)
    assert result.returncode == 1
    assert re.search(rf"model\.py:{BAD_LINE}:\d+: error: ", result.stdout), result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "1 error" in result.stdout


def test_check_named_functions(model, capsys):
    assert main(["check", str(model), "scaled_sine", "Ops.double"]) == 0
    out = capsys.readouterr().out
    assert "2 functions checked, no errors" in out

    assert main(["check", str(model), "truncated_sum"]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"model\.py:{BAD_LINE}:\d+: error: ", out), out


def test_check_missing_function_is_a_usage_error(model, capsys):
    assert main(["check", str(model), "nope"]) == 2
    assert "no function 'nope'" in capsys.readouterr().err


def test_check_a_clean_file(tmp_path, capsys):
    clean = tmp_path / "clean.py"
    clean.write_text("import math\n\ndef f(x):\n    return math.exp(x) * x\n\ndef main():\n    print(f(1.0))\n")
    assert main(["check", str(clean)]) == 0
    assert "1 function checked, no errors" in capsys.readouterr().out


def test_check_reports_an_error_raised_by_a_decorator_at_import(tmp_path, capsys):
    decorated = tmp_path / "decorated.py"
    decorated.write_text(
        "import adtrans\n"
        "\n"
        "@adtrans.differentiable\n"
        "def truncated_sum(x, y):\n"
        "    return float(int(x + y))\n"
    )
    assert main(["check", str(decorated)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"decorated\.py:5:\d+: error: ", out), out

    assert main(["dump", f"{decorated}:truncated_sum"]) == 1
    assert re.search(r"decorated\.py:5:\d+: error: ", capsys.readouterr().err)


def test_check_the_main_example():
    result = run_cli("check", EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no errors" in result.stdout


@pytest.mark.parametrize("name", ["fully_connected.py", "xor_mlp.py", "cnn_checkpointing.py"])
def test_check_the_training_examples(name):
    # A training function builds an optimizer from the model: making one carries no derivative.
    result = run_cli("check", str(Path(EXAMPLE).parent / name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no errors" in result.stdout


# --- entry points ---------------------------------------------------------------------------


def test_help():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "dump" in result.stdout and "check" in result.stdout


def test_no_command_is_a_usage_error():
    assert run_cli().returncode == 2


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    scripts = re.search(r"^\[project\.scripts\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert scripts, "pyproject.toml has no [project.scripts] table"
    assert re.search(r'^adtrans\s*=\s*"adtrans\.cli:main"\s*$', scripts.group(1), re.M)


def test_installed_console_script_runs(model):
    try:
        from importlib.metadata import PackageNotFoundError, distribution
    except ImportError:  # pragma: no cover
        pytest.skip("importlib.metadata unavailable")
    try:
        dist = distribution("adtrans")
    except PackageNotFoundError:
        pytest.skip("adtrans is not installed")
    scripts = [ep for ep in dist.entry_points if ep.group == "console_scripts" and ep.name == "adtrans"]
    assert [ep.value for ep in scripts] == ["adtrans.cli:main"]

    script = Path(sysconfig.get_path("scripts")) / ("adtrans.exe" if os.name == "nt" else "adtrans")
    if not script.exists():
        pytest.skip(f"console script not found at {script}")
    result = subprocess.run([str(script), "dump", f"{model}:scaled_sine"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "def " in result.stdout


def test_ci_runs_the_readme_test_command():
    ci = ROOT / ".ci" / "run"
    if not ci.exists():
        pytest.skip("not a checkout of the repository")
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv .*$", readme, re.M)
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1, commands
    assert test_commands[0] in ci.read_text().splitlines()
