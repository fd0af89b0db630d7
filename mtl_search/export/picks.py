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

Ties go to the lowest trial number. Once ``refine`` has retrained every front trial with more
seeds, the rules read the seed means, and :func:`explain_pick` says how often the pick would
stay the same within the seed noise; before that it says the pick rests on one seed.
"""

from __future__ import annotations

import math
import statistics

import optuna

from mtl_search.errors import UserError, is_number, is_whole
from mtl_search.records.objective import Objective
from mtl_search.records.study import StudyRecord
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
    ``weights:TASK=W,...``: the highest weighted sum of the scaled objectives. When ``refine``
    has retrained every front trial with more seeds, the rule reads their seed means (see
    :func:`front_values`). A study without a completed trial, or a rule that names no
    objective, is a one-line :class:`~mtl_search.errors.UserError`.
    """
    objectives = study_objectives(study)
    front = pareto_trials(study)
    if not front:
        raise UserError(f"--pick {rule}: study {study.study_name!r} has no completed trial")
    means, _ = front_values(study, front, objectives)
    return front[pick_index(means, objectives, rule)]


def front_values(
    study: optuna.Study, front: list[optuna.trial.FrozenTrial], objectives: list[Objective]
) -> tuple[list[list[float]], list[list[float]] | None]:
    """Each front trial's objective values and, when ``refine`` retrained every front trial,
    their standard deviations over seeds: (seed means, seed sds); else (the trial's own
    values, None). Costs do not vary with the seed (sd 0)."""
    refined = StudyRecord.read(study).refined
    if not front or any(t.number not in refined for t in front):
        return [list(t.values) for t in front], None
    means, sds = [], []
    for trial in front:
        row_means, row_sds = [], []
        for objective, value in zip(objectives, trial.values):
            summary = refined_summary(refined[trial.number], objective)
            if summary is None or not is_number(summary.get("mean")):
                row_means.append(value)
                row_sds.append(0.0)
            else:
                row_means.append(float(summary["mean"]))
                row_sds.append(float(summary.get("std") or 0.0))
        means.append(row_means)
        sds.append(row_sds)
    return means, sds


def pick_index(values: list[list[float]], objectives: list[Objective], rule: str) -> int:
    """The index of the row of ``values`` (one per front trial) that ``rule`` picks."""
    kind, _, argument = rule.partition(":")
    if kind == "knee" and not argument:
        scores = normalised(values, objectives)
        distances = [math.sqrt(sum((1.0 - v) ** 2 for v in row)) for row in scores]
        return distances.index(min(distances))
    if kind == "best" and argument:
        index = primary_index(objectives, argument, rule)
        column = [row[index] for row in values]
        best = max(column) if objectives[index].direction == "maximize" else min(column)
        return column.index(best)
    if kind == "weights" and argument:
        weights = parse_weights(argument, objectives, rule)
        scores = normalised(values, objectives)
        totals = [sum(w * v for w, v in zip(weights, row)) for row in scores]
        return totals.index(max(totals))
    raise UserError(f"--pick {rule!r}: expected knee, best:TASK or weights:TASK=W,...")


# redraws of the front within its seed noise, to say how often the rule picks the same trial
REDRAWS = 1000


def explain_pick(study: optuna.Study, picked: optuna.trial.FrozenTrial, rule: str) -> str:
    """One line on how far the pick of ``rule`` can be trusted.

    After ``refine`` retrained every front trial: the pick rests on seed means, and the share of
    redraws of every front trial's metrics (normal, with its seed mean and sd) in which the rule
    picks the same trial. Otherwise the pick rests on one seed; when some trials were refined,
    their seed noise is compared with the gaps between the front's points.
    """
    objectives = study_objectives(study)
    front = pareto_trials(study)
    means, sds = front_values(study, front, objectives)
    if sds is not None:
        seeds = min(len(StudyRecord.read(study).refined[t.number].get("seeds") or []) for t in front)
        held = pick_stability(means, sds, objectives, rule, front.index(picked))
        return (
            f"pick {rule}: trial {picked.number} on the seed means of {seeds} training seeds (refine); "
            f"it stays the pick in {held:.0%} of {REDRAWS} redraws of the front within its seed noise"
        )
    line = f"pick {rule}: trial {picked.number} rests on one training seed"
    noise = seed_noise(study, objectives)
    if not noise:
        return line + f"; the noise between seeds is not measured (mtl-search refine {study.study_name} measures it)"
    gaps = []
    for index, objective in enumerate(objectives):
        if objective.name not in noise or noise[objective.name] <= 0 or len(front) < 2:
            continue
        column = sorted(row[index] for row in means)
        gap = statistics.median(b - a for a, b in zip(column, column[1:]))
        gaps.append(f"{objective.name} {gap / noise[objective.name]:.2g}")
    refined = len(StudyRecord.read(study).refined)
    return (
        line + f"; neighbouring front points lie a median of {', '.join(gaps) or 'no'} seed sds apart "
        f"(seed noise measured by refine on {refined} trial(s)): closer than about 1 sd, the order of "
        f"the front can change with the seed (mtl-search refine {study.study_name} settles it)"
    )


def pick_stability(
    means: list[list[float]], sds: list[list[float]], objectives: list[Objective], rule: str, picked: int
) -> float:
    """The share of ``REDRAWS`` normal redraws of the front (``means``, ``sds``) in which
    ``rule`` picks row ``picked`` again (seeded: the same study gives the same share)."""
    import numpy as np

    generator = np.random.default_rng(0)
    centre, spread = np.asarray(means, dtype=float), np.asarray(sds, dtype=float)
    draws = centre + spread * generator.standard_normal((REDRAWS, *centre.shape))
    same = sum(pick_index(draw.tolist(), objectives, rule) == picked for draw in draws)
    return same / REDRAWS


def refined_summary(record: dict, objective: Objective) -> dict | None:
    """``{mean, std, n}`` of a task objective's validation metric in a refine ``record``; None
    for a cost objective (it does not vary with the seed) or a metric the record lacks."""
    if objective.kind != "task":
        return None
    summary = ((record.get("validation") or {}).get(objective.task) or {}).get(objective.metric)
    return summary if isinstance(summary, dict) else None


def seed_noise(study: optuna.Study, objectives: list[Objective]) -> dict[str, float]:
    """Median seed sd of each task objective over the study's refined trials (empty: none)."""
    spreads: dict[str, list[float]] = {}
    for record in StudyRecord.read(study).refined.values():
        for objective in objectives:
            summary = refined_summary(record, objective)
            if summary is not None and is_number(summary.get("std")):
                spreads.setdefault(objective.name, []).append(float(summary["std"]))
    return {name: statistics.median(values) for name, values in spreads.items()}


def normalised(values: list[list[float]], objectives: list[Objective]) -> list[list[float]]:
    """Each row's objectives (one row per front trial) scaled to [0, 1] over the rows, 1 = best."""
    columns = list(zip(*values))
    rows = [[0.0] * len(objectives) for _ in values]
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
