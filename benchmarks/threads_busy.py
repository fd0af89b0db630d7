"""The default search while other work keeps the cores busy: torch threads against CPU and wall time.

Each setting runs the real ``mtl-search run`` (the default data and space, a fresh SQLite
study) while ``--busy`` processes that only spin (``python -c 'while True: pass'``) share the
machine. Settings, interleaved so that a change in the machine's other load hits all alike:

- ``default``: no ``--threads`` (mtl-search's own default);
- ``threads 1``: ``--threads 1``;
- ``threads C``: ``--threads`` the usable cores, what torch does on its own (the old behaviour).

CPU time is the command's user + system time (``os.wait4``), wall time its elapsed time. A run
longer than ``--run-timeout`` seconds is stopped and shown as ``>`` that bound.

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
    command = [sys.executable, "-m", "mtl_search", "run", "--trials", str(trials), "--storage", storage,
               "--study-name", "busy", "--quiet", "--device", "cpu", *flags]
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
    return {"cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "wall_seconds": round(wall, 2), "stopped": stopped}


def show(value: float, stopped: bool) -> str:
    return f">{value:.1f}" if stopped else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="trials of each search (default: 10)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting, interleaved (default: 3)")
    parser.add_argument("--busy", type=int, default=2, help="spinning processes beside each search (default: 2)")
    parser.add_argument("--run-timeout", type=float, default=180, help="stop a search after this many seconds (default: 180)")
    add_result_options(parser, "threads_busy", "4 trials, 1 repetition")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.repeats = 4, 1
    cores = usable_cores()
    settings = {"default": [], "threads 1": ["--threads", "1"], f"threads {cores} (torch's own)": ["--threads", str(cores)]}
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
                    print(f"repeat {repeat + 1} {name:<24} CPU {show(result['cpu_seconds'], result['stopped']):>7} s"
                          f"   wall {show(result['wall_seconds'], result['stopped']):>7} s", flush=True)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    load_after = os.getloadavg()

    print(f"\nthe default search (--trials {args.trials}) beside {args.busy} spinning processes on {cores} usable cores; "
          f"median of {args.repeats} run(s)")
    print(f"{'setting':<26} {'CPU s':>8} {'wall s':>8}  {'CPU x default':>13} {'wall x default':>14}")
    reference = runs["default"]
    summary = {}
    for name, results in runs.items():
        cpu = statistics.median(r["cpu_seconds"] for r in results)
        wall = statistics.median(r["wall_seconds"] for r in results)
        stopped = any(r["stopped"] for r in results)
        cpu_ratio = cpu / statistics.median(r["cpu_seconds"] for r in reference)
        wall_ratio = wall / statistics.median(r["wall_seconds"] for r in reference)
        summary[name] = {"median_cpu_seconds": cpu, "median_wall_seconds": wall, "any_stopped": stopped,
                         "cpu_ratio_to_default": round(cpu_ratio, 2), "wall_ratio_to_default": round(wall_ratio, 2)}
        bound = ">=" if stopped else ""
        print(f"{name:<26} {show(cpu, stopped):>8} {show(wall, stopped):>8}  {bound + f'{cpu_ratio:.2f}':>13} "
              f"{bound + f'{wall_ratio:.2f}':>14}")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (other work on the machine counts too)")
    write_result(args.name, {"trials": args.trials, "repeats": args.repeats, "busy": args.busy, "cores": cores,
                             "run_timeout": args.run_timeout, "quick": args.quick},
                 {"runs": runs, "summary": summary}, load_average_before=list(load_before), load_average_after=list(load_after))


if __name__ == "__main__":
    main()
