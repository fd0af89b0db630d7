"""Choosing one trial of a study to export.

Every rule but ``--trial`` looks at the Pareto front only, with each objective min-max
normalised over the front so that 1 is the front's best value and 0 its worst (an objective
on which all front trials tie counts as 1 for all):

- ``knee``: the trial closest (Euclidean) to the utopia point, where every normalised
  objective is 1: the most balanced compromise;
- ``best:TASK``: the best value of TASK's primary (first) metric;
- ``weights:TASK=W,...``: the largest weighted sum of normalised objectives. A key is a task
  (its primary metric) or an objective name such as ``income/logloss``; objectives not named
  weigh 0.

Ties go to the lowest trial number.
"""

from __future__ import annotations

import math

import optuna

from mtl_search.errors import UserError, is_whole
from mtl_search.records.objective import Objective
from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import pareto_trials, stop_reason, study_objectives


def find_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number``, which must have completed (failed and pruned ones have no trained model)."""
    if not is_whole(number):
        raise UserError(f"--trial {number!r}: a trial number is a whole number (an int), got {type(number).__name__}")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise UserError(
            f"--trial {number}: study {study.study_name!r} has no such trial (trials 0 to {len(trials) - 1})"
        )
    trial = trials[number]
    repeat_of = TrialRecord.read(trial, only=("repeat_of",)).repeat_of
    if repeat_of in trials:  # a repeat was never trained: its original was
        trial = trials[repeat_of]
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise UserError(refusal(trial, study))
    return trial


STATE_WORDS = {"FAIL": "failed", "PRUNED": "was pruned", "RUNNING": "is still running", "WAITING": "is waiting to run"}


def refusal(trial: optuna.trial.FrozenTrial, study: optuna.Study) -> str:
    """One line: why a trial that did not complete cannot be exported, with its reason."""
    reason = stop_reason(trial, study.get_trials(deepcopy=False))
    because = f" ({reason})" if reason else ""
    study_name = study.study_name
    return (
        f"trial {trial.number} {STATE_WORDS.get(trial.state.name, 'is ' + trial.state.name.lower())}{because}; "
        f"export a COMPLETE trial (see mtl-search pareto {study_name})"
    )


def pick_trial(study: optuna.Study, rule: str) -> optuna.trial.FrozenTrial:
    """The trial of the study's front that ``rule`` picks.

    ``knee``: the trial closest to the ideal point once every objective is scaled to [0, 1]
    over the front; ``best:TASK``: the best value of that task's primary metric;
    ``weights:TASK=W,...``: the highest weighted sum of the scaled objectives. A study
    without a completed trial, or a rule that names no objective, is a one-line
    :class:`~mtl_search.errors.UserError`.
    """
    objectives = study_objectives(study)
    front = pareto_trials(study)
    if not front:
        raise UserError(f"--pick {rule}: study {study.study_name!r} has no completed trial")
    kind, _, argument = rule.partition(":")
    if kind == "knee" and not argument:
        scores = normalised(front, objectives)
        distances = [math.sqrt(sum((1.0 - v) ** 2 for v in row)) for row in scores]
        return front[distances.index(min(distances))]
    if kind == "best" and argument:
        index = primary_index(objectives, argument, rule)
        values = [t.values[index] for t in front]
        best = max(values) if objectives[index].direction == "maximize" else min(values)
        return front[values.index(best)]
    if kind == "weights" and argument:
        weights = parse_weights(argument, objectives, rule)
        scores = normalised(front, objectives)
        totals = [sum(w * v for w, v in zip(weights, row)) for row in scores]
        return front[totals.index(max(totals))]
    raise UserError(f"--pick {rule!r}: expected knee, best:TASK or weights:TASK=W,...")


def normalised(front: list[optuna.trial.FrozenTrial], objectives: list[Objective]) -> list[list[float]]:
    """Each front trial's objectives scaled to [0, 1] over the front, 1 = best."""
    columns = list(zip(*(t.values for t in front)))
    rows = [[0.0] * len(objectives) for _ in front]
    for j, (objective, column) in enumerate(zip(objectives, columns)):
        low, high = min(column), max(column)
        for i, value in enumerate(column):
            if high == low:
                rows[i][j] = 1.0
            else:
                share = (value - low) / (high - low)
                rows[i][j] = share if objective.direction == "maximize" else 1.0 - share
    return rows


def primary_index(objectives: list[Objective], task: str, rule: str) -> int:
    for index, objective in enumerate(objectives):
        if objective.task == task:
            return index
    tasks = ", ".join(dict.fromkeys(o.task for o in objectives if o.task))  # cost objectives belong to no task
    raise UserError(f"--pick {rule}: no task {task!r} in this study (tasks: {tasks})")


def parse_weights(text: str, objectives: list[Objective], rule: str) -> list[float]:
    weights = [0.0] * len(objectives)
    names = {o.name: i for i, o in enumerate(objectives)}
    given: set[int] = set()
    for pair in text.split(","):
        key, sep, raw = pair.partition("=")
        key = key.strip()
        try:
            weight = float(raw)
        except ValueError:
            weight = math.nan
        if not sep or not key or not math.isfinite(weight) or weight < 0:
            raise UserError(f"--pick {rule}: {pair!r} is not TASK=WEIGHT with a weight >= 0")
        index = names[key] if key in names else primary_index(objectives, key, rule)
        if index in given:  # which of two weights was meant cannot be guessed
            raise UserError(f"--pick {rule}: {objectives[index].name} is weighted twice")
        given.add(index)
        weights[index] = weight
    if not any(weights):
        raise UserError(f"--pick {rule}: give at least one positive weight")
    return weights
