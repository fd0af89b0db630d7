"""Trials per minute of ``mtl-search run`` with 1 and with 2 worker processes.

Each setting runs the real command on a fresh SQLite study with the same small search
(synthetic data, a tree space, random sampler so that both settings train alike candidates).
Throughput is counted from the study itself: finished trials over the time from the first
trial's start to the last trial's end, so process start-up (importing torch) is left out;
the wall time of the whole command is reported beside it.

    python benchmarks/workers_throughput.py           # 24 trials per setting
    python benchmarks/workers_throughput.py --quick   # 8 trials per setting

Prints a table and writes benchmarks/results/workers_throughput.json. On a machine shared
with other work the figures are noisy: the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import result_path  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import optuna

SPACE = """\
training:
  epochs: {epochs}
  learning_rate: {{low: 1.0e-3, high: 1.0e-2, log: true}}
  batch_size: 128
families:
  tree:
    depth: {{low: 1, high: 3}}
    width: {{choices: [32, 64]}}
loss_weighting:
  static: {{}}
"""


def measure(
    workers: int, trials: int, epochs: int, rows: int, folder: Path, extra: tuple[str, ...] = (), name: str = ""
) -> dict:
    """One run of ``workers`` workers (``extra``: more flags of ``run``; ``name``: tells its SQLite file apart)."""
    storage = f"sqlite:///{folder / f'workers{workers}{name}.db'}"
    space = folder / "space.yaml"
    space.write_text(SPACE.format(epochs=epochs))
    command = [
        sys.executable,
        "-m",
        "mtl_search",
        "run",
        "--space",
        str(space),
        "--data-option",
        f"rows={rows}",
        "--data-option",
        "dim=50",
        "--storage",
        storage,
        "--study-name",
        "bench",
        "--trials",
        str(trials),
        "--workers",
        str(workers),
        "--sampler",
        "random",
        "--quiet",
        "--device",
        "cpu",
        *extra,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mtl-search run --workers {workers} failed: {done.stderr.strip()[-500:]}")
    found = optuna.load_study(study_name="bench", storage=storage).get_trials(deepcopy=False)
    finished = [t for t in found if t.state.is_finished()]
    span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds()
    return {
        "workers": workers,
        "trials": len(finished),
        "states": {state: sum(t.state.name == state for t in finished) for state in ("COMPLETE", "PRUNED", "FAIL")},
        "trial_span_seconds": round(span, 2),
        "command_wall_seconds": round(wall, 2),
        "trials_per_minute": round(60 * len(finished) / span, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 trials per setting instead of 24")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (default: benchmarks/results/[quick/]workers_throughput.json)",
    )
    args = parser.parse_args()
    args.out = args.out or result_path("workers_throughput", args.quick)
    trials, epochs, rows = (8, 4, 3000) if args.quick else (24, 6, 4000)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mtl-search-bench-") as tmp:
        runs = [measure(workers, trials, epochs, rows, Path(tmp)) for workers in (1, 2)]
    load_after = os.getloadavg()
    speedup = runs[1]["trials_per_minute"] / runs[0]["trials_per_minute"]
    result = {
        "benchmark": "workers_throughput",
        "quick": args.quick,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "settings": {
            "trials": trials,
            "epochs": epochs,
            "rows": rows,
            "dim": 50,
            "sampler": "random",
            "storage": "sqlite",
        },
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "runs": runs,
        "speedup_2_workers": round(speedup, 2),
        "target_speedup": 1.7,
    }
    print(f"{'workers':>7} {'trials':>6} {'span s':>8} {'wall s':>8} {'trials/min':>10}")
    for run in runs:
        print(
            f"{run['workers']:>7} {run['trials']:>6} {run['trial_span_seconds']:>8} {run['command_wall_seconds']:>8} {run['trials_per_minute']:>10}"
        )
    print(
        f"speedup with 2 workers: {speedup:.2f}x (target >= 1.7x); load average before {load_before[0]:.1f}, after {load_after[0]:.1f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
