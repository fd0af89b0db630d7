"""Replay pruning settings on a finished, unpruned study: epochs saved against front lost.

A live pruned search and an unpruned one sample different trials after the first pruning,
so their fronts differ by sampler noise as well as by pruning. A replay has no such noise:
the study's complete trials are taken in trial order, and for each setting the shipped rule
(:func:`mtl_search.search.pruning.prune_verdict`, as in the live pruner) decides after every
recorded epoch whether the trial would have been stopped, with the trials kept so far as
its references.
The kept trials form the replayed front; the study's own front is the truth.

What it reports per setting: the share of epochs that would have been trained, the share
of the trials' time that would have been left (:class:`StudyTiming`: the untrained epochs'
recorded seconds taken off, every other cost kept), the trials of the true front
that would have been stopped, and the epsilon indicator of the replayed front against the
true one (:func:`mtl_search.search.hypervolume.epsilon_indicator`).

And a floor (:func:`foresight_epochs`): a pruner that knew where each trial will end, and
stopped a trial only when a trial it let finish before ends ahead of it (the question every
rule here asks), must still train in full each trial that ends undominated by the trials
before it. How much of a study that is says how much any rule of this kind could save on
it without losing front points; with a tolerance, how much it could save losing at most
that much. It bounds the replay of a study, not a live search, which samples other trials
once it prunes.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np
import optuna

from mtl_search.errors import UserError
from mtl_search.search.hypervolume import epsilon_indicator, non_dominated
from mtl_search.search.pruning import (
    PruningSettings,
    Vector,
    cumulative_steps,
    dominates_with_margin,
    learning_curve,
    keeps_complete_share,
    prune_verdict,
    settings_from_section,
    vector_at_budget,
    warmup,
)
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import EpochRecord, TrialRecord
from mtl_search.search.space import PruningSpace
from mtl_search.search.study import study_objectives

Curve = list[Vector]
# (trial number, minimised vector per epoch) or (..., optimiser steps at the end of each epoch or None)
TrialCurve = tuple[int, Curve] | tuple[int, Curve, list[int] | None]


# The floors every replay reports: warm-ups (epochs, share of the trial's epochs) and
# tolerances (0: the exact front; 0.05: about the training-seed noise of the benchmark's fronts)
FLOOR_WARMUPS = ((1, 0.0), (2, 0.0), (2, 0.125))
FLOOR_TOLERANCES = (0.0, 0.05)


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    settings: PruningSettings
    epoch_share: float  # epochs the setting trains / epochs the study trained
    front_stopped: int  # trials of the true front the setting would have stopped
    epsilon: float  # of the kept front against the true one (NaN when values are not positive)
    time_share: float = math.nan  # of the trials' time left (StudyTiming.share_after); NaN without timings

    def to_data(self) -> dict[str, Any]:
        return {
            "settings": dataclasses.asdict(self.settings),
            "epoch_share": self.epoch_share,
            "time_share": none_if_nan(self.time_share),
            "front_stopped": self.front_stopped,
            "epsilon": none_if_nan(self.epsilon),
        }


@dataclasses.dataclass(frozen=True)
class FloorResult:
    """What a pruner with foresight (:func:`foresight_epochs`) trains with ``settings``' warm-up,
    allowed to lose front points by up to ``tolerance``."""

    settings: PruningSettings  # only its warm-up matters
    tolerance: float
    epoch_share: float
    front_stopped: int
    epsilon: float  # at most ``tolerance`` (NaN when values are not positive)
    time_share: float = math.nan

    def to_data(self) -> dict[str, Any]:
        return {
            "warmup_epochs": self.settings.warmup_epochs,
            "warmup_fraction": self.settings.warmup_fraction,
            "tolerance": self.tolerance,
            "epoch_share": self.epoch_share,
            "time_share": none_if_nan(self.time_share),
            "front_stopped": self.front_stopped,
            "epsilon": none_if_nan(self.epsilon),
        }


@dataclasses.dataclass(frozen=True)
class StudyTiming:
    """Where a finished study's time went: each finished trial's duration (start to end,
    sampling, model building, training and recording; summed, so that parallel workers and
    a study continued days later count what they ran) and each trial's seconds per epoch
    (training and validation)."""

    total_seconds: float  # the finished trials' durations, summed
    epoch_seconds: dict[int, list[float]]
    trials: int = 0  # finished trials

    def share_after(self, trained: Mapping[int, int], lengths: Mapping[int, int] | None = None) -> float:
        """The share of the trials' time left had trial ``n`` stopped after ``trained[n]`` of
        its ``lengths[n]`` replayed epochs (default: all its recorded epochs): those epochs'
        seconds are taken off, everything else (sampling, storage, building models, the
        trials not replayed) stays. NaN when a trial's epoch times are unknown."""
        if any(number not in self.epoch_seconds for number in trained) or self.total_seconds <= 0:
            return math.nan
        lengths = lengths or {}
        saved = sum(sum(self.epoch_seconds[number][epochs : lengths.get(number)]) for number, epochs in trained.items())
        return 1.0 - saved / self.total_seconds

    @property
    def fixed_seconds_per_trial(self) -> float:
        """What a trial costs besides its epochs, on average: the part no pruning saves."""
        return (self.total_seconds - sum(sum(seconds) for seconds in self.epoch_seconds.values())) / max(self.trials, 1)

    @property
    def seconds_per_epoch(self) -> float:
        epochs = sum(len(seconds) for seconds in self.epoch_seconds.values())
        return sum(sum(seconds) for seconds in self.epoch_seconds.values()) / epochs if epochs else math.nan


def none_if_nan(value: float) -> float | None:
    """JSON has no NaN: unknown values are written as null."""
    return None if math.isnan(value) else value


def study_timing(study: optuna.Study) -> StudyTiming | None:
    """The study's :class:`StudyTiming`, or None when it has no finished trial with a start
    and end time. A trial whose history lacks an epoch's seconds (or has a value that is not
    a number) keeps its duration in the total but has no epoch times (its replay time is NaN)."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and t.datetime_start and t.datetime_complete
    ]
    if not trials:
        return None
    total = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    epoch_seconds = {}
    for trial in trials:
        history = sorted(TrialRecord.read(trial).history, key=lambda entry: entry.epoch)
        seconds = [entry.seconds for entry in history]
        if seconds and all(
            isinstance(value, (int, float)) and math.isfinite(value) and value >= 0 for value in seconds
        ):
            epoch_seconds[trial.number] = [float(value) for value in seconds]
    return StudyTiming(total, epoch_seconds, len(trials))


def with_best_kept(history: Sequence[EpochRecord]) -> list[EpochRecord]:
    """A recorded history as if the trial had kept its best epoch (``training.checkpoint:
    best``): each epoch's ``kept_epoch`` is the best-scoring epoch so far."""
    from mtl_search.training.trainer import checkpoint_score, replaces_kept

    rebuilt, kept, kept_score = [], 0, math.inf
    for entry in history:
        score = checkpoint_score(entry.validation)
        if not kept or replaces_kept(score, kept_score):
            kept, kept_score = entry.epoch, score
        rebuilt.append(entry.model_copy(update={"kept_epoch": kept}))
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
        record = TrialRecord.read(trial)
        if record.repeat_of is not None:
            continue
        recorded = record.history
        curve = learning_curve(objectives, trial, with_best_kept(recorded) if rebuild_best else None)
        if curve and sorted(curve) == list(range(1, len(curve) + 1)):  # every epoch, in order
            steps = cumulative_steps(recorded)
            curves.append(
                (
                    trial.number,
                    [curve[epoch] for epoch in sorted(curve)],
                    None if steps is None else [steps[e] for e in sorted(curve)],
                )
            )
    return sorted(curves)


def replay_epochs(curves: Sequence[TrialCurve], settings: PruningSettings) -> dict[int, int]:
    """{trial number: epochs ``settings`` would have trained it}, trial by trial in order,
    with the trials it let finish as the references (and, as live, the share of them kept at
    least ``settings.min_complete_share``). A trial is never stopped at its last
    epoch, so the trials it keeps are those trained for their whole curve."""
    if settings.budget == "steps" and curves and not has_steps(curves):
        raise UserError(
            "pruning budget steps: some trials have no step counts (stored in record format 0, before "
            "they were counted); replay them with budget epochs"
        )
    kept: list[tuple[int, dict[int, Vector], dict[int, int] | None]] = []
    trained: dict[int, int] = {}
    pruned = 0

    def finals() -> list[tuple[int, Vector]]:
        return [(n, c[len(c)]) for n, c, _ in kept]

    for number, curve, steps in ((*entry, None)[:3] for entry in curves):
        total = len(curve)
        trained[number] = total
        for epoch in range(1, total + 1):
            at_steps = steps[epoch - 1] if steps else None
            references = [
                (n, v)
                for n, c, s in kept
                if (v := vector_at_budget(c, s, epoch, at_steps, settings.budget)) is not None
            ]
            verdict = prune_verdict(curve[epoch - 1], curve[:epoch], references, finals, epoch, total, settings)
            if verdict is not None and keeps_complete_share(len(kept), pruned, settings.min_complete_share):
                trained[number] = epoch
                pruned += 1
                break
        if trained[number] == total:
            kept.append(
                (number, dict(enumerate(curve, start=1)), None if steps is None else dict(enumerate(steps, start=1)))
            )
    return trained


def replay(curves: Sequence[TrialCurve], settings: PruningSettings) -> tuple[list[int], int]:
    """The numbers of the trials ``settings`` keeps, and the epochs it trains."""
    trained = replay_epochs(curves, settings)
    return kept_numbers(curves, trained), sum(trained.values())


def kept_numbers(curves: Sequence[TrialCurve], trained: Mapping[int, int]) -> list[int]:
    return [entry[0] for entry in curves if trained[entry[0]] == len(entry[1])]


def replay_outcome(
    curves: Sequence[TrialCurve], trained: Mapping[int, int], timing: StudyTiming | None
) -> tuple[float, float, int, float]:
    """(share of epochs trained, share of the trials' time left, true front trials stopped, epsilon of
    the kept front against the true one) when each trial trains ``trained[n]`` epochs."""
    finals = {entry[0]: entry[1][-1] for entry in curves}
    all_points = np.array(list(finals.values()))
    front = {tuple(p) for p in non_dominated(all_points)}
    kept = kept_numbers(curves, trained)
    front_stopped = sum(1 for number in set(finals) - set(kept) if tuple(finals[number]) in front)
    try:
        epsilon = epsilon_indicator(all_points, np.array([finals[n] for n in kept]))
    except ValueError:
        epsilon = math.nan
    epoch_share = sum(trained.values()) / sum(len(entry[1]) for entry in curves)
    lengths = {entry[0]: len(entry[1]) for entry in curves}
    return epoch_share, math.nan if timing is None else timing.share_after(trained, lengths), front_stopped, epsilon


def replay_settings(
    curves: Sequence[TrialCurve], settings: PruningSettings, timing: StudyTiming | None = None
) -> ReplayResult:
    epoch_share, time_share, front_stopped, epsilon = replay_outcome(curves, replay_epochs(curves, settings), timing)
    return ReplayResult(settings, epoch_share, front_stopped, epsilon, time_share)


def foresight_epochs(curves: Sequence[TrialCurve], settings: PruningSettings, tolerance: float = 0.0) -> dict[int, int]:
    """{trial number: epochs} that a pruner with foresight trains: it knows where every
    trial will end, and with ``settings``' warm-up it stops, at the first epoch it may, each
    trial whose final vector will be dominated by the final vector of a trial it let finish
    before (with ``tolerance`` > 0: matched within a factor ``1 + tolerance`` on every
    objective). Every other trial trains to its end.

    With ``tolerance`` 0 it stops no trial of the true front, and it is a floor for every
    rule that stops a trial only when a trial finished before it ends ahead of it (what the
    rules here mean to do): such a rule must let finish each trial that ends undominated by
    all the trials before it, and this pruner trains those and nothing more (a trial
    dominated by one it stopped is dominated by the trial that stopped that one). A rule
    that stops a trial no earlier trial ends ahead of (one that a later trial beats, say)
    may train less without losing the front, but it has guessed. ``min_completed_trials``
    is not asked for, which keeps it a floor for any count; a trial whose warm-up reaches
    its last epoch is never stopped, as by the rules. A live search samples other trials
    once it prunes, so it bounds the replay of a study, not a live run. With a tolerance it
    is the greedy pruner that loses at most that much (:func:`ahead_of`), a guide rather
    than a strict floor.
    """
    kept: list[Vector] = []
    trained: dict[int, int] = {}
    for entry in curves:
        number, curve = entry[0], entry[1]
        stop_at = warmup(settings, len(curve)) + 1
        final = curve[-1]
        if stop_at < len(curve) and any(ahead_of(other, final, tolerance) for other in kept):
            trained[number] = stop_at
        else:
            kept.append(final)
            trained[number] = len(curve)
    return trained


def ahead_of(finished: Vector, final: Vector, tolerance: float) -> bool:
    """Whether a finished trial's final vector makes a trial that ends at ``final`` needless:
    it dominates it (``tolerance`` 0, the rules' own test), or matches it within a factor
    ``1 + tolerance`` on every objective (equal or better values included)."""
    if tolerance == 0:
        return dominates_with_margin(finished, final, 0.0)
    return len(finished) == len(final) and all(b <= w + tolerance * abs(w) for b, w in zip(finished, final))


def foresight_floor(
    curves: Sequence[TrialCurve], settings: PruningSettings, tolerance: float = 0.0, timing: StudyTiming | None = None
) -> FloorResult:
    epoch_share, time_share, front_stopped, epsilon = replay_outcome(
        curves, foresight_epochs(curves, settings, tolerance), timing
    )
    return FloorResult(settings, tolerance, epoch_share, front_stopped, epsilon, time_share)


def warmup_label(settings: PruningSettings) -> str:
    """A setting's warm-up as the replay tables print it: "2", or "2 or 0.125 of epochs"."""
    return f"{settings.warmup_epochs}" + (
        f" or {settings.warmup_fraction:g} of epochs" if settings.warmup_fraction else ""
    )


def floor_label(settings: PruningSettings, tolerance: float) -> str:
    """A foresight floor as the benchmarks name it: "warmup 2, losing <= 5 %"."""
    return f"warmup {warmup_label(settings)}" + (f", losing <= {100 * tolerance:g} %" if tolerance else "")


def foresight_warmups(grid: Sequence[PruningSettings]) -> list[PruningSettings]:
    """The first setting of each distinct warm-up in ``grid``: the foresight floor depends
    on nothing else."""
    seen: dict[tuple[int, float], PruningSettings] = {}
    for settings in grid:
        seen.setdefault((settings.warmup_epochs, settings.warmup_fraction), settings)
    return list(seen.values())


def settings_grid(base: PruningSettings, budgets: Sequence[str] = ()) -> list[PruningSettings]:
    """``base`` first, then, in its budget and in each of ``budgets``: the median rule with
    its warm-up (1, 2) and fraction (0, 0.25, 0.5, 0.75) varied, and the projected rule with
    its defaults and with a fixed warm-up of 2 epochs (``warmup_fraction: 0``)."""
    median = base if base.rule == "median" else PruningSettings(min_completed_trials=base.min_completed_trials)
    projected = PruningSettings.projected(min_completed_trials=base.min_completed_trials)
    grid = [base]
    for budget in dict.fromkeys([base.budget, *budgets]):
        candidates = [
            dataclasses.replace(
                median,
                enabled=True,
                warmup_epochs=warmup,
                warmup_fraction=0.0,
                min_dominator_fraction=fraction,
                budget=budget,
            )
            for warmup, fraction in itertools.product((1, 2), (0.0, 0.25, 0.5, 0.75))
        ]
        candidates += [
            dataclasses.replace(projected, budget=budget),
            dataclasses.replace(projected, warmup_fraction=0.0, budget=budget),
        ]
        grid += [candidate for candidate in candidates if candidate not in grid]
    return grid


def has_steps(curves: Sequence[TrialCurve]) -> bool:
    """Whether every curve has its optimiser steps (trials of record format 0 may have none):
    only then can the ``steps`` budget be replayed."""
    return bool(curves) and all(len(entry) > 2 and entry[2] is not None for entry in curves)


def stored_settings(study: optuna.Study) -> PruningSettings:
    """The pruning settings stored with the study's space (the defaults when absent),
    switched on: a study run with ``--no-prune`` is the one worth replaying."""
    # a study of record format 0 that stored no rule or budget was pruned by the median rule
    # at equal epochs: its record reads so (StudyRecord.pruning)
    return settings_from_section(PruningSpace.model_validate(StudyRecord.read(study).pruning))
