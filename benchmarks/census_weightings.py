#!/usr/bin/env python3
"""Every loss weighting searched on census, against single-task networks and LightGBM.

One real search (``mtl-search run --space all_weightings --baselines``, a fresh process) on
census group 1 (income and never married; a seeded sample of ``--rows`` rows of the census
file), then the study is read back: the front with each point's Delta-m (validation, and on
test) and, per weighting method, how many trials it got, its best Delta-m and that trial's
test change, and its CPU cost per epoch relative to static weights in the same search.

Pruning is off so that every trial trains to the end and has a test score; the random
start-up phase is ``--startup-trials`` long so that most methods are tried before TPE
narrows down. The gradient methods need the ``jd`` and ``jd-cvxpy`` extras and LightGBM the
``gbdt`` extra (``pip install -e '.[all]'``).

    python benchmarks/census_weightings.py                  # 60 trials, 20,000 rows, seed 0
    python benchmarks/census_weightings.py --quick          # a smoke run: 3,000 rows, 6 trials, 2 epochs
"""

from __future__ import annotations

import argparse
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

from mtl_search.analysis.front import trial_row  # noqa: E402
from mtl_search.analysis.references import row_transfer  # noqa: E402
from mtl_search.records.references import ReferenceRecord  # noqa: E402
from mtl_search.records.study import StudyRecord  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="census rows sampled (default: 20000)")
    parser.add_argument("--trials", type=int, default=60, help="trial budget (default: 60)")
    parser.add_argument("--startup-trials", type=int, default=20, help="random start-up trials (default: 20)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the space's)")
    parser.add_argument("--seed", type=int, default=0)
    add_result_options(parser, "census_weightings", "a smoke run: 3,000 rows, 6 trials, 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.trials, args.startup_trials, args.epochs = 3000, 6, 6, 2
    return args


def run_search(args: argparse.Namespace, folder: Path) -> tuple[str, float, float]:
    storage = f"sqlite:///{folder / 'census_weightings.db'}"
    command = [
        sys.executable, "-m", "mtl_search", "run", "--data", "census", "--data-file", str(CENSUS_FILE),
        "--data-option", f"rows={args.rows}", "--space", "all_weightings", "--trials", str(args.trials),
        "--startup-trials", str(args.startup_trials), "--seed", str(args.seed), "--no-prune", "--baselines",
        "--quiet", "--threads", "1", "--storage", storage, "--study-name", "census_weightings",
        "--artifacts", str(folder / "artifacts"),
    ]  # fmt: skip
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"the search failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return storage, cpu, wall


def summarise(storage: str) -> dict[str, Any]:
    study = optuna.load_study(study_name="census_weightings", storage=storage)
    objectives = StudyRecord.read(study).objectives
    names = [objective.name for objective in objectives]
    record = ReferenceRecord.read(study)
    front_numbers = {trial.number for trial in study.best_trials}
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        row = trial_row(trial, names)
        rows.append(
            {
                "number": trial.number,
                "method": row["loss_weighting"].get("method"),
                "values": row["values"],
                "test": row["test"],
                "on_front": trial.number in front_numbers,
                **row_transfer(row, record, objectives),
            }
        )
    references = {}
    if record is not None:
        for kind, models in (("single-task", record.single_task), ("lightgbm", record.gbdt)):
            references[kind] = {
                task: {"validation": m.validation, "test": m.test} for task, m in (models or {}).items()
            }
    return {"objectives": names, "trials": rows, "references": references}


def method_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row)
    table = []
    for method, group in sorted(by_method.items()):
        known = [row for row in group if row["delta_m"] is not None]
        best = max(known, key=lambda row: row["delta_m"]) if known else None
        table.append(
            {
                "method": method,
                "trials": len(group),
                "on_front": sum(row["on_front"] for row in group),
                "best_delta_m": best["delta_m"] if best else None,
                "its_test_delta_m": best["delta_m_test"] if best else None,
                "median_delta_m": statistics.median(row["delta_m"] for row in known) if known else None,
            }
        )
    return table


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not CENSUS_FILE.is_file():
        sys.exit(f"census file not found: {CENSUS_FILE} (see ../shared/data/README.md)")
    with tempfile.TemporaryDirectory(prefix="census_weightings_") as folder:
        storage, cpu, wall = run_search(args, Path(folder))
        summary = summarise(storage)
    rows = summary["trials"]
    table = method_table(rows)
    print(
        f"census group 1, {args.rows} rows, {args.trials} trials, seed {args.seed}: {cpu:.0f} CPU s, {wall:.0f} s wall"
    )
    for kind, models in summary["references"].items():
        print(f"  {kind}: " + ", ".join(f"{task} test {m['test']}" for task, m in models.items()))
    print("\nfront (validation objectives; Delta-m % against the single-task networks, validation / test):")
    for row in sorted((row for row in rows if row["on_front"]), key=lambda row: row["number"]):
        values = ", ".join(f"{name} {value:.4f}" for name, value in row["values"].items())
        tests = ", ".join(f"{task} {metrics['auc']:.4f}" for task, metrics in row["test"].items() if "auc" in metrics)
        negative = f"  negative transfer: {', '.join(row['negative_transfer'])}" if row["negative_transfer"] else ""
        print(f"  #{row['number']:<3} {row['method']:<12} validation {values}; test AUC {tests}; "
              f"dm {percent(row['delta_m'])} / {percent(row['delta_m_test'])}{negative}")  # fmt: skip
    print("\nper method (best Delta-m on validation, that trial's Delta-m on test, median over its trials):")
    print(f"  {'method':<12} {'trials':>6} {'front':>5} {'best dm':>8} {'its test':>8} {'median':>8}")
    for entry in table:
        print(
            f"  {entry['method']:<12} {entry['trials']:>6} {entry['on_front']:>5} {percent(entry['best_delta_m']):>8} "
            f"{percent(entry['its_test_delta_m']):>8} {percent(entry['median_delta_m']):>8}"
        )
    settings = {key: value for key, value in vars(args).items() if key != "name"}
    write_result(args.name, settings, {"methods": table, **summary}, cpu_seconds=cpu, wall_seconds=wall)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
