"""Hypervolume of a study's front: one number for "how good is the front", over time.

Normalisation (documented in docs/explanation/pruning.md): every objective is turned into "minimise"
(maximised values negated) and min-max scaled to [0, 1] with bounds taken from the
COMPLETE, feasible trials (the best value seen maps to 0, the worst to 1). The reference
point is 1.1 in every objective, so a trial at the worst value of one objective still adds
volume. The largest possible value is therefore 1.1 ** m for m objectives. An objective
whose values never varied is scaled by 1, so it adds no volume differences.

Bounds can be passed in to compare several studies on one scale (as the benchmark does).
The volume itself is exact: a sweep in 2-D, recursive slicing along the last objective
for more (fine for the tens of front points a search produces).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import optuna

from mtl_search.records.attributes import HYPERVOLUME_ATTR
from mtl_search.search.costs import is_feasible

REFERENCE = 1.1


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float]) -> float:
    """Exact volume dominated by ``points`` (minimised) and bounded by ``reference``.

    Points not strictly better than the reference in every objective add nothing.
    """
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, ref.size)
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return _volume(non_dominated(pts), ref)


def epsilon_indicator(
    front: Sequence[Sequence[float]] | np.ndarray, approximation: Sequence[Sequence[float]] | np.ndarray
) -> float:
    """Multiplicative epsilon indicator: the smallest ``e`` such that every non-dominated
    point of ``front`` has a point of ``approximation`` at most ``1 + e`` times as large
    on every objective (Zitzler et al., 2003).

    Both are minimised and must be positive (losses, errors 1 - AUC, costs; a value of
    exactly 0, such as a perfect AUC, raises ValueError). 0 means the
    approximation covers the front; 0.05 means its worst-covered point is 5 % away. It
    answers "what did a cheaper search (for example a pruned one) lose?" in the units of
    the objectives, where a hypervolume difference depends on the normalisation box.
    """
    reference, other = np.asarray(front, dtype=float), np.asarray(approximation, dtype=float)
    if len(reference) == 0:
        return 0.0
    if len(other) == 0:
        return float("inf")
    if np.any(reference <= 0) or np.any(other <= 0):
        raise ValueError("the multiplicative epsilon indicator needs positive values to minimise")
    ratios = np.max(other[None, :, :] / non_dominated(reference)[:, None, :], axis=2)  # (front point, other point)
    return float(np.max(np.min(ratios, axis=1)) - 1.0)


def non_dominated(points: np.ndarray) -> np.ndarray:
    """The distinct rows of ``points`` (minimised) that no other row dominates."""
    points = np.unique(points, axis=0)
    dominated = np.array([np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1)) for p in points], dtype=bool)
    return points[~dominated]


def _volume(points: np.ndarray, ref: np.ndarray) -> float:
    if ref.size == 1:
        return float(ref[0] - points[:, 0].min())
    if ref.size == 2:
        # sweep by the first objective; each point adds the strip up to the previous best second value
        order = points[np.argsort(points[:, 0])]
        volume, best_second = 0.0, ref[1]
        for x, y in order:
            if y < best_second:
                volume += (ref[0] - x) * (best_second - y)
                best_second = y
        return float(volume)
    # slice along the last objective: between consecutive levels the dominated region is the
    # (m-1)-dimensional volume of the points at or below that level
    order = points[np.argsort(points[:, -1])]
    volume = 0.0
    for i in range(len(order)):
        upper = order[i + 1, -1] if i + 1 < len(order) else ref[-1]
        height = upper - order[i, -1]
        if height > 0:
            volume += height * _volume(non_dominated(order[: i + 1, :-1]), ref[:-1])
    return float(volume)


def minimised_values(study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial]) -> np.ndarray:
    """The trials' objective values as rows to minimise (maximised objectives negated)."""
    signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
    if not trials:
        return np.empty((0, len(signs)))
    return np.asarray([t.values for t in trials], dtype=float) * signs


def scored_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE, feasible trials with finite values, by trial number (what the front is made of)."""
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return sorted(
        (t for t in trials if is_feasible(t) and t.values is not None and np.all(np.isfinite(t.values))),
        key=lambda t: t.number,
    )


def objective_bounds(studies: Sequence[optuna.Study]) -> tuple[list[float], list[float]]:
    """Per objective (minimised) the best and worst value over the scored trials of ``studies``."""
    values = np.vstack([minimised_values(s, scored_trials(s)) for s in studies])
    if len(values) == 0:
        raise ValueError("no complete, feasible trial to take bounds from")
    return values.min(axis=0).tolist(), values.max(axis=0).tolist()


def front_bounds(studies: Sequence[optuna.Study]) -> tuple[list[float], list[float]]:
    """Per objective (minimised) the ideal and the nadir of the combined front of ``studies``.

    Tighter than :func:`objective_bounds`: one very bad trial does not squeeze every front
    into a corner of the unit box, so differences between good fronts stay visible. Points
    worse than the nadir (plus the reference margin) add no volume.
    """
    values = np.vstack([minimised_values(s, scored_trials(s)) for s in studies])
    if len(values) == 0:
        raise ValueError("no complete, feasible trial to take bounds from")
    front = non_dominated(values)
    return front.min(axis=0).tolist(), front.max(axis=0).tolist()


def normalise(values: np.ndarray, bounds: tuple[Sequence[float], Sequence[float]]) -> np.ndarray:
    low, high = np.asarray(bounds[0], dtype=float), np.asarray(bounds[1], dtype=float)
    span = np.where(high > low, high - low, 1.0)
    return (values - low) / span


def hypervolume_history(
    study: optuna.Study, bounds: tuple[Sequence[float], Sequence[float]] | None = None
) -> list[dict[str, Any]]:
    """The front's normalised hypervolume after each finished trial.

    Returns ``[{"trial": number, "hypervolume": value}, ...]`` in trial-number order, one
    entry per finished trial (COMPLETE, PRUNED or FAIL; only complete, feasible trials add
    volume). ``bounds`` = (best, worst) per minimised objective; None takes them from this
    study (:func:`objective_bounds`). Empty when no trial completed.
    """
    scored = scored_trials(study)
    if not scored:
        return []
    bounds = bounds or objective_bounds([study])
    reference = [REFERENCE] * len(study.directions)
    points = normalise(minimised_values(study, scored), bounds)
    row_of = {t.number: i for i, t in enumerate(scored)}
    finished = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished()), key=lambda t: t.number)
    history, front, last = [], np.empty((0, len(reference))), 0.0
    for trial in finished:
        if trial.number in row_of:
            point = points[row_of[trial.number]]
            # a point weakly dominated by the front so far changes nothing: skip the recount
            if not np.any(np.all(front <= point, axis=1)):
                front = non_dominated(np.vstack([front, point]))
                last = hypervolume(front, reference)
        history.append({"trial": trial.number, "hypervolume": last})
    return history


def front_hypervolume(study: optuna.Study, bounds: tuple[Sequence[float], Sequence[float]] | None = None) -> float:
    """The normalised hypervolume of the whole front (0.0 without a complete trial)."""
    history = hypervolume_history(study, bounds)
    return history[-1]["hypervolume"] if history else 0.0


def store_hypervolume(study: optuna.Study) -> dict[str, Any]:
    """Compute the history and keep it on the study (user attribute ``hypervolume``) for reports."""
    scored = scored_trials(study)
    record: dict[str, Any] = {
        "reference": REFERENCE,
        "normalisation": "minimise, min-max over complete feasible trials",
        "bounds": list(objective_bounds([study])) if scored else None,
        "history": hypervolume_history(study),
    }
    study.set_user_attr(HYPERVOLUME_ATTR, record)
    return record
