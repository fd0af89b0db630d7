"""Replay pruning settings on a finished, unpruned study: epochs saved against front lost.

A live pruned search and an unpruned one sample different trials after the first pruning,
so their fronts differ by sampler noise as well as by pruning. A replay has no such noise:
the study's complete trials are taken in trial order, and for each setting the shipped rule
(:func:`mtl_search.search.pruning.prune_verdict`, as in the live pruner) decides after every
recorded epoch whether the trial would have been stopped, with the trials kept so far as
its references.
The kept trials form the replayed front; the study's own front is the truth.

What it reports per setting: the share of epochs that would have been trained, the trials
of the true front that would have been stopped, and the epsilon indicator of the replayed
front against the true one (:func:`mtl_search.search.hypervolume.epsilon_indicator`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Sequence

import numpy as np
import optuna

from mtl_search.errors import UserError
from mtl_search.search.hypervolume import non_dominated, epsilon_indicator
from mtl_search.search.pruning import (
    PruningSettings, Vector, cumulative_steps, learning_curve, prune_verdict, settings_from_section, vector_at_budget,
)
from mtl_search.search.space import PruningSpace
from mtl_search.search.study import study_objectives

Curve = list[Vector]
# (trial number, minimised vector per epoch) or (..., optimiser steps at the end of each epoch or None)
TrialCurve = tuple[int, Curve] | tuple[int, Curve, list[int] | None]


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    settings: PruningSettings
    epoch_share: float  # epochs the setting trains / epochs the study trained
    front_stopped: int  # trials of the true front the setting would have stopped
    epsilon: float  # of the kept front against the true one (NaN when values are not positive)

    def to_data(self) -> dict[str, Any]:
        return {"settings": dataclasses.asdict(self.settings), "epoch_share": self.epoch_share,
                "front_stopped": self.front_stopped, "epsilon": self.epsilon}


def with_best_kept(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A recorded history as if the trial had kept its best epoch (``training.checkpoint:
    best``): each epoch's ``kept_epoch`` is the best-scoring epoch so far."""
    from mtl_search.training.trainer import checkpoint_score, replaces_kept

    rebuilt, kept, kept_score = [], 0, math.inf
    for entry in history:
        score = checkpoint_score(entry.get("validation", {}))
        if not kept or replaces_kept(score, kept_score):
            kept, kept_score = int(entry["epoch"]), score
        rebuilt.append(dict(entry) | {"kept_epoch": kept})
    return rebuilt


def study_curves(study: optuna.Study, *, rebuild_best: bool = False) -> list[TrialCurve]:
    """(trial number, minimised objective vector per epoch, steps per epoch or None) of the
    complete trials that can be replayed: feasible, not repeats, with a full per-epoch
    history (as the live pruner).
    ``rebuild_best``: the curves the trials would have had keeping their best epoch (from
    each epoch's own validation, so it works on studies run with ``checkpoint: last``)."""
    objectives = study_objectives(study)
    curves = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if trial.user_attrs.get("repeat_of") is not None:
            continue
        recorded = trial.user_attrs.get("history", [])
        curve = learning_curve(objectives, trial, with_best_kept(recorded) if rebuild_best else None)
        if curve and sorted(curve) == list(range(1, len(curve) + 1)):  # every epoch, in order
            steps = cumulative_steps(recorded)
            curves.append((trial.number, [curve[epoch] for epoch in sorted(curve)], None if steps is None else [steps[e] for e in sorted(curve)]))
    return sorted(curves)


def replay(curves: Sequence[TrialCurve], settings: PruningSettings) -> tuple[list[int], int]:
    """The numbers of the trials ``settings`` keeps, and the epochs it trains."""
    if settings.budget == "steps" and curves and not has_steps(curves):
        raise UserError("pruning budget steps: some trials have no step counts (recorded since 2026-11-21); replay them with budget epochs")
    kept: list[tuple[int, dict[int, Vector], dict[int, int] | None]] = []
    epochs = 0

    def finals() -> list[tuple[int, Vector]]:
        return [(n, c[len(c)]) for n, c, _ in kept]

    for number, curve, steps in ((*entry, None)[:3] for entry in curves):
        total = len(curve)
        stopped_at = None
        for epoch in range(1, total + 1):
            at_steps = steps[epoch - 1] if steps else None
            references = [(n, v) for n, c, s in kept if (v := vector_at_budget(c, s, epoch, at_steps, settings.budget)) is not None]
            if prune_verdict(curve[epoch - 1], curve[:epoch], references, finals, epoch, total, settings) is not None:
                stopped_at = epoch
                break
        if stopped_at is None:
            kept.append((number, dict(enumerate(curve, start=1)), None if steps is None else dict(enumerate(steps, start=1))))
            epochs += total
        else:
            epochs += stopped_at
    return [number for number, _, _ in kept], epochs


def replay_settings(curves: Sequence[TrialCurve], settings: PruningSettings) -> ReplayResult:
    finals = {entry[0]: entry[1][-1] for entry in curves}
    all_points = np.array(list(finals.values()))
    front = {tuple(p) for p in non_dominated(all_points)}
    kept, epochs = replay(curves, settings)
    stopped = set(finals) - set(kept)
    front_stopped = sum(1 for number in stopped if tuple(finals[number]) in front)
    try:
        epsilon = epsilon_indicator(all_points, np.array([finals[n] for n in kept]))
    except ValueError:
        epsilon = math.nan
    return ReplayResult(settings, epochs / sum(len(entry[1]) for entry in curves), front_stopped, epsilon)


def settings_grid(base: PruningSettings, budgets: Sequence[str] = ()) -> list[PruningSettings]:
    """``base`` first, then, in its budget and in each of ``budgets``: the median rule with
    its warm-up (1, 2) and fraction (0, 0.25, 0.5, 0.75) varied, and the projected rule with
    its defaults and with a fixed warm-up of 2 epochs (``warmup_fraction: 0``)."""
    median = base if base.rule == "median" else PruningSettings(min_completed_trials=base.min_completed_trials)
    projected = PruningSettings.projected(min_completed_trials=base.min_completed_trials)
    grid = [base]
    for budget in dict.fromkeys([base.budget, *budgets]):
        candidates = [dataclasses.replace(median, enabled=True, warmup_epochs=warmup, warmup_fraction=0.0, min_dominator_fraction=fraction,
                                          budget=budget) for warmup, fraction in itertools.product((1, 2), (0.0, 0.25, 0.5, 0.75))]
        candidates += [dataclasses.replace(projected, budget=budget), dataclasses.replace(projected, warmup_fraction=0.0, budget=budget)]
        grid += [candidate for candidate in candidates if candidate not in grid]
    return grid


def has_steps(curves: Sequence[TrialCurve]) -> bool:
    """Whether every curve has its optimiser steps (recorded since 2026-11-21): only then can
    the ``steps`` budget be replayed."""
    return bool(curves) and all(len(entry) > 2 and entry[2] is not None for entry in curves)


def stored_settings(study: optuna.Study) -> PruningSettings:
    """The pruning settings stored with the study's space (the defaults when absent),
    switched on: a study run with ``--no-prune`` is the one worth replaying."""
    section = (study.user_attrs.get("mtl_search", {}).get("space") or {}).get("pruning") or {}
    # a space stored before pruning.budget existed was pruned at equal epochs
    return settings_from_section(PruningSpace.model_validate({"budget": "epochs"} | section))
