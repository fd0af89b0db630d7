"""What `pareto` prints under the front: how the search spent its trials, the hypervolume and
the task affinities (helpers, not a command)."""

from __future__ import annotations

from typing import Any, Sequence

import optuna

from mtl_search.cli.common import format_value, print_rows_table
from mtl_search.errors import is_whole
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord

# hypervolume history points shown on one line
HISTORY_POINTS = 6


def objective_cells(row: dict[str, Any], objectives: Sequence[Any]) -> list[str]:
    """One cell per objective: the value, and "; mean ± std (n=seeds)" after it when the trial
    was refined (the value, the search's own run, is what chose the front)."""
    refined = (row.get("refined") or {}).get("validation", {})
    cells = []
    for objective in objectives:
        stats = refined.get(objective.task, {}).get(objective.metric) if objective.kind == "task" else None
        value = format_value(row["values"][objective.name])
        cells.append(f"{value}; {stats['mean']:.4g} ± {stats['std']:.2g} (n={stats['n']})" if stats else value)
    return cells


def print_search_summary(study: optuna.Study) -> None:
    for line in search_summary_lines(study):
        print(line)
    affinity = StudyRecord.read(study).affinity
    if affinity:
        print_affinity(affinity, study=study)


def search_summary_lines(study: optuna.Study) -> list[str]:
    """Trials by outcome (pruned, infeasible) and the normalised hypervolume with its history."""
    from mtl_search.analysis.outcomes import outcome_line, stopped_lines, trial_outcomes
    from mtl_search.search.hypervolume import REFERENCE, hypervolume_history

    trials = study.get_trials(deepcopy=False)
    outcomes = trial_outcomes(trials)
    lines = [f"trials: {outcome_line(outcomes)}"] + [f"  {line}" for line in stopped_lines(outcomes)]
    training = population_line(trials)
    if training:
        lines.append(training)
    seed = StudyRecord.read(study).seed
    if seed is not None:
        lines.append(
            f"seed: {seed} (the study's: its trials train with it, and each run samples from a seed derived from it)"
        )
    history = hypervolume_history(study)
    if history:
        step = max(1, len(history) // HISTORY_POINTS)
        shown = history[step - 1 :: step]
        if shown[-1] is not history[-1]:
            shown.append(history[-1])
        trail = ", ".join(f"#{h['trial']}: {h['hypervolume']:.4g}" for h in shown)
        lines.append(
            f"hypervolume: {history[-1]['hypervolume']:.4g} (objectives min-max normalised over complete feasible trials, "
            f"reference {REFERENCE} each, max {REFERENCE ** len(study.directions):.4g}); by trial: {trail}"
        )
    return lines


def population_line(trials: Sequence[optuna.trial.FrozenTrial]) -> str | None:
    """How the trials that trained to the end were trained: fused with others in one
    computation (``population_size`` above 1, see search/population.py) or alone; None when no
    trial recorded it (a study from before population training)."""
    sizes = [
        size for trial in trials if is_whole(size := TrialRecord.read(trial, only=("population_size",)).population_size)
    ]
    if not sizes:
        return None
    fused = [size for size in sizes if size > 1]
    groups = ""
    if fused:
        spread = str(min(fused)) if min(fused) == max(fused) else f"{min(fused)} to {max(fused)}"
        groups = f" (groups of {spread})"
    return f"trained to the end: {len(fused)} fused with others{groups}, {len(sizes) - len(fused)} alone"


def print_affinity(record: dict[str, Any], title: str = "task affinity", study: optuna.Study | None = None) -> None:
    from mtl_search.search.affinity import AFFINITY_SCALES, affinity_cells, grouping_order

    tasks = record["tasks"]
    print_rows_table(title, ["task", *tasks], [[task, *cells] for task, cells in zip(tasks, affinity_cells(record))])
    print(f"measure: {record['method']}")
    print(AFFINITY_SCALES.get(record.get("measure", "easy_hard"), ""))
    if record.get("chain"):
        print("grouping order: " + grouping_order(record, "->"))
    if study is not None:
        for line in seeded_lines(study):
            print(line)


def seeded_lines(study: optuna.Study) -> list[str]:
    """The seeded trees' trials and how each did: "  #0 complete, on the front: tree ..."."""
    from mtl_search.search.affinity import seeded_rows

    rows = seeded_rows(study)
    if not rows:
        return []
    return [f"seeded trees: the study's first {len(rows)} trial{'s' if len(rows) > 1 else ''}, fully shared first"] + [
        f"  #{number} {state}: {summary}" for number, state, summary in rows
    ]
