"""The Pareto front of a study as plain rows (for tables, JSON, CSV, reports and export)."""

from __future__ import annotations

from typing import Any

import optuna

from mtl_search.analysis.references import row_transfer
from mtl_search.learned import summarize_learned
from mtl_search.records.references import ReferenceRecord
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import pareto_trials, study_objectives, study_tasks


def conditional_notes(study: optuna.Study) -> list[str]:
    """One line per entire-space (given=) task: its metrics are over the rows where its condition holds."""
    return [
        f"{task.name}: metrics of P({task.name} = 1 | {task.given} = 1), on the rows where {task.given} = 1 (given={task.given})"
        for task in study_tasks(study)
        if task.given is not None
    ]


def trial_row(trial: optuna.trial.FrozenTrial, objective_names: list[str]) -> dict[str, Any]:
    record = TrialRecord.read(trial)
    candidate = record.candidate
    values = dict(zip(objective_names, trial.values)) if trial.values else {}
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": values,
        "family": candidate.family,
        "summary": record.summary,
        "n_params": record.n_params,
        "params": trial.params,
        "architecture": candidate.architecture,
        "training": candidate.training,
        # the epoch whose weights the trial returns (training.checkpoint)
        "kept_epoch": record.kept_epoch,
        "loss_weighting": candidate.loss_weighting,
        "test": record.test,
        "sharing": record.sharing,
        "costs": record.costs,
        # what training learned beyond the spec (e.g. task correlations of the relationship prior)
        "learned": summarize_learned(record.sharing),
    }


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    objectives = study_objectives(study)
    names = [o.name for o in objectives]
    from mtl_search.analysis.refine import refined_record

    stored = StudyRecord.read(study)
    references = ReferenceRecord.read(study)
    rows = [trial_row(trial, names) for trial in pareto_trials(study)]
    for row in rows:
        # mean and std over training seeds, when `mtl-search refine` ran (analysis/refine.py)
        row["refined"] = refined_record(study, row["number"], stored)
        # Delta-m against the single-task networks, when `mtl-search baselines` ran (analysis/references.py)
        row.update(row_transfer(row, references, objectives))
    return rows
