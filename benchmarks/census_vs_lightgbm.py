"""Census group 1 (income, never married): LightGBM per task against mtl-search's tabular space.

Both read the census source's split of the UCI file (seed 0: half test, a tenth validation,
the rest trains) in the same run:

- **LightGBM**, one model per task, untuned: the 7 numeric columns and the 32 categorical
  columns' codes as plain numeric features, at most 2,000 trees, early stopping after 100
  rounds without a better validation log-loss, seeded.
- **mtl-search**, one search per seed with the bundled ``tabular`` space (numeric encodings
  and learning-rate schedules searched with the sharing structure) on quantile-normalised
  numeric columns (``scaling=quantile``); TPE seeded with the seed, pruning on. Each front
  point (chosen on validation) is scored on the test split.

Prints the test AUC per task and the CPU seconds of each (this process's user + system time,
``time.process_time``), and the machine's load. One torch thread and one LightGBM thread.

    python benchmarks/census_vs_lightgbm.py                       # 3 seeds, 12 trials each
    python benchmarks/census_vs_lightgbm.py --quick               # 6,000 rows, 1 seed, 3 trials of 2 epochs
    python benchmarks/census_vs_lightgbm.py --seeds 5 --trials 20
    python benchmarks/census_vs_lightgbm.py --space benchmarks/spaces/tabular_regularised.yaml --name NAME

Needs LightGBM (``pip install lightgbm``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from _record import CENSUS_FILE, add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtl_search.analysis.front import front_rows  # noqa: E402
from mtl_search.data.census import make_census  # noqa: E402
from mtl_search.search.runner import SearchSettings, run_search  # noqa: E402
from mtl_search.search.space import load_space  # noqa: E402
from sklearn.metrics import roc_auc_score as roc_auc  # noqa: E402

TASKS = ("income", "never_married")


def features(split) -> np.ndarray:  # noqa: ANN001
    """Numeric values and categorical codes side by side, as LightGBM's plain features."""
    return np.concatenate([split.inputs["numeric"].numpy(), split.inputs["categorical"].numpy()], axis=1)


def run_lightgbm(data, seed: int, threads: int) -> dict:  # noqa: ANN001
    import lightgbm

    # newer LightGBM renames eval_set to eval_X/eval_y; the old name works in every version this runs with
    warnings.filterwarnings("ignore", message=".*'eval_set' is deprecated.*")

    train, validation, test = (features(s) for s in (data.train, data.validation, data.test))
    result = {"test_auc": {}, "trees": {}}
    started = time.process_time()
    for task in TASKS:
        model = lightgbm.LGBMClassifier(n_estimators=2000, random_state=seed, n_jobs=threads, verbose=-1)
        model.fit(
            train,
            data.train.targets[task].numpy(),
            eval_set=[(validation, data.validation.targets[task].numpy())],
            callbacks=[lightgbm.early_stopping(100, verbose=False)],
        )
        scores = model.predict_proba(test, num_iteration=model.best_iteration_)[:, 1]
        result["test_auc"][task] = float(roc_auc(data.test.targets[task].numpy(), scores))
        result["trees"][task] = int(model.best_iteration_)
    result["cpu_seconds"] = time.process_time() - started
    return result


def run_network_search(data, space, seed: int, trials: int, epochs: int | None, folder: str) -> dict:  # noqa: ANN001
    settings = SearchSettings(
        f"census-tabular-{seed}",
        storage=f"sqlite:///{folder}/search-{seed}.db",
        seed=seed,
        n_trials=trials,
        epochs=epochs,
        device="cpu",
        save_artifacts=False,
        threads=1,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.process_time()
    study = run_search(data, space, settings)
    cpu = time.process_time() - started
    front = [
        {
            "trial": row["number"],
            "validation_auc": {task: row["values"][f"{task}/auc"] for task in TASKS},
            "test_auc": {task: row["test"][task]["auc"] for task in TASKS},
            "stem": row["architecture"].get("stem"),
            "schedule": row["training"].get("schedule", "constant"),
            "widths": row["architecture"].get("widths"),
            "groups": row["architecture"].get("groups"),
            "ensemble_members": (row["architecture"].get("ensemble") or {}).get("members", 1),
        }
        for row in front_rows(study)
    ]
    states = [t.state.name for t in study.trials]
    return {
        "seed": seed,
        "cpu_seconds": cpu,
        "trials": len(states),
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "front": front,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-file", default=str(CENSUS_FILE))
    parser.add_argument("--seeds", type=int, default=None, help="searches (and LightGBM seeds); default 3, 1 quick")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first search (default 0)")
    parser.add_argument("--trials", type=int, default=None, help="trials per search; default 12, 3 quick")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial; default: the space's (16)")
    parser.add_argument("--threads", type=int, default=1, help="torch and LightGBM threads (default 1)")
    parser.add_argument("--space", default="tabular", help="space file or bundled space (default: tabular)")
    add_result_options(parser, "census_vs_lightgbm", "6,000 rows, one seed, 3 trials of 2 epochs (a smoke run)")
    args = parser.parse_args(argv)
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        print("LightGBM is not installed: pip install lightgbm", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    seeds = args.seeds or (1 if args.quick else 3)
    trials = args.trials or (3 if args.quick else 12)
    epochs = args.epochs or (2 if args.quick else None)
    rows = 6000 if args.quick else 0
    load_before = os.getloadavg()
    wall_started = time.perf_counter()

    space = load_space(args.space)
    data = make_census(args.data_file, rows=rows, scaling="quantile")
    print(
        f"census group 1: {len(data.train)} train / {len(data.validation)} validation / {len(data.test)} test rows; "
        f"load average at start {load_before[0]:.1f} on {os.cpu_count()} cores"
    )
    seed_list = range(args.first_seed, args.first_seed + seeds)
    boosted = [run_lightgbm(data, seed, args.threads) for seed in seed_list]
    with tempfile.TemporaryDirectory() as folder:
        searches = []
        for seed in seed_list:
            searches.append(run_network_search(data, space, seed, trials, epochs, folder))
            last = searches[-1]
            print(
                f"search seed {seed}: {last['complete']} complete, {last['pruned']} pruned, "
                f"{len(last['front'])} on the front, {last['cpu_seconds']:.0f} CPU s",
                flush=True,
            )

    reference = {task: statistics.fmean(b["test_auc"][task] for b in boosted) for task in TASKS}
    print(f"\n{'test AUC':44s} {'income':>8s} {'never married':>14s} {'CPU s':>8s}")
    for seed, result in zip(seed_list, boosted):
        auc = result["test_auc"]
        trees = "/".join(str(result["trees"][t]) for t in TASKS)
        print(
            f"{f'LightGBM seed {seed} ({trees} trees)':44s} {auc['income']:8.4f} {auc['never_married']:14.4f} "
            f"{result['cpu_seconds']:8.1f}"
        )
    reached = []
    for search in searches:
        best = {task: max(point["test_auc"][task] for point in search["front"]) for task in TASKS}
        both = [p for p in search["front"] if all(p["test_auc"][t] >= reference[t] for t in TASKS)]
        reached.append(bool(both))
        label = f"search seed {search['seed']}: best front test AUC per task"
        print(f"{label:44s} {best['income']:8.4f} {best['never_married']:14.4f} {search['cpu_seconds']:8.1f}")
        for point in search["front"]:
            auc = point["test_auc"]
            encoding = (point["stem"] or {}).get("numeric_encoding", "none")
            width = (point["stem"] or {}).get("embedding_dim", "default")
            members = point.get("ensemble_members", 1)
            label = f"  trial {point['trial']} ({encoding}, {point['schedule']}, emb {width}, x{members})"
            print(f"{label:44s} {auc['income']:8.4f} {auc['never_married']:14.4f}")
    print(
        f"\nfront point at or above LightGBM's mean test AUC on both tasks: {sum(reached)} of {len(searches)} searches"
    )
    load_after = os.getloadavg()
    print(
        f"wall {time.perf_counter() - wall_started:.0f} s; load average at the end {load_after[0]:.1f} "
        f"(1 min), {load_after[2]:.1f} (15 min) on {os.cpu_count()} cores"
    )
    write_result(
        args.name,
        {
            "quick": args.quick,
            "rows": rows or "all",
            "seeds": seeds,
            "first_seed": args.first_seed,
            "trials": trials,
            "epochs": epochs or space.training.epochs,
            "threads": args.threads,
            "space": args.space,
            "space_content": space.to_data(),
            "scaling": "quantile",
        },
        {
            "lightgbm": boosted,
            "searches": searches,
            "lightgbm_mean_test_auc": reference,
            "searches_reaching_lightgbm": sum(reached),
        },
        load_average={"start": list(load_before), "end": list(load_after)},
        wall_seconds=time.perf_counter() - wall_started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
