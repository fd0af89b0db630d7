"""How much of a default search's CPU goes to Optuna's storage (SQLite through SQLAlchemy).

Runs ``mtl-search run --trials N`` (default data and space, a fresh SQLite file) under
cProfile with a CPU-time clock, then adds up the cumulative time of the storage functions
(``optuna/storages``) that code outside the storage package called, so that nested storage
calls are not counted twice. Prints the total, the storage share and the largest entries
(calls and CPU seconds), such as the trial reads (``get_all_trials``) and attribute writes.
cProfile slows Python code more than torch's kernels, so the share is an upper bound.

    python benchmarks/storage_share.py               # --trials 20
    python benchmarks/storage_share.py --quick       # --trials 5
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

from _record import add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

REPO = Path(__file__).resolve().parents[1]

PROFILE = """
import cProfile, sys, time
from mtl_search.cli import main

profile = cProfile.Profile(time.process_time)
profile.enable()
try:
    main(sys.argv[2:])
finally:
    profile.disable()
    profile.dump_stats(sys.argv[1])
"""


def storage_code(location: tuple) -> bool:
    return "optuna/storages" in location[0]


def transparent(location: tuple) -> bool:
    # context-manager and decorator wrappers, and SQLAlchemy's own calls back, are not "outside"
    return location[0] == "~" or any(part in location[0] for part in ("contextlib", "functools", "sqlalchemy"))


def storage_entries(stats: pstats.Stats) -> list[dict]:
    entries = []
    for function, (_, _, _, _, callers) in stats.stats.items():
        if not storage_code(function):
            continue
        outside = [timing for caller, timing in callers.items() if not storage_code(caller) and not transparent(caller)]
        if outside:
            entries.append(
                {
                    "function": f"{function[0].split('optuna/')[-1]}:{function[2]}",
                    "calls": sum(t[1] for t in outside),
                    "cpu_seconds": sum(t[3] for t in outside),
                }
            )
    return sorted(entries, key=lambda e: -e["cpu_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of the search (default: 20)")
    add_result_options(parser, "storage_share", "--trials 5")
    args = parser.parse_args()
    trials = 5 if args.quick else args.trials
    with tempfile.TemporaryDirectory(prefix="mtl-search-storage-") as tmp:
        profile = Path(tmp) / "run.prof"
        environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
        command = [
            sys.executable,
            "-c",
            PROFILE,
            str(profile),
            "run",
            "--trials",
            str(trials),
            "--quiet",
            "--storage",
            f"sqlite:///{Path(tmp) / 'study.db'}",
            "--study-name",
            "storage",
            "--device",
            "cpu",
        ]
        subprocess.run(command, cwd=tmp, env=environment, check=True, stdout=subprocess.DEVNULL)
        stats = pstats.Stats(str(profile))
    total = max(timing[3] for timing in stats.stats.values())
    entries = storage_entries(stats)
    storage = sum(e["cpu_seconds"] for e in entries)
    print(
        f"mtl-search run --trials {trials}: {total:.2f} CPU s under cProfile, of which Optuna's storage "
        f"{storage:.2f} s ({100 * storage / total:.1f} %)"
    )
    for entry in entries[:10]:
        print(f"  {entry['cpu_seconds']:7.3f} s {entry['calls']:6d} calls  {entry['function']}")
    write_result(
        args.name,
        {"trials": trials, "quick": args.quick},
        {"total_cpu_seconds": total, "storage_cpu_seconds": storage, "entries": entries[:20]},
    )


if __name__ == "__main__":
    main()
