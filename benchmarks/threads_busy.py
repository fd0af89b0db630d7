"""The default search while other work keeps the cores busy: torch threads against CPU and wall time.

Each setting runs the real ``mtl-search run`` (the default data and space, a fresh SQLite
study) while ``--busy`` processes that only spin (``python -c 'while True: pass'``) share the
machine. Settings, interleaved so that a change in the machine's other load hits all alike:

- ``default``: no ``--threads`` (mtl-search's own default);
- ``threads 1``: ``--threads 1``;
- ``threads C``: ``--threads`` the usable cores, what torch does on its own (the old behaviour).

CPU time is the command's user + system time (``os.wait4``), wall time its elapsed time. A run
longer than ``--run-timeout`` seconds is stopped (marked ``stopped``); the trials it finished by
then still count, so each setting is also compared per finished trial: CPU and wall seconds
per trial (process start-up included), which a stopped run still measures.

    python benchmarks/threads_busy.py                 # 10 trials, 3 repetitions, 2 busy processes
    python benchmarks/threads_busy.py --quick         # 4 trials, 1 repetition
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _record import add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

REPO = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_search(flags: list[str], trials: int, folder: Path, index: int, limit: float) -> dict:
    """One ``mtl-search run``: its CPU and wall seconds (``stopped`` when it ran past ``limit``)."""
    storage = f"sqlite:///{folder / f'run{index}.db'}"
    command = [
        sys.executable,
        "-m",
        "mtl_search",
        "run",
        "--trials",
        str(trials),
        "--storage",
        storage,
        "--study-name",
        "busy",
        "--quiet",
        "--device",
        "cpu",
        *flags,
    ]
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    environment["PYTHONPATH"] = str(REPO) + os.pathsep + environment.get("PYTHONPATH", "")
    errors = folder / f"run{index}.err"
    started = time.perf_counter()
    with errors.open("wb") as error_file:  # a file, not a pipe: a full pipe would stall the search
        process = subprocess.Popen(command, cwd=folder, env=environment, stdout=subprocess.DEVNULL, stderr=error_file)
    stopped = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - started > limit:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            stopped = True
            break
        time.sleep(0.05)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if not stopped and process.returncode != 0:
        error = errors.read_text(errors="replace").strip()[-500:]
        raise SystemExit(f"mtl-search run {' '.join(flags)} failed ({process.returncode}): {error}")
    finished = finished_trials(storage)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
        "stopped": stopped,
        "finished_trials": finished,
        "cpu_per_trial": round(cpu / finished, 3) if finished else None,
        "wall_per_trial": round(wall / finished, 3) if finished else None,
    }


def finished_trials(storage: str) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name="busy", storage=storage)
    except KeyError:  # stopped before the study was made
        return 0
    return sum(trial.state.is_finished() for trial in study.get_trials(deepcopy=False))


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per setting: median CPU and wall seconds, and all runs' seconds per finished trial (pooled,
    so that runs stopped at the time limit still count with the trials they finished)."""
    summary = {}
    for name, results in runs.items():
        finished = sum(r["finished_trials"] for r in results)
        cpu, wall = sum(r["cpu_seconds"] for r in results), sum(r["wall_seconds"] for r in results)
        summary[name] = {
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in results),
            "median_wall_seconds": statistics.median(r["wall_seconds"] for r in results),
            "any_stopped": any(r["stopped"] for r in results),
            "finished_trials": finished,
            "cpu_per_trial": cpu / finished if finished else None,
            "wall_per_trial": wall / finished if finished else None,
        }
    reference = summary["default"]
    for row in summary.values():
        for key in ("cpu_per_trial", "wall_per_trial"):
            row[f"{key}_x_default"] = ratio(row[key], reference[key])
    return summary


def ratio(value: float | None, reference: float | None) -> float | None:
    return None if value is None or not reference else value / reference


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def show(value: float, stopped: bool) -> str:
    return f">{value:.1f}" if stopped else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials of each search (default: 10)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting, interleaved (default: 3)")
    parser.add_argument("--busy", type=int, default=2, help="spinning processes beside each search (default: 2)")
    parser.add_argument(
        "--run-timeout", type=float, default=100, help="stop a search after this many seconds (default: 100)"
    )
    add_result_options(parser, "threads_busy", "4 trials, 1 repetition")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.repeats = 4, 1
    cores = usable_cores()
    settings = {
        "default": [],
        "threads 1": ["--threads", "1"],
        f"threads {cores} (torch's own)": ["--threads", str(cores)],
    }
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    # the spinners end on their own after the whole budget, should this script be killed
    budget = int(args.run_timeout * args.repeats * len(settings) + 60)
    spinners = [subprocess.Popen(["timeout", str(budget), sys.executable, "-c", SPIN]) for _ in range(args.busy)]
    try:
        with tempfile.TemporaryDirectory(prefix="mtl-search-threads-") as tmp:
            index = 0
            for repeat in range(args.repeats):
                for name, flags in settings.items():
                    result = run_search(flags, args.trials, Path(tmp), index, args.run_timeout)
                    index += 1
                    runs[name].append(result)
                    print(
                        f"repeat {repeat + 1} {name:<24} CPU {show(result['cpu_seconds'], result['stopped']):>7} s"
                        f"   wall {show(result['wall_seconds'], result['stopped']):>7} s   "
                        f"{result['finished_trials']} trial(s) finished",
                        flush=True,
                    )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    load_after = os.getloadavg()

    print(
        f"\nthe default search (--trials {args.trials}) beside {args.busy} spinning processes on {cores} usable "
        f"cores; "
        f"median of {args.repeats} run(s)"
    )
    summary = summarise(runs)
    print(
        f"{'setting':<26} {'CPU s':>8} {'wall s':>8} {'trials':>6} {'CPU s/trial':>11} {'wall s/trial':>12}"
        f" {'CPU/trial x default':>19} {'wall/trial x default':>20}"
    )
    for name, row in summary.items():
        print(
            f"{name:<26} {show(row['median_cpu_seconds'], row['any_stopped']):>8} "
            f"{show(row['median_wall_seconds'], row['any_stopped']):>8} {row['finished_trials']:>6} "
            f"{fmt(row['cpu_per_trial']):>11} {fmt(row['wall_per_trial']):>12} "
            f"{fmt(row['cpu_per_trial_x_default']):>19} {fmt(row['wall_per_trial_x_default']):>20}"
        )
    print(
        "(CPU s and wall s: medians of the runs; trials: finished in all runs together; per trial: all runs' "
        "seconds over those trials, process start-up included)"
    )
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (other work on the machine counts too)")
    write_result(
        args.name,
        {
            "trials": args.trials,
            "repeats": args.repeats,
            "busy": args.busy,
            "cores": cores,
            "run_timeout": args.run_timeout,
            "quick": args.quick,
        },
        {"runs": runs, "summary": summary},
        load_average_before=list(load_before),
        load_average_after=list(load_after),
    )


if __name__ == "__main__":
    main()
