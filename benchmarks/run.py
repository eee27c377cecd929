"""Run adtrans's benchmarks and print medians and ratios to handwritten NumPy.

    python benchmarks/run.py                        # every workload, full size
    python benchmarks/run.py --only mlp --repeat 21 --json results.json
    python benchmarks/run.py --size tiny --repeat 3  # a quick look
    python benchmarks/run.py --only mlp --no-peers   # adtrans vs handwritten only
    python benchmarks/run.py --only mlp --source     # also print adtrans's code

Each workload is a module of this folder with a ``run(repeat, size)``
function returning a ``harness.Result``; ``WORKLOADS`` lists them. Peers
(autograd, JAX, PyTorch) are measured when importable and otherwise listed
as "not installed".
"""

import argparse
import datetime
import importlib
import json
import os
import sys

# Run as a script: make the repository's root importable (benchmarks, adtrans).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness  # noqa: E402

WORKLOADS = {
    "mlp": "benchmarks.mlp",          # W1
    "sincos": "benchmarks.sincos",    # W2-lite
    "euler": "benchmarks.euler",      # W2: 1000-step Euler, loop-heavy scalars
    "rnn": "benchmarks.rnn",          # loop-heavy NumPy: RNN over 100 steps
    "deepchain": "benchmarks.deepchain",  # W3: 64-layer chain, checkpointing memory
    "nn_step": "benchmarks.nn_step",  # adtrans.nn: one SGD step of an MLP and the tutorial CNN
    "xor": "benchmarks.xor",          # W5: small arrays, per-operation overhead
    "overhead": "benchmarks.overhead",  # W4: transform time and cached-call overhead
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(WORKLOADS),
                        help="run only this workload (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("--repeat", type=int, default=15,
                        help="timed rounds per system after warm-up (default 15)")
    parser.add_argument("--size", default="full", choices=("full", "tiny"),
                        help="problem size; 'tiny' is for checking the harness")
    parser.add_argument("--no-peers", action="store_true",
                        help="measure adtrans and the reference only; don't import peers")
    parser.add_argument("--gap", type=float, default=None, metavar="SECONDS",
                        help="idle time before each timed call of the array workloads, so "
                             "thread pools settle (default: %s s when JAX or PyTorch is "
                             "measured, else 0)" % harness.AUTO_GAP)
    parser.add_argument("--source", action="store_true",
                        help="print adtrans's generated code for each workload")
    args = parser.parse_args(argv)

    harness.SKIP_PEERS = args.no_peers
    harness.GAP = args.gap
    info = harness.machine()
    print("machine:", harness.machine_line(info))
    status = harness.adtrans_status()
    if status is not None:
        print(f"adtrans: {status}; its rows are skipped")
    print(flush=True)

    results = []
    for name in args.only or list(WORKLOADS):
        module = importlib.import_module(WORKLOADS[name])
        harness.eprint(f"running {name} ({args.size}, {args.repeat} rounds) ...")
        result = module.run(repeat=args.repeat, size=args.size)
        results.append(result)
        print(result.title)
        print(harness.format_table(result))
        for note in result.notes:
            print("  " + note)
        if args.source and status is None:
            print("\nadtrans.generated_source:")
            try:
                print(module.generated_source())
            except Exception as exc:   # show the failure, keep the numbers
                print("  " + harness.failure(exc))
        print(flush=True)

    if args.json:
        payload = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:] if argv is None else list(argv),
            "machine": info,
            "machine_line": harness.machine_line(info),
            "results": [r.as_dict() for r in results],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
