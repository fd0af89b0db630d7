"""CPU time per training step of the expert families (MMoE, PLE, DSelect-k, AdaTT), beside a shared trunk.

Each family is built at a comparable size (experts of one 32-wide block, 16-wide towers) on the
synthetic benchmark with static weights; only the body changes between rows. Validation and
test splits are tiny, so an epoch is almost all training; the time of an epoch after the first
is divided by its batches. Repeats are interleaved across families so that a slow spell of a
shared machine hits every row alike; the median is reported.

    python benchmarks/expert_family_cost.py            # full run
    python benchmarks/expert_family_cost.py --quick    # a smoke run of a few seconds

Writes ``benchmarks/results/expert_family_cost.json`` (``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _record import command, machine, result_path  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import torch

from mtl_search.data.synthetic import make_synthetic
from mtl_search.training import train_candidate

WIDTH = 32
# (label, architecture spec less the towers); the trunk is the reference row
FAMILIES: list[tuple[str, dict[str, Any]]] = [
    ("shared trunk (tree)", {"family": "tree", "widths": [WIDTH]}),
    ("mmoe, 4 experts", {"family": "mmoe", "experts": 4, "expert_widths": [WIDTH]}),
    ("ple, 1 level, s2 t1", {"family": "ple", "levels": 1, "shared_experts": 2, "task_experts": 1}),
    ("dselect_k, 4 experts, k=2", {"family": "dselect_k", "experts": 4, "k": 2, "gamma": 1.0}),
    (
        "dselect_k, 4 experts, k=2, entropy",
        {"family": "dselect_k", "experts": 4, "k": 2, "gamma": 1.0, "entropy_weight": 0.01},
    ),
    ("adatt, 1 level, t1 s1", {"family": "adatt", "levels": 1, "task_experts": 1, "shared_experts": 1}),
    ("adatt, 2 levels, t1 s1", {"family": "adatt", "levels": 2, "task_experts": 1, "shared_experts": 1}),
]


def architecture(spec: dict[str, Any], task_names: list[str]) -> dict[str, Any]:
    spec = dict(spec, tower={"widths": [16]})
    if spec["family"] == "tree":
        spec["groups"] = [[task_names]]
    elif "expert_widths" not in spec:
        spec["expert_widths"] = [WIDTH]
    return spec


def step_seconds(data, spec: dict[str, Any], args: argparse.Namespace) -> float:
    """Median CPU seconds of one training step, over the epochs after the first (model building, warm-up)."""
    candidate = {
        "architecture": architecture(spec, data.task_names),
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": 1e-3, "seed": 0},
        "loss_weighting": {"method": "static"},
    }
    ticks: list[float] = []
    train_candidate(data, candidate, device="cpu", on_epoch=lambda *_: ticks.append(time.process_time()))
    batches = math.ceil(len(data.train.targets[data.task_names[0]]) / args.batch_size)
    return statistics.median(later - earlier for earlier, later in zip(ticks, ticks[1:])) / batches


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    results = []
    for n_tasks in args.tasks:
        data = make_synthetic(
            dim=args.dim, rows=args.rows, tasks=n_tasks, seed=0, validation_fraction=0.02, test_fraction=0.02
        )
        times: dict[str, list[float]] = {label: [] for label, _ in FAMILIES}
        for _ in range(args.repeats):
            for label, spec in FAMILIES:
                times[label].append(step_seconds(data, spec, args))
        baseline = statistics.median(times[FAMILIES[0][0]])
        for label in times:
            median = statistics.median(times[label])
            results.append(
                {
                    "family": label,
                    "spec": dict(FAMILIES)[label],
                    "tasks": n_tasks,
                    "ms_per_step": 1000 * median,
                    "relative_to_trunk": median / baseline,
                    "repeats_s": times[label],
                }
            )
    return {"command": command(), "machine": machine(), "settings": vars(args) | {"output": None}, "results": results}


def table(report: dict[str, Any]) -> str:
    tasks = sorted({r["tasks"] for r in report["results"]})
    lines = ["| family | " + " | ".join(f"{t} tasks: ms/step | x trunk" for t in tasks) + " |"]
    lines.append("|---" * (1 + 2 * len(tasks)) + "|")
    for label, _ in FAMILIES:
        cells = []
        for t in tasks:
            row = next(r for r in report["results"] if r["family"] == label and r["tasks"] == t)
            cells += [f"{row['ms_per_step']:.2f}", f"{row['relative_to_trunk']:.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one repeat, two tasks (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="trainings per family (default: 3)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per training; the first is not timed")
    parser.add_argument("--rows", type=int, default=12000, help="synthetic rows (default: 12000)")
    parser.add_argument("--dim", type=int, default=100, help="input features (default: 100)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4], help="task counts (default: 2 4)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size (default: 256)")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    args.output = args.output or result_path("expert_family_cost", args.quick)
    if args.quick:
        args.repeats, args.epochs, args.rows, args.tasks = 1, 3, 3000, [2]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(report["command"], "threads=1 clock=cpu")
    print(table(report))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
