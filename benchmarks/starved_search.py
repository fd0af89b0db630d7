#!/usr/bin/env python3
"""Does pruning starve the sampler? Searches with and without the complete-share floor.

Pareto-aware pruning stops a trial whose curve is dominated early. Where early epochs rank
candidates poorly, a rule can stop every trial after the random start-up ones: the front is
then a start-up trial and the sampler, which models complete trials, learns nothing. The
floor (``pruning.min_complete_share``, ``--prune-min-complete-share``) pauses pruning while
fewer than that share of the finished trials trained to the end.

For each data set and seed the script runs the real command twice, back to back in
alternating order: ``--prune-min-complete-share 0`` (no floor, as before) and the default.
Per run it prints the share of the trials after start-up that were pruned, the complete ones
among them, the epochs trained, CPU seconds and the hypervolume of the validation front,
normalised with bounds shared by both runs of that seed
(``mtl_search.search.hypervolume.front_bounds``).

    python benchmarks/starved_search.py                    # census (20,000 rows), 16 epochs, 3 seeds
    python benchmarks/starved_search.py --rows 4000        # a small table: noisier early epochs
    python benchmarks/starved_search.py --quick            # a smoke run
    python benchmarks/starved_search.py --data synthetic --seeds 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import CENSUS_FILE, add_result_options, write_result  # noqa: E402

from mtl_search.search.hypervolume import front_bounds, front_hypervolume  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA_ARGS = {
    "synthetic": [],
    "census": ["--data", "census", "--data-file", str(CENSUS_FILE)],
}
VARIANTS = {"no floor": ["--prune-min-complete-share", "0"], "default floor": []}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", choices=list(DATA_ARGS), default=["census"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per data set and variant (default: 3)")
    parser.add_argument("--trials", type=int, default=30, help="trial budget of every search (default: 30)")
    parser.add_argument("--startup-trials", type=int, default=5, help="random start-up trials (default: 5)")
    parser.add_argument("--epochs", type=int, default=16, help="epochs per trial (default: 16)")
    parser.add_argument("--threads", type=int, default=1, help="--threads of every search (default: 1)")
    parser.add_argument("--rows", type=int, default=20000, help="census rows sampled (default: 20000)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further arguments for every run")
    add_result_options(parser, "starved_search", "a smoke run: synthetic only, 1 seed, 10 trials, 4 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.seeds, args.trials, args.epochs, args.startup_trials = ["synthetic"], 1, 10, 4, 3
    return args


def run_one(folder: Path, data: str, variant: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    name = f"{data}-{variant.replace(' ', '-')}-s{seed}"
    storage = f"sqlite:///{folder / f'{name}.db'}"
    command = [
        sys.executable,
        "-m",
        "mtl_search",
        "run",
        *DATA_ARGS[data],
        *(["--data-option", f"rows={args.rows}"] if data == "census" else []),
        *("--trials", str(args.trials), "--startup-trials", str(args.startup_trials)),
        *("--epochs", str(args.epochs), "--seed", str(seed), "--threads", str(args.threads)),
        *("--study-name", name, "--storage", storage, "--quiet"),
        *VARIANTS[variant],
        *args.extra,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(REPO)}
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    study = optuna.load_study(study_name=name, storage=storage)
    later = [t for t in study.trials if t.number >= args.startup_trials and t.state.is_finished()]
    pruned = sum(1 for t in later if t.state == optuna.trial.TrialState.PRUNED)
    return {
        "data": data,
        "variant": variant,
        "seed": seed,
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "after_startup": len(later),
        "pruned_after_startup": pruned,
        "epochs": sum(len(t.user_attrs.get("history") or []) for t in study.trials),
        "storage": storage,
        "name": name,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[dict[str, Any]] = []
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    with tempfile.TemporaryDirectory(prefix="starved-search-") as tmp:
        folder = Path(tmp)
        for data in args.data:
            for seed in range(args.seeds):
                order = list(VARIANTS) if seed % 2 == 0 else list(reversed(VARIANTS))
                runs = [run_one(folder, data, variant, seed, args) for variant in order]
                studies = [optuna.load_study(study_name=r["name"], storage=r["storage"]) for r in runs]
                bounds = front_bounds(studies)
                for run, study in zip(runs, studies):
                    run["hypervolume"] = front_hypervolume(study, bounds)
                    print(
                        f"{data:9s} seed {seed} {run['variant']:13s}: pruned {run['pruned_after_startup']} of "
                        f"{run['after_startup']} trials after start-up, {run['epochs']} epochs, "
                        f"CPU {run['cpu_s']:.0f} s, HV {run['hypervolume']:.4f}",
                        flush=True,
                    )
                rows.extend(runs)
    summary = summarise(rows, args)
    print(f"\n{'data':9s} {'variant':13s} {'pruned after start-up':>22s} {'HV mean ± sd':>16s} {'CPU s':>7s}")
    for s in summary:
        print(
            f"{s['data']:9s} {s['variant']:13s} {s['pruned_share']:22.0%} "
            f"{s['hv_mean']:8.4f} ± {s['hv_std']:.4f} {s['cpu_s']:7.0f}"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    path = write_result(args.name, vars(args), {"runs": rows, "summary": summary})
    print(f"rerun: python benchmarks/starved_search.py {' '.join(argv or sys.argv[1:])} ({path})")
    return 0


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    summary = []
    for data in args.data:
        for variant in VARIANTS:
            runs = [r for r in rows if r["data"] == data and r["variant"] == variant]
            hv = [r["hypervolume"] for r in runs]
            summary.append(
                {
                    "data": data,
                    "variant": variant,
                    "runs": len(runs),
                    "pruned_share": sum(r["pruned_after_startup"] for r in runs)
                    / max(1, sum(r["after_startup"] for r in runs)),
                    "hv_mean": statistics.mean(hv),
                    "hv_std": statistics.stdev(hv) if len(hv) > 1 else 0.0,
                    "cpu_s": statistics.median(r["cpu_s"] for r in runs),
                }
            )
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
