"""Does the affinity measure find the synthetic generator's task groups?

The synthetic data with ``groups=2`` has tasks in two groups of related tasks (task1 and
task2, task3 and task4 for 4 tasks). Affinity seeding splits the fully shared group first
into the two halves whose tasks agree most; this script measures the affinity with each
measure and several seeds (the seed of the short shared network) and reports whether that
first split is the generator's grouping.

    python benchmarks/affinity_groups.py                  # generator defaults, correlation 0.5 and 0.9, 5 seeds
    python benchmarks/affinity_groups.py --rows 600 --dim 20
    python benchmarks/affinity_groups.py --quick          # 600 rows, 20 features, 2 seeds

Writes ``benchmarks/results/affinity_groups.json`` (``--name``) and prints a table.
"""

from __future__ import annotations

import argparse

from _record import add_result_options, write_result  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

import torch

from mtl_search.data import load_data
from mtl_search.search.affinity import AFFINITY_MEASURES, AffinitySettings, measure_affinity, partition_chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows (default: the generator's)")
    parser.add_argument("--dim", type=int, default=None, help="synthetic features (default: the generator's)")
    parser.add_argument("--correlations", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument("--seeds", type=int, default=5)
    add_result_options(parser, "affinity_groups", quick="600 rows, 20 features, 2 seeds")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.dim, args.seeds = 600, 20, 2
    torch.set_num_threads(1)
    half = args.tasks // 2
    truth = sorted([[f"task{i + 1}" for i in range(half)], [f"task{i + 1}" for i in range(half, args.tasks)]])
    results = []
    print(f"{'correlation':>11} {'measure':10} {'found':>6}  first split per seed")
    for correlation in args.correlations:
        options = {"tasks": str(args.tasks), "groups": "2", "correlation": str(correlation)}
        options |= {key: str(value) for key, value in (("rows", args.rows), ("dim", args.dim)) if value is not None}
        data = load_data("synthetic", options)
        for measure in AFFINITY_MEASURES:
            splits = []
            for seed in range(args.seeds):
                first_split = partition_chain(measure_affinity(data, AffinitySettings(measure=measure, seed=seed)))[1]
                splits.append(sorted(sorted(group) for group in first_split))
            found = sum(split == truth for split in splits)
            results.append(
                {
                    "correlation": correlation,
                    "measure": measure,
                    "found": found,
                    "seeds": args.seeds,
                    "first_splits": splits,
                }
            )
            shown = ", ".join(
                "right" if split == truth else "/".join("+".join(t.removeprefix("task") for t in g) for g in split)
                for split in splits
            )
            print(f"{correlation:11.2f} {measure:10} {found:>3}/{args.seeds}  {shown}")
    write_result(args.name, vars(args), results)


if __name__ == "__main__":
    main()
