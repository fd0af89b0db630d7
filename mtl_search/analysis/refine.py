"""Honest fronts: retrain the front's trials with more seeds and record mean and spread.

One training run is one draw: a trial can sit on the front because its seed was lucky.
:func:`refine_front` retrains each front trial's exact candidate (from its ``candidate``
user attribute) with ``seeds`` further training seeds and records, per task and metric, the
mean, the standard deviation (sample, ddof=1) and the number of runs, on validation and on
test, the original run included.

The front itself is not re-chosen: selection stays with the validation metrics of the search
and the test numbers are only reported. Optuna does not let finished trials change, so the
record lives on the study, one user attribute per trial (``refined:<trial number>``); read
it with :func:`refined_record`.
"""

from __future__ import annotations

import copy
import statistics
from typing import TYPE_CHECKING, Any, Callable, Sequence

import optuna

from mtl_search.errors import TrialDiverged
from mtl_search.records.attributes import REFINED_PREFIX
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import pareto_trials

if TYPE_CHECKING:  # the training side; `pareto` reads refined records without it
    import torch

    from mtl_search.data.base import MultiTaskData


def refined_record(study: optuna.Study, number: int, stored: StudyRecord | None = None) -> dict[str, Any] | None:
    """The refinement of trial ``number`` (None when it was not refined); ``stored``: the
    study's record when the caller has read it already."""
    return (stored if stored is not None else StudyRecord.read(study)).refined.get(number)


def summarise_runs(runs: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{task: {metric: {mean, std, n}}}`` over runs of ``{task: {metric: value}}``."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for task, metrics in runs[0].items():
        for metric in metrics:
            values = [run[task][metric] for run in runs if metric in run.get(task, {})]
            summary.setdefault(task, {})[metric] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values),
            }
    return summary


def refine_trial(
    trial: optuna.trial.FrozenTrial,
    data: MultiTaskData,
    seeds: Sequence[int],
    *,
    device: torch.device | str | None = None,
    stem: torch.nn.Module | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Retrain the trial's candidate with each of ``seeds``; the record of all runs.

    The seeds train as one population where the candidate fuses (they share its structure and
    differ only in seed), else one after another. A seed whose training diverges is a result,
    not an error: it is listed under ``diverged`` (seed and reason) and the summaries cover the
    seeds that trained; any other failure is raised. ``precision`` replaces the candidate's
    ``training.precision`` (None: the trial's own); the record's ``precision`` says which the
    seeds trained in, when not fp32.
    """
    from mtl_search.training.population import train_population

    record = TrialRecord.read(trial)
    candidate = record.candidate.to_dict()
    original_seed = record.candidate.seed
    variants = []
    for seed in seeds:
        variant = copy.deepcopy(candidate)
        variant.setdefault("training", {})["seed"] = int(seed)
        if precision is not None:
            variant["training"]["precision"] = precision
        variants.append(variant)
    results = train_population(data, variants, device=device, stem=stem)
    failed = [r for r in results if isinstance(r, BaseException) and not isinstance(r, TrialDiverged)]
    if failed:
        raise failed[0]
    trained = [(int(seed), r) for seed, r in zip(seeds, results) if not isinstance(r, BaseException)]
    diverged = [(int(seed), r) for seed, r in zip(seeds, results) if isinstance(r, TrialDiverged)]
    validation_runs = [record.validation, *(result.validation for _, result in trained)]
    test_runs = [record.test, *(result.test for _, result in trained)]
    refined: dict[str, Any] = {
        "seeds": [original_seed, *[seed for seed, _ in trained]],
        "validation": summarise_runs(validation_runs),
        "test": summarise_runs(test_runs) if all(test_runs) else {},
    }
    if diverged:
        refined["diverged"] = [{"seed": seed, "reason": str(error)} for seed, error in diverged]
    trained_in = precision or trial_precision(trial)
    if trained_in != "fp32":  # fp32 records keep the format they always had
        refined["precision"] = trained_in
    return refined


def trial_precision(trial: optuna.trial.FrozenTrial) -> str:
    """The training precision the search trained ``trial`` in."""
    return str(TrialRecord.read(trial, only=("candidate",)).candidate.training.get("precision", "fp32"))


def refine_front(
    study: optuna.Study,
    data: MultiTaskData,
    seeds: int,
    *,
    device: torch.device | str | None = None,
    stem: torch.nn.Module | None = None,
    on_trial: Callable[[int, dict[str, Any], bool], None] | None = None,
    precision: str | None = None,
) -> dict[int, dict[str, Any]]:
    """Refine every front trial with ``seeds`` more training seeds; store and return the records.

    The extra seeds follow the trial's own (seed + 1 ... seed + ``seeds``), so refining
    again with more seeds repeats the first runs rather than drawing new ones. A trial
    already refined with at least as many seeds keeps its record and is not retrained (a
    smaller ``seeds`` would only throw runs away), unless it trained in another precision than
    ``precision`` asks for (None: each trial's own). ``on_trial(number, record, retrained)``.
    """
    records = {}
    for trial in pareto_trials(study):
        earlier = refined_record(study, trial.number)
        wanted = precision or trial_precision(trial)
        if (
            earlier is not None
            and len(earlier.get("seeds", [])) + len(earlier.get("diverged", [])) >= seeds + 1
            and earlier.get("precision", "fp32") == wanted
        ):
            records[trial.number] = earlier
            if on_trial is not None:
                on_trial(trial.number, earlier, False)
            continue
        base = TrialRecord.read(trial, only=("candidate",)).candidate.seed
        record = refine_trial(
            trial, data, [base + k for k in range(1, seeds + 1)], device=device, stem=stem, precision=precision
        )
        study.set_user_attr(f"{REFINED_PREFIX}{trial.number}", record)
        records[trial.number] = record
        if on_trial is not None:
            on_trial(trial.number, record, True)
    return records
