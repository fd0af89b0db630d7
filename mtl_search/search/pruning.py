"""Pareto-aware pruning: stop a trial whose learning curve is already dominated.

Optuna's pruners compare one intermediate value per step and multi-objective studies have
no ``trial.report``, so this pruner is an epoch hook of :class:`CandidateObjective` instead.

Rule, after each epoch ``e`` (counted from 1) of a running trial (``s`` optimiser steps so far):

1. nothing happens during the warm-up, the first ``warmup_epochs`` epochs or
   ``warmup_fraction`` of the trial's planned epochs if that is more (early curves cross
   often), nor at the trial's last epoch (stopping then saves nothing);
2. the references are the COMPLETE, feasible trials that had an epoch ending within ``s``
   steps (``budget: epochs``: that reach epoch ``e``), each with the values it had kept
   then; with fewer than ``min_completed_trials`` of them, nothing happens;
3. a reference *dominates with margin* when, after that much training, it is better than the
   running trial on every objective by at least ``margin`` times the running trial's value
   (relative, so one setting fits losses and costs). Maximised metrics (AUC, accuracy, all
   at most 1) are compared as their distance to 1, the error, so the margin is relative to
   the error: a relative margin on an AUC of 0.94 itself would ask for 0.047 more AUC and
   never prune. Cost objectives (known before training) are compared the same way, so a
   small-but-slower-learning network is not stopped by a large one;
4. the trial is pruned when at least ``min_dominators`` references, and at least
   ``min_dominator_fraction`` of all references, dominate it;
5. unless pruning it would leave fewer than ``min_complete_share`` of the study's finished
   (complete and pruned) trials complete: then it trains to the end. The sampler models
   complete trials; where early epochs rank candidates poorly a rule can stop every trial
   after the start-up ones, and the sampler then learns nothing (``keeps_complete_share``).

Comparing at equal training (not with the references' final values) asks "is it behind
trials that had the same amount of training?". Training is counted in optimiser steps
(``budget: steps``, the default): a reference counts with the values it had kept at its
last epoch that ended within the running trial's steps so far. ``budget: epochs`` compares
epoch ``e`` with epoch ``e``, but an epoch of batch 256 is half the steps of an epoch of
batch 128, and that rule stopped large-batch trials three times as often as small-batch
ones; the sampler then avoided them (docs/explanation/pruning.md). A reference whose history has no step
counts (stored in record format 0 before they were counted) does not count under ``steps``.

``rule: projected`` (the default; a study stored without a rule was pruned by ``median``) adds a second question,
asked only of a trial the first one would prune: where does the trial's *own* learning curve point? Per objective, a power law
(log value linear in log epoch) is fitted to its epochs from ``e // 2`` (at least 1) to
``e`` and followed to its last epoch; the trial is pruned only if that projected vector is
dominated with margin by the final values of a completed trial. A slow learner that is
behind but still falling steeply projects past the references and keeps training; a
trial that has flattened out projects to about where it is. Because the projection keeps
the late bloomers, this rule's first question defaults to one dominator, no fraction and
no margin, and its warm-up to an eighth of the trial's epochs, which kept slow starters in
live searches (``PROJECTED_RULE_DEFAULTS`` in ``search/space.py``). Replayed on 17 unpruned
studies in six sets it stopped fewer front trials than ``median`` in every set, and trained
0.04 to 0.27 more of the epochs (with a fixed warm-up of 2: 0.04 less to 0.14 more;
docs/explanation/pruning.md).

With the fraction at 0.5 the first question is the median stopping rule (Golovin et al., "Google Vizier",
KDD 2017) with Pareto dominance in place of "worse than the median": stop a trial that at
least half of the completed trials had beaten on every objective after the same amount of
training. The fraction is
what keeps late bloomers: learning curves cross (a low learning rate starts slowly and
often ends best), and replaying complete studies (``analysis/pruning_replay.py``) showed
that a fixed count of two dominators stopped front trials that at least half of the
references did not beat. The pruned trial keeps its history, its last validation values
and a ``prune_reason``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Mapping, Sequence

import optuna

from mtl_search.architectures import ensemble_members
from mtl_search.errors import UserError
from mtl_search.records.objective import Objective
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import EpochRecord, TrialRecord
from mtl_search.search.costs import is_feasible
from mtl_search.search.space import MIN_COMPLETE_SHARE, PROJECTED_RULE_DEFAULTS

Vector = tuple[float, ...]
# running trials whose curves and storage reads a pruner keeps (more than any population trains at once)
RUNNING_KEPT = 1024
BUDGETS = ("epochs", "steps")
RULES = ("median", "projected")


@dataclasses.dataclass(frozen=True)
class PruningSettings:
    """When and how hard to prune; see the module docstring for the rule.

    ``PruningSettings()`` is the median rule with its defaults and ``PruningSettings.projected()``
    the projected rule with its own; a space's ``pruning:`` section (``PruningSpace``) names the
    rule and defaults to projected.
    """

    enabled: bool = True
    warmup_epochs: int = 2
    warmup_fraction: float = 0.0  # the warm-up is at least this share of the trial's planned epochs
    min_completed_trials: int = 5
    margin: float = 0.05
    min_dominators: int = 2
    min_dominator_fraction: float = 0.5
    min_complete_share: float = MIN_COMPLETE_SHARE
    budget: str = "steps"  # "steps" or "epochs": how "the same amount of training" is counted
    rule: str = "median"  # "projected": also project the trial's own curve to its last epoch

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise UserError(f"pruning budget {self.budget!r}: expected one of {', '.join(BUDGETS)}")
        if self.rule not in RULES:
            raise UserError(f"pruning rule {self.rule!r}: expected one of {', '.join(RULES)}")

    @classmethod
    def projected(cls, **changes: Any) -> "PruningSettings":
        """The projected rule with its own defaults for the same-budget test (as a space's
        ``pruning: {rule: projected}``), then ``changes``."""
        return cls(**({"rule": "projected"} | dict(PROJECTED_RULE_DEFAULTS) | changes))


def with_pruning_options(
    space: Any,
    *,
    enabled: bool = True,
    warmup_epochs: int | None = None,
    min_completed_trials: int | None = None,
    budget: str | None = None,
    rule: str | None = None,
    warmup_fraction: float | None = None,
    min_complete_share: float | None = None,
) -> Any:
    """A copy of ``space`` with command-line pruning options applied to its ``pruning:`` section."""
    update: dict[str, Any] = {
        "budget": budget,
        "rule": rule,
        "warmup_epochs": warmup_epochs,
        "min_completed_trials": min_completed_trials,
        "warmup_fraction": warmup_fraction,
        "min_complete_share": min_complete_share,
    }
    update = {key: value for key, value in update.items() if value is not None} | (
        {} if enabled else {"enabled": False}
    )
    return with_pruning_section(space, **update) if update else space


def with_pruning_section(space: Any, **changes: Any) -> Any:
    """A copy of ``space`` with ``changes`` to its ``pruning:`` section, validated again: a
    changed ``rule`` brings its own defaults for whatever the section did not set."""
    section = type(space.pruning).model_validate(space.pruning.model_dump(exclude_unset=True) | changes)
    return space.model_copy(update={"pruning": section})


def with_study_pruning(space: Any, study: optuna.Study) -> Any:
    """``space`` as it prunes a study it continues: the study's rule (:func:`with_study_rule`),
    then its budget (:func:`with_study_budget`)."""
    return with_study_budget(with_study_rule(space, study), study)  # in this order: a new rule re-validates the section


def with_study_rule(space: Any, study: optuna.Study) -> Any:
    """``space``, pruning by the rule stored with the study it continues, unless the space
    file or the command line names a rule: a study keeps its rule when the default changes
    (a study of record format 0 that stored no rule was pruned by the median rule). The rule
    brings its own defaults for the fields the section does not set."""
    stored = StudyRecord.read(study)
    if stored.space is None or "rule" in space.pruning.model_fields_set:
        return space
    rule = stored.pruning.get("rule", space.pruning.rule)
    return space if rule == space.pruning.rule else with_pruning_section(space, rule=rule)


def with_study_budget(space: Any, study: optuna.Study) -> Any:
    """``space``, pruning at the budget stored with the study it continues, unless the space
    file or the command line names a budget (a study of record format 0 that stored no
    budget compared at equal epochs: its trials have no step counts to compare)."""
    stored = StudyRecord.read(study)
    budget = stored.pruning.get("budget", space.pruning.budget)
    if stored.space is None or "budget" in space.pruning.model_fields_set or budget == space.pruning.budget:
        return space
    return space.model_copy(update={"pruning": space.pruning.model_copy(update={"budget": budget})})


def pruning_hooks(space: Any, objectives: Sequence[Objective], enabled: bool = True) -> list[DominatedTrialPruner]:
    """The epoch hooks a space's ``pruning:`` section asks for (none when disabled)."""
    if not (enabled and space.pruning.enabled):
        return []
    return [DominatedTrialPruner(objectives, settings_from_section(space.pruning))]


def settings_from_section(section: Any) -> PruningSettings:
    """The rule a space's ``pruning:`` section (a validated ``PruningSpace``, whose fields are
    this dataclass's) describes, switched on."""
    return PruningSettings(**(section.model_dump() | {"enabled": True}))


def dominates_with_margin(better: Vector, worse: Vector, margin: float) -> bool:
    """True when ``better`` beats ``worse`` on every (minimised) objective by ``margin * |worse|``.

    With ``margin`` 0 this is weak dominance plus at least one strict improvement. A NaN
    anywhere means "cannot tell", which never prunes.
    """
    if len(better) != len(worse) or any(math.isnan(v) for v in (*better, *worse)):
        return False
    if not all(b + margin * abs(w) <= w for b, w in zip(better, worse)):
        return False
    return any(b < w for b, w in zip(better, worse))


def keeps_complete_share(complete: int, pruned: int, share: float) -> bool:
    """Whether pruning one more trial keeps at least ``share`` of the finished trials (``complete``
    and ``pruned`` so far) complete. Below it the trial trains to the end, so that the sampler
    always has complete trials to learn from, however often early epochs mislead the rule."""
    return complete >= share * (complete + pruned + 1) - 1e-9


def warmup(settings: PruningSettings, total_epochs: int | None) -> int:
    """The epochs never pruned: ``warmup_epochs``, or ``warmup_fraction`` of the trial's
    planned epochs (when known) if that is more."""
    share = math.floor(settings.warmup_fraction * total_epochs + 1e-9) if total_epochs else 0  # 0.29 * 100 is 28.999...
    return max(settings.warmup_epochs, share)


def dominators_to_prune(
    current: Vector,
    references: Sequence[tuple[int, Vector]],
    epoch: int,
    total_epochs: int | None,
    settings: PruningSettings,
) -> list[int] | None:
    """The rule itself, on plain vectors: the trial numbers that dominate ``current`` at
    1-based ``epoch`` when they are enough to prune it, else None.

    ``references`` are (trial number, minimised vector at ``epoch``) of the completed
    trials; ``total_epochs`` is the running trial's planned epochs (None: unknown).
    """
    if not settings.enabled or epoch <= warmup(settings, total_epochs):
        return None
    if total_epochs is not None and epoch >= total_epochs:
        return None
    if len(references) < settings.min_completed_trials:
        return None
    dominators = [number for number, vector in references if dominates_with_margin(vector, current, settings.margin)]
    needed = max(settings.min_dominators, math.ceil(settings.min_dominator_fraction * len(references) - 1e-9))
    return dominators if len(dominators) >= needed else None


def prune_verdict(
    current: Vector,
    curve: Sequence[Vector],
    references: Sequence[tuple[int, Vector]],
    finals: Callable[[], Sequence[tuple[int, Vector]]],
    epoch: int,
    total_epochs: int | None,
    settings: PruningSettings,
) -> tuple[list[int], list[int]] | None:
    """The whole rule, as the live pruner and the replay both apply it: None to go on, or
    (the references that dominate ``current`` after as much training, the completed trials
    whose ``finals`` dominate where ``curve`` points; empty for rule "median").

    ``curve``: the running trial's vectors for epochs 1 to ``epoch`` (empty when unknown);
    ``finals``: called only when the projection is needed, (trial number, final vector).
    """
    dominators = dominators_to_prune(current, references, epoch, total_epochs, settings)
    if dominators is None or settings.rule != "projected":
        return None if dominators is None else (dominators, [])
    beyond = projection_dominators(curve, total_epochs, finals(), settings.margin)
    return (dominators, beyond) if beyond else None


def projected_final(curve: Sequence[Vector], total_epochs: int) -> Vector | None:
    """Where a learning curve (the minimised vector after each epoch so far, epoch 1 first)
    points at ``total_epochs``.

    Per objective, log value is fitted linearly against log epoch (a power law) over epochs
    ``e // 2`` (at least 1) to ``e``, the later half or so, and the fit's slope is followed
    from the last value. A rising or flat fit, a value of 0 (nothing left to gain) or a
    single epoch projects no gain. None when a value is negative or not finite: a power law
    cannot describe it, and the projected rule then never prunes.
    """
    epoch = len(curve)
    if epoch == 0:
        raise ValueError("an empty learning curve has nothing to project")
    first = max(1, epoch // 2)  # 1-based; at least two epochs from epoch 2 on
    window = range(first, epoch + 1)
    log_epochs = [math.log(e) for e in window]
    mean_log_epoch = sum(log_epochs) / len(log_epochs)
    spread = sum((x - mean_log_epoch) ** 2 for x in log_epochs)
    ahead = math.log(total_epochs) - math.log(epoch)
    projected = []
    for k, last in enumerate(curve[-1]):
        values = [curve[e - 1][k] for e in window]
        if not all(v >= 0 and math.isfinite(v) for v in values):
            return None
        if spread == 0 or ahead <= 0 or min(values) == 0:
            projected.append(last)
            continue
        logs = [math.log(v) for v in values]
        mean_log = sum(logs) / len(logs)
        slope = sum((x - mean_log_epoch) * (y - mean_log) for x, y in zip(log_epochs, logs)) / spread
        projected.append(last * math.exp(min(slope, 0.0) * ahead))
    return tuple(projected)


def projection_dominators(
    curve: Sequence[Vector], total_epochs: int | None, finals: Sequence[tuple[int, Vector]], margin: float
) -> list[int]:
    """The completed trials whose final vectors dominate (with ``margin``) where ``curve``
    points at its last epoch; none when its last epoch is unknown or it cannot be projected."""
    projected = None if total_epochs is None or not curve else projected_final(curve, total_epochs)
    if projected is None:
        return []
    return [number for number, final in finals if dominates_with_margin(final, projected, margin)]


def shown_numbers(numbers: Sequence[int], limit: int = 5) -> str:
    """Trial numbers for a prune reason: the first ``limit``, then "..."."""
    return ", ".join(str(n) for n in numbers[:limit]) + (", ..." if len(numbers) > limit else "")


def minimised_vector(
    objectives: Sequence[Objective], scores: Mapping[str, Mapping[str, float]], costs: Mapping[str, float]
) -> Vector | None:
    """The objectives at one epoch as a vector to minimise (maximised values as 1 - value).

    ``scores`` are validation metrics ``{task: {metric: value}}``, ``costs`` the trial's
    measured costs; None when a value is missing.
    """
    vector = []
    for objective in objectives:
        if objective.kind == "cost":
            value = costs.get(objective.metric)
        else:
            value = scores.get(objective.task, {}).get(objective.metric)
        if value is None:
            return None
        # every maximised metric (AUC, accuracy) is at most 1: its error 1 - value is minimised
        vector.append(1.0 - float(value) if objective.direction == "maximize" else float(value))
    return tuple(vector)


def learning_curve(
    objectives: Sequence[Objective], trial: optuna.trial.FrozenTrial, history: Sequence[EpochRecord] | None = None
) -> dict[int, Vector] | None:
    """A finished trial's recorded history as {1-based epoch: minimised vector of the weights
    kept at that epoch}; None for an infeasible trial (over a hard limit), which is never a
    reference. ``history`` replaces the trial's recorded one (a replay's what-if)."""
    if not is_feasible(trial):
        return None
    record = TrialRecord.read(trial, only=("costs", "history") if history is None else ("costs",))
    history = record.history if history is None else history
    by_epoch = {entry.epoch: entry for entry in history}
    curve = {}
    for entry in history:
        # with training.checkpoint "best" a trial stopped at this epoch returns the kept epoch's values
        kept = by_epoch.get(entry.kept, entry)
        vector = minimised_vector(objectives, kept.validation, record.costs)
        if vector is not None:
            curve[entry.epoch] = vector
    return curve


def cumulative_steps(history: Sequence[EpochRecord]) -> dict[int, int] | None:
    """{1-based epoch: optimiser steps at its end} of a recorded history; None when the
    history has no step counts (record format 0: such a trial is no reference for ``budget: steps``)."""
    if not history or any(entry.steps is None for entry in history):
        return None
    return {entry.epoch: int(entry.steps) for entry in history if entry.steps is not None}


def vector_at_budget(
    curve: Mapping[int, Vector], steps: Mapping[int, int] | None, epoch: int, at_steps: int | None, budget: str
) -> Vector | None:
    """A reference's vector after as much training as a running trial at ``epoch`` (whose
    steps so far are ``at_steps``): the same epoch, or with ``budget`` "steps" its last epoch
    that ended within ``at_steps``. None when it has no such epoch."""
    if budget == "epochs":
        return curve.get(epoch)
    if steps is None or at_steps is None:
        return None
    within = [e for e in curve if steps.get(e, at_steps + 1) <= at_steps]
    return curve[max(within)] if within else None


class DominatedTrialPruner:
    """An epoch hook that raises :class:`optuna.TrialPruned` for dominated learning curves.

    Completed trials never change, so their per-epoch vectors are read from storage once
    and cached by trial number. Storage is asked for newly finished trials at most every
    ``refresh_seconds`` while one trial runs (each trial counts its own, and keeps its own
    learning curve; the members of a population, whose hooks are called in turn, count one
    time together, see :meth:`run_together`): in a single process nothing finishes meanwhile;
    with several workers a reference that finished in the last seconds is missed until the
    next read, which can tip a close call either way (one dominator fewer, or one reference
    fewer to make up the fraction). A query costs a few milliseconds, as much as a small
    epoch. The caches belong to one study: a check on another study starts them afresh.
    """

    def __init__(
        self,
        objectives: Sequence[Objective],
        settings: PruningSettings = PruningSettings(),
        *,
        refresh_seconds: float = 10.0,
    ) -> None:
        self.objectives = list(objectives)
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        # trial number -> ({epoch: vector}, {epoch: steps} or None); None for trials that cannot serve as references
        self._curves: dict[int, tuple[dict[int, Vector], dict[int, int] | None] | None] = {}
        # trial number -> members of its deep ensemble (1: one network), see references()
        self._members: dict[int, int] = {}
        self._last_reads: dict[int, float] = {}  # running trial's number -> when it last read storage
        self._together: dict[int, int] = {}  # a population member's number -> the number its reads count under
        self._study_name: str | None = None
        # (study name, trial number) -> {epoch: vector}: the running trials' curves, for rule "projected"
        self._running: dict[tuple[str, int], dict[int, Vector]] = {}

    def run_together(self, trial_numbers: Sequence[int]) -> None:
        """The trials of one population, which train at once: a read of storage by one serves
        the others for ``refresh_seconds`` too (their hooks are called one after the other, each
        epoch, and nothing they read finishes in between). Replaces the previous population."""
        self._together = {number: trial_numbers[0] for number in trial_numbers}

    def __call__(
        self, trial: optuna.trial.Trial, epoch: int, scores: dict[str, dict[str, float]], record: Mapping[str, Any]
    ) -> None:
        running = TrialRecord.read(trial, only=("costs", "candidate"))
        reason = self.check(
            trial.study, running, epoch + 1, scores, trial_number=trial.number, steps=record.get("steps")
        )
        if reason is not None:
            TrialRecord(prune_reason=reason).write(trial)
            raise optuna.TrialPruned(reason)

    def check(
        self,
        study: optuna.Study,
        running: TrialRecord | Mapping[str, Any],
        epoch: int,
        scores: dict[str, dict[str, float]],
        *,
        trial_number: int | None = None,
        steps: int | None = None,
    ) -> str | None:
        """The reason to prune the ``running`` trial (its record, or its user attributes) at
        1-based ``epoch``, or None to go on (``trial_number``: the running trial's, which lets
        consecutive checks of one trial share a storage read and, for rule "projected", builds
        its learning curve: without it that rule never prunes; ``steps``: its optimiser steps
        so far, for ``budget: steps``)."""
        settings = self.settings
        if not settings.enabled:
            return None
        record = (
            running
            if isinstance(running, TrialRecord)
            else TrialRecord.from_attrs(running, "trial" if trial_number is None else f"trial {trial_number}")
        )
        current = minimised_vector(self.objectives, scores, record.costs)
        curve = self._record(None if trial_number is None else (study.study_name, trial_number), epoch, current)
        total_epochs = record.candidate.epochs
        if epoch <= warmup(settings, total_epochs):
            return None  # before reading storage: the cheap exits first
        if current is None or (total_epochs is not None and epoch >= total_epochs):
            return None
        members = ensemble_members(record.candidate.architecture)
        references = self.references(study, epoch, running=trial_number, steps=steps, members=members)
        verdict = prune_verdict(
            current, curve, references, lambda: self._finals(members), epoch, total_epochs, settings
        )
        if verdict is None:
            return None
        if settings.min_complete_share > 0:  # read only when the trial would be pruned: rarely
            finished = study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            )
            complete = sum(1 for trial in finished if trial.state == optuna.trial.TrialState.COMPLETE)
            if not keeps_complete_share(complete, len(finished) - complete, settings.min_complete_share):
                return None
        dominators, beyond = verdict
        at = f"epoch {epoch}" if settings.budget == "epochs" else f"epoch {epoch} ({steps} steps)"
        reason = f"dominated at {at} by {len(dominators)} of {len(references)} completed trials ({shown_numbers(dominators)}; margin {settings.margin:g})"
        if beyond:
            reason += f"; projected to epoch {total_epochs}, still dominated by the final values of {len(beyond)} ({shown_numbers(beyond)})"
        return reason

    def _finals(self, members: int = 1) -> list[tuple[int, Vector]]:
        """(trial number, final vector) of the references read so far (of ``members`` members)."""
        return [
            (number, entry[0][max(entry[0])])
            for number, entry in sorted(self._curves.items())
            if entry and entry[0] and self._members.get(number, 1) == members
        ]

    def _record(self, trial: tuple[str, int] | None, epoch: int, vector: Vector | None) -> list[Vector]:
        """The running trial's learning curve up to ``epoch`` (empty when an epoch is missing,
        which the projection reads as "cannot tell" and never prunes)."""
        if trial is None:
            by_epoch: dict[int, Vector] = {}
        else:
            by_epoch = self._running.pop(trial, {})  # re-inserted last: the oldest curves are forgotten first
            self._running[trial] = by_epoch
            while len(self._running) > RUNNING_KEPT:
                del self._running[next(iter(self._running))]
        if vector is not None:
            by_epoch[epoch] = vector
        if any(e not in by_epoch for e in range(1, epoch + 1)):
            return []
        return [by_epoch[e] for e in range(1, epoch + 1)]

    def references(
        self,
        study: optuna.Study,
        epoch: int,
        running: int | None = None,
        steps: int | None = None,
        members: int = 1,
    ) -> list[tuple[int, Vector]]:
        """(trial number, vector after as much training) of every complete, feasible trial
        that had as much (``vector_at_budget``; ``steps``: the running trial's so far).

        ``running`` is the number of the trial being checked (None: always read storage).
        ``members``: the running trial's ensemble members. A deep ensemble's recorded epochs are
        its first member's, so its curve is one network's while its costs are all members':
        trials are compared with trials of as many members only.
        """
        if study.study_name != self._study_name:  # trial numbers are per study
            self._curves, self._members, self._last_reads = {}, {}, {}
            self._study_name = study.study_name
        now = time.monotonic()
        if running is not None:
            running = self._together.get(running, running)
        last_read = self._last_reads.get(running) if running is not None else None
        fresh = last_read is not None and now - last_read < self.refresh_seconds
        if not fresh:
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                if trial.number not in self._curves:
                    curve = learning_curve(self.objectives, trial)
                    record = TrialRecord.read(trial, only=("history", "candidate")) if curve is not None else None
                    history = [] if record is None else record.history
                    if record is not None and record.candidate is not None:
                        self._members[trial.number] = ensemble_members(record.candidate.architecture)
                    self._curves[trial.number] = None if curve is None else (curve, cumulative_steps(history))
            if running is not None:
                self._last_reads.pop(running, None)
                self._last_reads[running] = now
                while len(self._last_reads) > RUNNING_KEPT:
                    del self._last_reads[next(iter(self._last_reads))]
        references = []
        for number, entry in sorted(self._curves.items()):
            if self._members.get(number, 1) != members:
                continue
            vector = vector_at_budget(entry[0], entry[1], epoch, steps, self.settings.budget) if entry else None
            if vector is not None:
                references.append((number, vector))
        return references
