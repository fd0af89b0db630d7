"""Trials per minute of 2 Ray workers against 2 local worker processes on the same machine.

Both settings run the same search as benchmarks/workers_throughput.py (synthetic data, a tree
space, random sampler, SQLite), ``--workers 2``: once as local processes, once with
``--executor ray`` on a Ray instance the command starts on this machine. The runs alternate
(local, ray, local, ray, ...) so that a change in the machine's load touches both alike.
Throughput is counted from the study: finished trials over the span from the first trial's
start to the last one's end; the whole command's wall time (with Ray's start-up) is beside it.

    python benchmarks/ray_vs_local.py                 # 24 trials a run, 2 repetitions each
    python benchmarks/ray_vs_local.py --repetitions 3

Needs Ray (pip install 'mtl-search[ray]'). Prints a table and writes
benchmarks/results/ray_vs_local.json, with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

from _record import result_path  # noqa: E402  (benchmarks/ is on sys.path when a script runs)
from workers_throughput import measure

EXECUTORS = {"local": (), "ray": ("--executor", "ray")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=2, help="runs of each executor (default: 2)")
    parser.add_argument("--quick", action="store_true", help="8 trials a run instead of 24")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args()
    args.out = args.out or result_path("ray_vs_local", args.quick)
    trials, epochs, rows = (8, 4, 3000) if args.quick else (24, 6, 4000)

    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="mtl-search-bench-") as tmp:
        for repetition in range(args.repetitions):
            for executor, extra in EXECUTORS.items():
                run = measure(2, trials, epochs, rows, Path(tmp), extra, name=f"-{executor}{repetition}")
                runs.append({"executor": executor, "repetition": repetition + 1, **run})
                print(
                    f"{executor:>6} #{repetition + 1}: {run['trials']} trials, span {run['trial_span_seconds']} s, "
                    f"wall {run['command_wall_seconds']} s, {run['trials_per_minute']} trials/min",
                    flush=True,
                )
    load_after = os.getloadavg()
    medians = {
        executor: statistics.median(r["trials_per_minute"] for r in runs if r["executor"] == executor)
        for executor in EXECUTORS
    }
    result = {
        "benchmark": "ray_vs_local",
        "quick": args.quick,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "settings": {"workers": 2, "trials": trials, "epochs": epochs, "rows": rows, "dim": 50, "storage": "sqlite"},
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "runs": runs,
        "median_trials_per_minute": medians,
        "ray_over_local": round(medians["ray"] / medians["local"], 2),
    }
    print(
        f"median trials/min: local {medians['local']}, ray {medians['ray']} "
        f"(ray/local {result['ray_over_local']}); load average before {load_before[0]:.1f}, after {load_after[0]:.1f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
