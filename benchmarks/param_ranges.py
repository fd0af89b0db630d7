"""Parameter counts per family in the bundled search spaces, from randomly sampled candidates.

Capacity ranges should overlap so that families meet at similar parameter counts and the
Pareto front compares structures, not sizes. Usage::

    python benchmarks/param_ranges.py [--samples 200] [--dim 100] [--tasks 2] [SPACE ...]
"""

from __future__ import annotations

import argparse
import statistics

import optuna

from mtl_search.architectures import build_model
from mtl_search.search.space import load_space
from mtl_search.tasks import Task

DEFAULT_SPACES = ("default", "branching", "experts", "soft_sharing")


def parameter_counts(space_name: str, family: str, samples: int, dim: int, n_tasks: int) -> list[int]:
    space = load_space(space_name)
    only = space.model_copy(update={"families": {family: space.families[family]}})
    tasks = [Task(name=f"task{i + 1}", kind="regression") for i in range(n_tasks)]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    counts = []
    for _ in range(samples):
        trial = study.ask()
        spec = only.sample(trial, [t.name for t in tasks])["architecture"]
        model = build_model(spec, {"kind": "vector", "size": dim}, tasks)
        counts.append(sum(p.numel() for p in model.parameters()))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spaces", nargs="*", default=list(DEFAULT_SPACES))
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--dim", type=int, default=100, help="input features (the synthetic default: 100)")
    parser.add_argument("--tasks", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"{'space':<14}{'family':<14}{'min':>9}{'p10':>9}{'median':>9}{'p90':>9}{'max':>9}")
    for space_name in args.spaces:
        for family in load_space(space_name).families:
            counts = sorted(parameter_counts(space_name, family, args.samples, args.dim, args.tasks))
            p10, p90 = counts[len(counts) // 10], counts[(9 * len(counts)) // 10]
            print(
                f"{space_name:<14}{family:<14}{counts[0]:>9}{p10:>9}{int(statistics.median(counts)):>9}{p90:>9}{counts[-1]:>9}"
            )


if __name__ == "__main__":
    main()
