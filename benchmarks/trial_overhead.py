"""Where a search's time goes besides training, and what the constant liar costs alone.

A trial is more than its epochs: the sampler proposes it, Optuna creates and finishes it,
and mtl-search records it (user attributes, the dashboard note, artifacts). On small data
those parts are a large share of the search. This script runs the same in-process search
(default space, synthetic data, TPE, SQLite file) twice per repeat, alternating the order:

- ``alone``: one process on its own study, as ``mtl-search run`` without ``--workers`` on
  SQLite. TPE goes without the constant liar (``make_sampler(shared=False)``);
- ``shared``: the same, with the trial budget of ``--workers`` runs, so TPE uses the constant
  liar, which reads the study's trials (finished and running) from storage again for every
  parameter group; that cost grows with the study.

- ``fsync``: as ``alone``, with SQLite's default ``synchronous=FULL`` instead of the
  ``NORMAL`` that mtl-search sets on its WAL files (every commit then waits for the disk;
  a trial makes 30 to 40 commits).

In one process the only running trial is the one being sampled, which the liar leaves out,
so all three propose the same candidates: the script checks that, then reports the wall
time of each. One more run of each under cProfile splits the time into sampling, training,
recording (every ``set_user_attr``, wherever called) and the rest (cProfile slows Python-heavy parts more than torch kernels, so read
the split as shares, not as seconds to expect).

    python benchmarks/trial_overhead.py                  # 60 trials x 4 epochs, 3 repeats
    python benchmarks/trial_overhead.py --quick          # 20 trials x 2 epochs, 1 repeat

Writes benchmarks/results/trial_overhead.json.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import write_result  # noqa: E402

import optuna  # noqa: E402

from mtl_search.data.synthetic import make_synthetic  # noqa: E402
from mtl_search.search.runner import SearchSettings, run_search  # noqa: E402
from mtl_search.search.space import load_space  # noqa: E402
from mtl_search.search.workers import LocalBudget, TrialBudget  # noqa: E402

# (label, file name, function name) of the parts the profile split reports
PARTS = [
    ("sampling", "mtl_search/search/space.py", "sample"),
    ("training", "mtl_search/training/trainer.py", "train_candidate"),
    ("recording", "optuna/trial/_trial.py", "set_user_attr"),
    ("dashboard note", "mtl_search/search/notes.py", "note_architecture"),
    ("whole search", "mtl_search/search/runner.py", "run_search"),
]


def _commit_waiting_for_the_disk(dbapi_connection, connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def search(
    data, folder: Path, name: str, shared: bool, trials: int, epochs: int, fsync: bool = False
) -> tuple[float, list[dict]]:
    from mtl_search.search import storage

    normal = storage._commit_without_waiting_for_the_disk
    if fsync:  # the old setting, for the comparison only
        storage._commit_without_waiting_for_the_disk = _commit_waiting_for_the_disk
    try:
        return _search(data, folder, name, shared, trials, epochs)
    finally:
        storage._commit_without_waiting_for_the_disk = normal


def _search(data, folder: Path, name: str, shared: bool, trials: int, epochs: int) -> tuple[float, list[dict]]:
    settings = SearchSettings(
        study_name=name,
        storage=f"sqlite:///{folder / (name + '.db')}",
        sampler="tpe",
        seed=0,
        n_trials=trials,
        epochs=epochs,
        save_artifacts=False,
    )
    budget = TrialBudget(trials) if shared else LocalBudget(trials)
    started = time.perf_counter()
    study = run_search(data, load_space("default"), settings, budget=budget)
    return time.perf_counter() - started, [t.params for t in study.get_trials(deepcopy=False)]


def profiled_split(data, folder: Path, name: str, shared: bool, trials: int, epochs: int) -> dict[str, float]:
    profile = cProfile.Profile()
    profile.runcall(search, data, folder, name, shared, trials, epochs)
    stats = pstats.Stats(profile).stats  # {(file, line, function): (..., cumulative seconds, ...)}
    split = {}
    for label, file, function in PARTS:
        split[label] = round(sum(v[3] for k, v in stats.items() if k[0].endswith(file) and k[2] == function), 2)
    return split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 trials x 2 epochs, 1 repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs, args.repeats = 20, 2, 1
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    data = make_synthetic(rows=args.rows, dim=20, tasks=3, correlation=0.5, seed=0)
    labels = ["alone", "shared", "fsync"]
    walls: dict[str, list[float]] = {label: [] for label in labels}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        search(data, folder, "warm-up", False, 3, 1)  # imports and first-use costs, in no figure
        for repeat in range(args.repeats):
            order = labels[repeat % 3 :] + labels[: repeat % 3]  # rotated, so that no variant always runs first
            params = {}
            for label in order:
                wall, params[label] = search(
                    data,
                    folder,
                    f"{label}-{repeat}",
                    label == "shared",
                    args.trials,
                    args.epochs,
                    fsync=label == "fsync",
                )
                walls[label].append(wall)
                print(f"repeat {repeat} {label:6s} {wall:6.1f} s", flush=True)
            if not params["alone"] == params["shared"] == params["fsync"]:
                raise SystemExit("the runs proposed different candidates: the comparison is void")
        splits = {
            label: profiled_split(data, folder, f"profiled-{label}", label == "shared", args.trials, args.epochs)
            for label in ("alone", "shared")
        }
    median = {label: statistics.median(values) for label, values in walls.items()}
    print(
        f"\n{args.trials} trials x {args.epochs} epochs, {args.rows} rows, default space, TPE, SQLite; same candidates in both"
    )
    print(
        f"{'':8s} {'median wall s':>14s} {'per trial ms':>13s}   profiled split (s): "
        + ", ".join(label for label, _, _ in PARTS)
    )
    for label in labels:
        split = ", ".join(f"{splits[label][p]:.1f}" for p, _, _ in PARTS) if label in splits else "(not profiled)"
        print(f"{label:8s} {median[label]:14.1f} {1000 * median[label] / args.trials:13.0f}   {split}")
    saved = 1 - median["alone"] / median["shared"]
    print(f"without the constant liar: {saved:.1%} less wall time")
    saved_sync = 1 - median["alone"] / median["fsync"]
    print(
        f"with synchronous=NORMAL rather than FULL: {saved_sync:.1%} less wall time "
        f"({1000 * (median['fsync'] - median['alone']) / args.trials:.0f} ms a trial)"
    )
    write_result(
        "trial_overhead",
        {"trials": args.trials, "epochs": args.epochs, "rows": args.rows, "repeats": args.repeats, "quick": args.quick},
        {
            "wall_s": walls,
            "median_wall_s": median,
            "saved_share": saved,
            "saved_share_synchronous_normal": saved_sync,
            "profiled_split_s": splits,
            "same_candidates": True,
        },
    )


if __name__ == "__main__":
    main()
