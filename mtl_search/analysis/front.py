"""The Pareto front of a study as plain rows (for tables, JSON, CSV, reports and export)."""

from __future__ import annotations

from typing import Any

import optuna

from mtl_search.learned import summarize_learned
from mtl_search.search.study import pareto_trials, study_objectives, study_tasks


def conditional_notes(study: optuna.Study) -> list[str]:
    """One line per entire-space (given=) task: its metrics are over the rows where its condition holds."""
    return [f"{task.name}: metrics of P({task.name} = 1 | {task.given} = 1), on the rows where {task.given} = 1 (given={task.given})"
            for task in study_tasks(study) if task.given is not None]


def trial_row(trial: optuna.trial.FrozenTrial, objective_names: list[str]) -> dict[str, Any]:
    candidate = trial.user_attrs.get("candidate", {})
    architecture = candidate.get("architecture", {})
    values = dict(zip(objective_names, trial.values)) if trial.values else {}
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": values,
        "family": architecture.get("family"),
        "summary": trial.user_attrs.get("summary", ""),
        "n_params": trial.user_attrs.get("n_params"),
        "params": trial.params,
        "architecture": architecture,
        "training": candidate.get("training", {}),
        # the epoch whose weights the trial returns (training.checkpoint); None before the option
        "kept_epoch": trial.user_attrs.get("kept_epoch"),
        "loss_weighting": candidate.get("loss_weighting", {}),
        "test": trial.user_attrs.get("test", {}),
        "sharing": trial.user_attrs.get("sharing", {}),
        "costs": trial.user_attrs.get("costs", {}),
        # what training learned beyond the spec (e.g. task correlations of the relationship prior)
        "learned": summarize_learned(trial.user_attrs.get("sharing") or {}),
    }


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    names = [o.name for o in study_objectives(study)]
    from mtl_search.analysis.refine import refined_record

    attrs = study.user_attrs
    rows = [trial_row(trial, names) for trial in pareto_trials(study)]
    for row in rows:
        # mean and std over training seeds, when `mtl-search refine` ran (analysis/refine.py)
        row["refined"] = refined_record(study, row["number"], attrs)
    return rows
