"""How long `mtl-search run` takes to end after Ctrl-C, at each stage of a run.

Each scenario starts the real command (``python -m mtl_search run``, a fresh SQLite study, its
own process group, ``MTL_SEARCH_CACHE=off``), waits for the stage, sends SIGINT to the group as
a terminal does, and measures the seconds from the signal to the ``interrupted`` line on stderr
and to the process's end:

- ``load-csv``, ``load-parquet``: while a generated table (``--rows`` rows, 13 columns) is read
  (the moment the process has the file open);
- ``training``: while a trial with one long epoch trains (its candidate recorded);
- ``workers``: the same with ``--workers 2``, once both workers train.

``--checkout`` runs another copy of the code (its folder goes first on ``PYTHONPATH``), several
of them interleaved repetition by repetition, so that the machine's other load hits each alike:

    python benchmarks/ctrl_c_exit.py                                   # this checkout, 3 repetitions
    python benchmarks/ctrl_c_exit.py --checkout /path/to/old --checkout .   # before and after
    python benchmarks/ctrl_c_exit.py --quick                           # 1 repetition, 200000 rows
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _record import add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("load-csv", "load-parquet", "training", "workers")
LONG_EPOCH_SPACE = (
    "training: {epochs: 1, batch_size: 16}\nfamilies: {tree: {depth: 1, width: 8}}\nloss_weighting: {static: {}}\n"
)


def write_tables(folder: Path, rows: int) -> dict[str, Path]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((rows, 12)), columns=[f"f{i}" for i in range(12)])
    frame["y"] = frame["f0"] + rng.standard_normal(rows)
    paths = {"load-csv": folder / "large.csv", "load-parquet": folder / "large.parquet"}
    frame.to_csv(paths["load-csv"], index=False)
    frame.to_parquet(paths["load-parquet"])
    return paths


def has_open(pid: int, path: Path) -> bool:
    folder = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(folder / fd) == str(path) for fd in os.listdir(folder))
    except OSError:
        return False


def running_with_candidate(database: Path) -> int:
    """Trials RUNNING whose candidate is recorded (training or about to)."""
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute(
                "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                "WHERE t.state = 'RUNNING' AND a.key = 'candidate'"
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def measure(scenario: str, checkout: Path, folder: Path, tables: dict[str, Path]) -> dict[str, float | int | str]:
    database = folder / f"{scenario}-{time.monotonic_ns()}.db"
    args = [sys.executable, "-m", "mtl_search", "run", "--storage", f"sqlite:///{database}", "--quiet"]
    if scenario.startswith("load"):
        args += ["--data-file", str(tables[scenario]), "--task", "y:regression"]
    else:
        space = folder / "long-epoch.yaml"
        space.write_text(LONG_EPOCH_SPACE)
        args += ["--space", str(space), "--data-option", "rows=100000", "--data-option", "dim=8", "--trials", "4"]
        if scenario == "workers":
            args += ["--workers", "2"]
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONUNBUFFERED="1", MTL_SEARCH_CACHE="off")
    process = subprocess.Popen(
        args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in process.stderr))
    reader.start()
    started = time.monotonic()

    def at_stage() -> bool:
        if scenario.startswith("load"):
            return has_open(process.pid, tables[scenario])
        return running_with_candidate(database) >= (2 if scenario == "workers" else 1)

    while not at_stage():
        if process.poll() is not None:
            reader.join()
            return {"error": f"ended before the stage (status {process.returncode}): {lines[-1:]}"}
        time.sleep(0.005 if scenario.startswith("load") else 0.1)
    if not scenario.startswith("load"):
        time.sleep(1.0)  # into the epoch
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=300)
    ended = time.monotonic()
    reader.join()
    said = [moment for moment, line in lines if "interrupted" in line]
    return {
        "signal_after_start_s": round(sent - started, 2),
        "interrupted_line_s": round(said[0] - sent, 2) if said else float("nan"),
        "exit_s": round(ended - sent, 2),
        "status": process.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", action="append", type=Path, help="a copy of the code to measure (repeatable)")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--rows", type=int, default=400_000, help="rows of the generated tables")
    add_result_options(parser, "ctrl_c_exit", "1 repetition, 200000 rows")
    options = parser.parse_args()
    if options.quick:
        options.repetitions, options.rows = 1, 200_000
    checkouts = [path.resolve() for path in options.checkout or [REPO]]
    scenarios = options.scenario or list(SCENARIOS)
    results: dict[str, dict[str, list]] = {str(c): {s: [] for s in scenarios} for c in checkouts}
    with tempfile.TemporaryDirectory(prefix="mtl-search-ctrl-c-") as name:
        folder = Path(name)
        tables = write_tables(folder, options.rows)
        for repetition in range(options.repetitions):
            for scenario in scenarios:
                for checkout in checkouts:
                    outcome = measure(scenario, checkout, folder, tables)
                    results[str(checkout)][scenario].append(outcome)
                    print(f"{checkout}  {scenario:13s} #{repetition + 1}: {outcome}", flush=True)
    print("\nseconds from Ctrl-C to the process's end (median, max):")
    for checkout, by_scenario in results.items():
        for scenario, outcomes in by_scenario.items():
            exits = [o["exit_s"] for o in outcomes if "exit_s" in o]
            if exits:
                print(f"  {checkout}  {scenario:13s} {statistics.median(exits):5.2f}  {max(exits):5.2f}")
    write_result(
        options.name,
        {"repetitions": options.repetitions, "rows": options.rows, "quick": options.quick, "scenarios": scenarios},
        results,
    )


if __name__ == "__main__":
    main()
