"""Shared machinery for the workloads: timing, checking, peers, machine line.

Every workload times its systems *interleaved* (one call of each system per
round, in a fresh shuffled order every round) and reports medians, because
the machines this runs on are small and noisy: a burst of noise then hits
every system alike instead of one system's whole series. The order is
shuffled rather than rotated because a rotation keeps each system's
predecessor fixed, and what ran just before (memory it freed, BLAS threads
it woke) measurably changes a call's time.
"""

import ctypes
import dataclasses
import importlib
import os
import platform
import random
import statistics
import sys
import time
import timeit
from typing import Callable, Dict, List, Optional

import numpy as np


# ---------------------------------------------------------------- results

@dataclasses.dataclass
class Row:
    """One (system, measurement) line of a workload's table.

    ``status`` is ``"ok"`` when ``samples`` hold numbers, otherwise why there
    is no number: ``"not installed"``, ``"unavailable: ..."`` or
    ``"failed: ..."``. ``unit`` says what the samples are: ``"s"`` (seconds
    per call) or ``"MiB"`` (memory).
    """

    system: str
    measure: str
    samples: List[float] = dataclasses.field(default_factory=list)
    status: str = "ok"
    ratio: Optional[float] = None     # median / the reference's median
    paired: Optional[float] = None    # median over rounds of (this / reference)
    note: str = ""
    unit: str = "s"

    @property
    def median(self) -> Optional[float]:
        return statistics.median(self.samples) if self.samples else None

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["median_s"] = self.median
        out["min_s"] = min(self.samples) if self.samples else None
        return out


@dataclasses.dataclass
class Result:
    """What a workload's ``run`` returns."""

    workload: str
    title: str
    params: dict
    rows: List[Row]
    notes: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return {"workload": self.workload, "title": self.title,
                "params": self.params, "notes": self.notes,
                "rows": [row.as_dict() for row in self.rows]}


def fill_ratios(rows: List[Row], reference: str) -> None:
    """Set each row's ratios to the reference system's row of the same measure.

    ``ratio`` divides the medians; ``paired`` is the median of the per-round
    ratios (sample i of a system against sample i of the reference, taken
    moments apart), which a slow drift of the machine's load disturbs less.
    """
    base_rows = {row.measure: row for row in rows
                 if row.system == reference and row.samples}
    for row in rows:
        base = base_rows.get(row.measure)
        if row.samples and base is not None and base.median:
            row.ratio = row.median / base.median
            pairs = [a / b for a, b in zip(row.samples, base.samples) if b]
            row.paired = statistics.median(pairs) if pairs else None


# ---------------------------------------------------------------- timing

def _round_orders(names: List[str], rounds: int, seed: int = 0):
    """One shuffled order of ``names`` per round, the same every run."""
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        yield order


def time_interleaved(calls: Dict[str, Callable[[], object]], rounds: int,
                     warmup: int = 1, gap: float = 0.0) -> Dict[str, List[float]]:
    """Seconds per call of each callable, one call of each per round.

    Each round runs the callables in a new shuffled order (seeded), so that
    no system always runs right after the same other one; ``gap`` seconds of
    sleep precede each timed call.
    """
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    samples = {name: [] for name in names}
    for order in _round_orders(names, rounds):
        for name in order:
            if gap:
                time.sleep(gap)
            start = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def calibrate(call: Callable[[], object], target: float = 0.05) -> int:
    """How many loops of ``call`` take about ``target`` seconds."""
    number, elapsed = timeit.Timer(call).autorange()
    return max(1, int(number * target / max(elapsed, 1e-9)))


def time_per_call_interleaved(calls: Dict[str, Callable[[], object]],
                              repeat: int, target: float = 0.05
                              ) -> Dict[str, List[float]]:
    """Seconds per call of fast callables: ``repeat`` timeit samples each.

    Each sample is a timeit loop lasting about ``target`` seconds; the loops
    of the different callables are interleaved and shuffled like
    :func:`time_interleaved`.
    """
    names = list(calls)
    timers = {name: timeit.Timer(calls[name]) for name in names}
    numbers = {name: calibrate(calls[name], target) for name in names}
    samples = {name: [] for name in names}
    for order in _round_orders(names, repeat):
        for name in order:
            samples[name].append(timers[name].timeit(numbers[name]) / numbers[name])
    return samples


def fresh_process_env() -> dict:
    """The environment for a fresh-process measurement: bytecode cached, as after ``pip install``.

    Some machines (this project's CI among them) set ``PYTHONDONTWRITEBYTECODE``,
    so every import would compile adtrans and NumPy from source and a first-call
    time would measure Python's compiler. The subprocesses get their own
    bytecode cache in the temporary directory instead (``PYTHONPYCACHEPREFIX``;
    the source tree is not written to); run one warm-up process first.
    """
    import tempfile

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "adtrans-benchmark-pycache")
    return env


def run_fresh(code: str, runs: int, timeout: float = 120) -> List[dict]:
    """Run `code` in ``runs`` fresh interpreters (after one warm-up) and parse each one's last
    stdout line as JSON."""
    import json
    import subprocess

    env = fresh_process_env()
    records = []
    for i in range(runs + 1):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=timeout, env=env)
        if i:   # the first run fills the bytecode cache
            records.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return records


# ---------------------------------------------------------------- checking

class Disagreement(AssertionError):
    """A system's value or gradient differs from the reference's."""


def assert_close(label: str, got, want, rtol: float, atol_scale: float,
                 check_dtype: bool = True) -> None:
    """Compare ``got`` with the reference ``want``, array by array.

    The absolute tolerance is ``atol_scale`` times the largest magnitude of
    ``want``, so a gradient whose entries are all tiny is still compared
    meaningfully. With ``check_dtype`` the dtype must match as well: a float32
    program whose gradient comes back as float64 is a defect (SPEC section 2).
    """
    got_a = np.asarray(got)
    want_a = np.asarray(want)
    if got_a.shape != want_a.shape:
        raise Disagreement(f"{label}: shape {got_a.shape}, expected {want_a.shape}")
    if check_dtype and got_a.dtype != want_a.dtype:
        raise Disagreement(f"{label}: dtype {got_a.dtype}, expected {want_a.dtype}")
    g = got_a.astype(np.float64)
    w = want_a.astype(np.float64)
    atol = atol_scale * (float(np.max(np.abs(w))) if w.size else 0.0)
    if not np.allclose(g, w, rtol=rtol, atol=atol):
        err = np.abs(g - w)
        worst = np.unravel_index(np.argmax(err - rtol * np.abs(w)), err.shape) if err.ndim else ()
        raise Disagreement(
            f"{label}: largest difference {float(err.max()):.3g} at {worst} "
            f"(got {float(g[worst]):.6g}, expected {float(w[worst]):.6g}; "
            f"rtol={rtol}, atol={atol:.3g})")


# ---------------------------------------------------------------- peers

def try_import(name: str):
    """The module, or ``None`` if it is not installed (or fails to import)."""
    try:
        return importlib.import_module(name)
    except Exception:       # a broken peer install counts as not installed
        return None


# Set by ``run.py --no-peers``: measure adtrans against the reference alone,
# without importing the peers (whose thread pools can disturb NumPy's).
SKIP_PEERS = False

# Set by ``run.py --gap``: seconds of idle time before each timed call of the
# array workloads, so that thread pools left spinning by the previous system
# (OpenBLAS busy-waits for about 0.1 s after each call) have gone to sleep
# and don't steal the cores from the next system's own pool. ``None`` lets
# the workload choose: a gap only when a peer with its own pool (JAX,
# PyTorch) is measured beside NumPy.
GAP = None
AUTO_GAP = 0.2


def import_peer(name: str):
    """A peer's module (autograd, jax, torch, or a submodule), or ``None``."""
    return None if SKIP_PEERS else try_import(name)


def missing_peer_status() -> str:
    return "skipped (--no-peers)" if SKIP_PEERS else "not installed"


def adtrans_status() -> Optional[str]:
    """``None`` when adtrans's differentiation API is usable, else why not."""
    try:
        import adtrans
    except Exception as exc:   # the package under test; report, don't crash
        return f"unavailable: import adtrans failed ({type(exc).__name__}: {exc})"
    missing = [name for name in ("value_with_gradient", "gradient", "gradient_of",
                                 "generated_source")
               if not hasattr(adtrans, name)]
    if missing:
        return "unavailable: adtrans has no " + ", ".join(missing)
    return None


def failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"failed: {type(exc).__name__}: {text[0] if text else ''}"[:200]


# ---------------------------------------------------------------- machine

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _openblas_runtime() -> Optional[str]:
    """The OpenBLAS kernel and thread count NumPy runs with, read via ctypes.

    threadpoolctl does this when installed; without it we look for the
    OpenBLAS library NumPy loaded and ask it directly.
    """
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f
                            if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                core = getattr(lib, f"{prefix}openblas_get_corename{suffix}", None)
                threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                if core is None:
                    continue
                core.restype = ctypes.c_char_p
                text = f"core {core().decode()}"
                if threads is not None:
                    text += f", {threads()} threads"
                return text
    return None


def _blas() -> str:
    parts = []
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        parts.append(f"{blas.get('name')} {blas.get('version')}")
    except Exception:          # older NumPy: no mode="dicts"
        parts.append("BLAS unknown")
    threadpoolctl = try_import("threadpoolctl")
    if threadpoolctl is not None:
        for info in threadpoolctl.threadpool_info():
            if info.get("user_api") == "blas":
                parts.append(f"{info.get('internal_api')} {info.get('architecture')}, "
                             f"{info.get('num_threads')} threads")
                break
    else:
        runtime = _openblas_runtime()
        if runtime:
            parts.append(runtime)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                "OMP_NUM_THREADS"):
        if os.environ.get(var):
            parts.append(f"{var}={os.environ[var]}")
    return ", ".join(parts)


def _installed_version(distribution: str) -> str:
    """The installed version, read without importing the package."""
    from importlib import metadata
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict:
    """A description of the machine and the software measured on it."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    peers = {name: _installed_version(name) for name in ("autograd", "jax", "torch")}
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
        "peers": peers,
        "platform": platform.platform(),
    }


def machine_line(info: dict) -> str:
    peers = ", ".join(f"{k} {v}" for k, v in info["peers"].items())
    return (f"{info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
            f"Python {info['python']}, NumPy {info['numpy']} ({info['blas']}); {peers}")


# ---------------------------------------------------------------- printing

def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def format_value(value: Optional[float], unit: str = "s") -> str:
    if unit == "s" or value is None:
        return format_seconds(value)
    return f"{value:.3g} {unit}"


def format_table(result: Result) -> str:
    """The workload's rows as an aligned text table."""
    header = ("system", "measure", "median", "min", "n", "ratio", "paired", "")
    lines = [header]
    for row in result.rows:
        if row.samples:
            lines.append((row.system, row.measure, format_value(row.median, row.unit),
                          format_value(min(row.samples), row.unit), str(len(row.samples)),
                          f"{row.ratio:.2f}x" if row.ratio is not None else "-",
                          f"{row.paired:.2f}x" if row.paired is not None else "-",
                          row.note))
        else:
            lines.append((row.system, row.measure, "-", "-", "-", "-", "-",
                          row.status + (f" ({row.note})" if row.note else "")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [line[i].ljust(widths[i]) if i < 2 else line[i].rjust(widths[i])
                 for i in range(len(widths))]
        out.append("  ".join(cells + [line[-1]]).rstrip())
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


def eprint(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def time_and_compare(rows, calls, repeat, measure, digits=1):
    """Time `calls` interleaved, fill the rows' samples and ratios, and note each `measure` row's
    multiple of the plain forward call's time."""
    samples = time_per_call_interleaved(calls, repeat=repeat)
    for row in rows:
        row.samples = samples.get((row.system, row.measure), [])
    fill_ratios(rows, reference="handwritten")
    forward = next(r for r in rows if r.measure == "forward").median
    for row in rows:
        if row.measure == measure and row.samples:
            row.note = "; ".join(filter(None, [row.note, f"{row.median / forward:.{digits}f}x forward"]))


def first_call_note(call):
    """Run `call` once (adtrans transforms on its first call) and say how long that took."""
    import time

    start = time.perf_counter()
    call()
    return f"first call (transform + run) {format_seconds(time.perf_counter() - start)}"


def add_checked_systems(rows, calls, systems, measure, build, check):
    """Build each system, check it against the reference, and add its call to `calls`.

    `build(builder)` returns what the system's builder returns, or None when
    the system is not installed; `check(name, built)` raises `Disagreement`
    on a wrong answer and returns ``(call, note)``. A system that is missing,
    wrong or broken gets a row saying so instead of a call: it is reported,
    never fatal.
    """
    for name, builder in systems:
        row = Row(name, measure)
        rows.append(row)
        try:
            built = build(builder)
            if built is None:
                row.status = (adtrans_status() if name.startswith("adtrans")
                              else None) or missing_peer_status()
                continue
            call, row.note = check(name, built)
        except Disagreement as exc:
            row.status = f"failed: disagrees with the reference: {exc}"
            continue
        except Exception as exc:    # a broken system is reported, not fatal
            row.status = failure(exc)
            continue
        calls[(name, measure)] = call
