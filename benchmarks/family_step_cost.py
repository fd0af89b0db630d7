"""CPU time of one training step per architecture family, relative to a shared trunk.

Every family but ``stem``, which reads tables only (``benchmarks/tabular_family_cost.py`` times
it against a tree and an MMoE on a table).

Each family is built at a comparable size (2 layers of 64 on the synthetic data's 100 features,
16-wide towers, static weights) and timed over training steps: forward pass, backward pass,
Adam step, on batches of ``--batch-size`` rows. Families are interleaved over repeats, so that
a slow spell of a shared machine hits each alike; the median per step is reported.

    python benchmarks/family_step_cost.py                      # every family listed below, 2 and 4 tasks
    python benchmarks/family_step_cost.py --families mtan ltb  # the shared trunk and these
    python benchmarks/family_step_cost.py --quick              # a smoke run of a few seconds

Writes ``benchmarks/results/family_step_cost.json`` (``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from _record import command, machine, result_path  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import torch

from mtl_search.architectures import build_model
from mtl_search.data.synthetic import make_synthetic

WIDTH, DEPTH = 64, 2

# family -> spec for the task names: the sizes one would compare
SPECS: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "shared trunk": lambda tasks: {"family": "tree", "widths": [WIDTH] * DEPTH, "groups": [[tasks]] * DEPTH},
    "tree (separate)": lambda tasks: {
        "family": "tree",
        "widths": [WIDTH] * DEPTH,
        "groups": [[[t] for t in tasks]] * DEPTH,
    },
    "mmoe": lambda tasks: {"family": "mmoe", "experts": 4, "expert_widths": [WIDTH] * DEPTH},
    "ple": lambda tasks: {
        "family": "ple",
        "levels": 1,
        "shared_experts": 2,
        "task_experts": 1,
        "expert_widths": [WIDTH],
    },
    "dselect_k": lambda tasks: {
        "family": "dselect_k",
        "experts": 4,
        "k": 2,
        "expert_widths": [WIDTH] * DEPTH,
        "gamma": 1.0,
    },
    "adatt": lambda tasks: {
        "family": "adatt",
        "levels": 1,
        "task_experts": 1,
        "shared_experts": 1,
        "expert_widths": [WIDTH] * DEPTH,
    },
    "cross_stitch": lambda tasks: {
        "family": "cross_stitch",
        "widths": [WIDTH] * DEPTH,
        "units": [0],
        "alpha_self": 0.9,
    },
    "sluice": lambda tasks: {
        "family": "sluice",
        "depth": DEPTH,
        "width": WIDTH,
        "subspaces": 2,
        "orthogonality_weight": 0.01,
        "alpha_self": 0.9,
        "beta_init": "last",
    },
    "hierarchy": lambda tasks: {
        "family": "hierarchy",
        "widths": [WIDTH] * DEPTH,
        "head_depths": {t: 1 + i % DEPTH for i, t in enumerate(tasks)},
    },
    "mtan": lambda tasks: {"family": "mtan", "widths": [WIDTH] * DEPTH, "attention_width": 16},
    "ltb": lambda tasks: {
        "family": "ltb",
        "widths": [WIDTH] * DEPTH,
        "nodes": [3] * DEPTH,
        "initial_temperature": 1.0,
        "annealing": 0.8,
    },
    "aitm": lambda tasks: {"family": "aitm", "widths": [WIDTH] * DEPTH, "attention_width": 32},
}


def step_seconds(spec: dict[str, Any], data, batch_size: int, steps: int, clock: Callable[[], float]) -> float:
    """Median seconds of ``steps`` training steps (after two unmeasured ones)."""
    torch.manual_seed(0)
    model = build_model(spec | {"tower": {"widths": [16]}}, data.input_schema, data.tasks)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows = data.train.rows(torch.arange(batch_size))
    times = []
    for step in range(steps + 2):
        started = clock()
        outputs = model(rows.inputs)
        loss = sum(torch.nn.functional.mse_loss(outputs[n].squeeze(1), rows.targets[n].float()) for n in outputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 2:
            times.append(clock() - started)
    return statistics.median(times)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    chosen = [name for name in SPECS if name == "shared trunk" or not args.families or name in args.families]
    results = []
    for n_tasks in args.tasks:
        data = make_synthetic(dim=100, rows=max(4 * args.batch_size, 400), tasks=n_tasks, seed=0)
        times: dict[str, list[float]] = {name: [] for name in chosen}
        for _ in range(args.repeats):
            for name in chosen:
                times[name].append(step_seconds(SPECS[name](data.task_names), data, args.batch_size, args.steps, clock))
        baseline = statistics.median(times["shared trunk"])
        for name in chosen:
            median = statistics.median(times[name])
            results.append(
                {
                    "family": name,
                    "spec": SPECS[name](data.task_names),
                    "tasks": n_tasks,
                    "ms_per_step": 1000 * median,
                    "relative_to_shared_trunk": median / baseline,
                }
            )
    return {"command": command(), "machine": machine(), "settings": vars(args), "results": results}


def table(report: dict[str, Any]) -> str:
    tasks = sorted({r["tasks"] for r in report["results"]})
    lines = ["| family | " + " | ".join(f"{t} tasks: ms/step | x trunk" for t in tasks) + " |"]
    lines.append("|---" * (1 + 2 * len(tasks)) + "|")
    for name in dict.fromkeys(r["family"] for r in report["results"]):
        cells = []
        for t in tasks:
            row = next(r for r in report["results"] if r["family"] == name and r["tasks"] == t)
            cells += [f"{row['ms_per_step']:.2f}", f"{row['relative_to_shared_trunk']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=[], help="families besides the shared trunk (default: all)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu", help="process CPU time or elapsed time")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps and repeats")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = 3, 1
    report = run(args)
    path = args.output or result_path("family_step_cost", args.quick)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nwritten to {path}; rerun with: {report['command']}")


if __name__ == "__main__":
    main()
