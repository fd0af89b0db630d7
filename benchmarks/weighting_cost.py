"""Time per training epoch of each loss-weighting method, relative to static weights.

The architecture is fixed (a shared trunk of two 64-wide blocks, then 16-wide towers) and
the data is the synthetic benchmark, so the only thing that changes between rows is the
weighting. Validation and test splits are kept tiny so that an epoch is almost all
training. Repeats are interleaved across methods (static, uncertainty, ..., static, ...)
so that a slow spell of a shared machine hits every method alike; the median is reported.

    python benchmarks/weighting_cost.py            # full run
    python benchmarks/weighting_cost.py --quick    # a smoke run of a few seconds

Writes ``benchmarks/results/weighting_cost.json`` (``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _record import result_path  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import torch

from mtl_search.data.synthetic import make_synthetic
from mtl_search.training import resolve_device, train_candidate


# (label, loss_weighting config); "mgda (parameters)" is exact MGDA, for comparison with MGDA-UB
METHODS: list[tuple[str, dict[str, Any]]] = [
    ("static", {"method": "static"}),
    ("uncertainty", {"method": "uncertainty"}),
    ("dwa", {"method": "dwa", "temperature": 2.0}),
    ("gradnorm", {"method": "gradnorm", "alpha": 1.5}),
    ("pcgrad", {"method": "pcgrad"}),
    ("mgda (UB, representation)", {"method": "mgda"}),
    ("mgda (parameters)", {"method": "mgda", "gradients": "parameters"}),
    ("famo", {"method": "famo"}),
    ("rlw", {"method": "rlw"}),
    ("stch", {"method": "stch"}),
    ("gls", {"method": "gls"}),
    ("db_mtl", {"method": "db_mtl"}),
    ("gradvac", {"method": "gradvac"}),
    ("upgrad", {"method": "upgrad"}),
    ("dualproj", {"method": "dualproj"}),
    ("aligned_mtl", {"method": "aligned_mtl"}),
    ("graddrop", {"method": "graddrop"}),
    ("imtl", {"method": "imtl"}),
    ("config", {"method": "config"}),
    ("cagrad", {"method": "cagrad"}),
    ("nash_mtl", {"method": "nash_mtl"}),
]


def chosen_methods(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """The rows to time: every method, or static and those ``--methods`` names."""
    if not args.methods:
        return METHODS
    return [(label, weighting) for label, weighting in METHODS if weighting["method"] in {"static", *args.methods}]


def shared_trunk(task_names: list[str], width: int, depth: int, tower: int) -> dict[str, Any]:
    return {"family": "tree", "widths": [width] * depth, "groups": [[task_names]] * depth, "tower": {"widths": [tower]}}


def epoch_seconds(data, weighting: dict[str, Any], args: argparse.Namespace, device: torch.device) -> float:
    """Median seconds of the epochs after the first (which pays for model building and warm-up).

    ``--clock cpu`` counts this process's CPU time: with one thread it is what the epoch
    costs, whatever else the machine runs meanwhile. ``wall`` is elapsed time (use it on a GPU,
    where the CPU time of a waiting host means nothing).
    """
    candidate = {
        "architecture": shared_trunk(data.task_names, args.width, args.depth, args.tower),
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": 1e-3, "seed": 0},
        "loss_weighting": weighting,
    }
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    ticks = []
    train_candidate(data, candidate, device=device, on_epoch=lambda epoch, scores, record: ticks.append(clock()))
    return statistics.median(later - earlier for earlier, later in zip(ticks, ticks[1:]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    results = []
    for n_tasks in args.tasks:
        data = make_synthetic(
            dim=args.dim, rows=args.rows, tasks=n_tasks, seed=0, validation_fraction=0.02, test_fraction=0.02
        )
        times: dict[str, list[float]] = {label: [] for label, _ in chosen_methods(args)}
        for _ in range(args.repeats):
            for label, weighting in chosen_methods(args):
                times[label].append(epoch_seconds(data, weighting, args, device))
        baseline = statistics.median(times["static"])
        for label, weighting in chosen_methods(args):
            median = statistics.median(times[label])
            results.append(
                {
                    "method": label,
                    "config": weighting,
                    "tasks": n_tasks,
                    "seconds_per_epoch": median,
                    "relative_to_static": median / baseline,
                    "repeats": times[label],
                }
            )
    return {
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "clock": args.clock,
        "settings": {k: v for k, v in vars(args).items() if k not in ("output",)},
        "train_rows": int(round(args.rows * 0.96)),
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    tasks = sorted({r["tasks"] for r in report["results"]})
    header = "| method | " + " | ".join(f"{t} tasks: ms/epoch | x static" for t in tasks) + " |"
    lines = [header, "|---" * (1 + 2 * len(tasks)) + "|"]
    for label in dict.fromkeys(r["method"] for r in report["results"]):
        cells = []
        for t in tasks:
            row = next(r for r in report["results"] if r["method"] == label and r["tasks"] == t)
            cells += [f"{1000 * row['seconds_per_epoch']:.0f}", f"{row['relative_to_static']:.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one repeat, two tasks (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="trainings per method (default: 3)")
    parser.add_argument(
        "--epochs", type=int, default=4, help="epochs per training; the first is not timed (default: 4)"
    )
    parser.add_argument("--rows", type=int, default=12000, help="synthetic rows (default: 12000, as in the MMoE paper)")
    parser.add_argument("--dim", type=int, default=100, help="input features (default: 100)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4], help="task counts to time (default: 2 4)")
    parser.add_argument("--width", type=int, default=64, help="trunk block width (default: 64)")
    parser.add_argument("--depth", type=int, default=2, help="trunk blocks (default: 2)")
    parser.add_argument("--tower", type=int, default=16, help="tower hidden width (default: 16)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size (default: 256)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default: 1, steadier on a shared machine)"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--methods", nargs="+", default=None, help="time only these methods, beside static (default: every method)"
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default=None,
        help="cpu: process CPU time (default on the CPU), wall: elapsed time (default on a GPU)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON file to write (default: benchmarks/results/[quick/]weighting_cost.json)",
    )
    args = parser.parse_args(argv)
    args.output = args.output or result_path("weighting_cost", args.quick)
    if args.clock is None:
        args.clock = "cpu" if args.device == "cpu" else "wall"
    if args.quick:
        args.repeats, args.epochs, args.rows, args.tasks = 1, 3, 3000, [2]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['finished']}  {report['command']}  device={report['device']} torch={report['torch']} threads={report['threads']} clock={report['clock']}"
    )
    print(table(report))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
