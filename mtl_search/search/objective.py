"""The objective: sample a candidate, train it, record it, return its validation metrics."""

from __future__ import annotations

import json
import math
from typing import Any, Callable, NoReturn, Sequence

import optuna
import torch

from mtl_search.architectures import summarize
from mtl_search.data.base import MultiTaskData
from mtl_search.errors import TrialDiverged, UserError
from mtl_search.records.objective import Objective
from mtl_search.records.trial import Candidate, TrialRecord
from mtl_search.search.costs import CostMeter, timing_batch
from mtl_search.search.param_names import RenamingTrial, study_distributions
from mtl_search.search.space import SearchSpace
from mtl_search.search.workers import raise_if_stopped, shielded
from mtl_search.training import TrainResult, train_candidate
from mtl_search.training.data_parallel import DataParallel
from mtl_search.training.trainer import EpochCallback


# What rank 0 sends the other data-parallel processes: (TRAIN, candidate), or (DONE, None) at the end.
TRAIN, DONE = "train", "done"


class TrialFailed(Exception):
    """A candidate could not be trained; the reason is on the trial as ``fail_reason``."""


# Called after each epoch with (trial, epoch index, validation scores); may raise
# optuna.TrialPruned. Pruners and progress displays plug in here.
# (trial, 0-based epoch, validation scores of the weights kept so far, the epoch's history record)
EpochHook = Callable[[optuna.trial.Trial, int, dict[str, dict[str, float]], dict[str, Any]], None]
# Called after a trial trained, with (trial, candidate, result): artifact upload, extra objectives.
ResultHook = Callable[[optuna.trial.Trial, dict[str, Any], TrainResult], None]


class CandidateObjective:
    def __init__(
        self,
        data: MultiTaskData,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
        epoch_hooks: Sequence[EpochHook] = (),
        result_hooks: Sequence[ResultHook] = (),
        stem: torch.nn.Module | None = None,
        cost_meter: CostMeter | None = None,
        precision: str = "fp32",
        data_parallel: DataParallel | None = None,
    ) -> None:
        self.data = data
        self.space = space
        self.objectives = list(objectives)
        self.seed = seed
        self.device = device
        self.epoch_hooks = list(epoch_hooks)
        self.result_hooks = list(result_hooks)
        self.stem = stem
        # Costs are measured before training, so an over-limit candidate is never trained.
        self.cost_meter = cost_meter or CostMeter()
        # training.precision of every candidate: stored with it, so that export and refine train it alike
        self.precision = precision
        # on rank 0 of processes training each candidate together: they are sent each candidate to train
        self.data_parallel = data_parallel

    def __call__(self, trial: optuna.trial.Trial) -> list[float]:
        try:
            # one read of the study serves the parameter names and the repeat check (each read
            # costs milliseconds, more on a server)
            trials = trial.study.get_trials(deepcopy=False)
            candidate = self.sample(trial, trials)
            earlier = find_same_candidate(trial.study, candidate, trials)
            if earlier is not None:
                return self.repeat(trial, candidate, earlier)
            return self.train_and_record(trial, candidate)
        except (TrialFailed, optuna.TrialPruned, KeyboardInterrupt):
            raise
        except Exception as error:
            record_run_stop(trial, error)
            raise

    def sample(
        self, trial: optuna.trial.Trial, trials: Sequence[optuna.trial.FrozenTrial] | None = None
    ) -> dict[str, Any]:
        """The trial's candidate, suggested through it (``trials``: the study's, when already read)."""
        # the names stay storable when the study was searched with another space before
        sampling = RenamingTrial(trial, study_distributions(trial.study, trials))
        candidate = self.space.sample(sampling, self.data.task_names, seed=self.seed)
        if self.precision != "fp32":  # fp32, the trainer's default, is left out as candidates always had it
            candidate["training"]["precision"] = self.precision
        return candidate

    def repeat(
        self, trial: optuna.trial.Trial, candidate: dict[str, Any], earlier: optuna.trial.FrozenTrial
    ) -> list[float]:
        """The sampler proposed a candidate the study already trained to the end: training is
        seeded, so training it again would give the same result. Take the earlier metrics.

        Costs and hard limits are measured again (cheap, and the earlier trial may come from a
        run of an earlier release, which did not hold a continued study to its limits). The
        repeat has no ``history``, so it is never a second pruning reference, and the front
        lists only the original (``repeat_of`` names it; export follows it).
        """
        original = TrialRecord.read(earlier, only=("summary", *REPEATED_RECORDS))
        summary = original.summary or describe_candidate(candidate, self.data.task_names)
        TrialRecord(repeat_of=earlier.number, candidate=Candidate(**candidate), summary=summary).write(trial)
        costs = self.measure_costs(trial, candidate)
        outcome = {name: getattr(original, name) for name in REPEATED_RECORDS if original.recorded(name)}
        TrialRecord(**outcome).write(trial)
        return self.values(original.validation, costs)

    def train_and_record(self, trial: optuna.trial.Trial, candidate: dict[str, Any]) -> list[float]:
        costs = self.before_training(trial, candidate)
        history: list[dict[str, Any]] = []  # the trainer's per-epoch records, kept in case the trial is pruned
        outcome: TrainResult | BaseException
        if self.data_parallel is not None:
            self.data_parallel.share((TRAIN, candidate))
        try:
            outcome = train_candidate(
                self.data,
                candidate,
                device=self.device,
                on_epoch=self.epoch_callback(trial, history),
                stem=self.stem,
                data_parallel=self.data_parallel,
            )
        except Exception as error:  # recorded as the trial's outcome; a Ctrl-C goes through
            outcome = error
        return self.after_training(trial, candidate, costs, history, outcome)

    def before_training(self, trial: optuna.trial.Trial, candidate: dict[str, Any]) -> dict[str, float]:
        """Record the candidate on the trial and measure its costs (see :meth:`measure_costs`,
        which raises :class:`optuna.TrialPruned` over a hard limit); the costs."""
        summary = describe_candidate(candidate, self.data.task_names)
        TrialRecord(candidate=Candidate(**candidate), summary=summary).write(trial)
        return self.measure_costs(trial, candidate)

    def epoch_callback(self, trial: optuna.trial.Trial, history: list[dict[str, Any]]) -> EpochCallback:
        """The trainer's callback for ``trial``: keeps each epoch's record in ``history`` and
        runs the epoch hooks (which may raise :class:`optuna.TrialPruned`)."""

        def on_epoch(epoch: int, scores: dict[str, dict[str, float]], record: dict[str, Any]) -> None:
            raise_if_stopped()  # a Ctrl-C that landed where it could not be raised
            with shielded():  # the epoch's record is written whole
                history.append(record)
                for hook in self.epoch_hooks:
                    hook(trial, epoch, scores, record)

        return on_epoch

    def after_training(
        self,
        trial: optuna.trial.Trial,
        candidate: dict[str, Any],
        costs: dict[str, float],
        history: list[dict[str, Any]],
        outcome: TrainResult | BaseException,
    ) -> list[float]:
        """Record how training ended on the trial: the objective values of a trained candidate,
        else raise. A pruned trial keeps its ``history`` and re-raises :class:`optuna.TrialPruned`;
        a diverged or broken candidate gets a ``fail_reason`` and raises :class:`TrialFailed`;
        a :class:`UserError` (no candidate can train so) and a Ctrl-C are raised as they are."""
        if isinstance(outcome, BaseException):
            self._record_stop(trial, costs, history, outcome)
        result = outcome
        TrialRecord(**result.to_record(), population_size=result.population_size).write(trial)
        for hook in self.result_hooks:
            hook(trial, candidate, result)
        values = self.values(result.validation, costs)
        if not all(math.isfinite(v) for v in values):
            bad = [o.name for o, v in zip(self.objectives, values) if not math.isfinite(v)]
            reason = f"validation metric(s) not finite: {', '.join(bad)}"
            TrialRecord(fail_reason=reason).write(trial)
            raise TrialFailed(reason)
        return values

    def _record_stop(
        self, trial: optuna.trial.Trial, costs: dict[str, float], history: list[dict[str, Any]], error: BaseException
    ) -> NoReturn:
        if isinstance(error, optuna.TrialPruned):
            if history:  # recorded like a complete trial, up to the epoch it was stopped at
                kept_epoch = history[-1]["kept_epoch"]
                validation = history[kept_epoch - 1]["validation"]
                last_values = dict(zip((o.name for o in self.objectives), self.values(validation, costs)))
                TrialRecord(
                    validation=validation, kept_epoch=kept_epoch, history=history, last_values=last_values
                ).write(trial)
            raise error
        if isinstance(error, UserError) or not isinstance(error, Exception):  # Ctrl-C and the like
            raise error
        # a bug or resource problem in one candidate must not stop the study
        reason = str(error) if isinstance(error, TrialDiverged) else f"{type(error).__name__}: {error}"
        TrialRecord(fail_reason=reason).write(trial)
        raise TrialFailed(reason) from error

    def values(self, validation: dict[str, dict[str, float]], costs: dict[str, float]) -> list[float]:
        """The objective vector: task metrics from ``validation``, costs from ``costs``."""
        return [costs[o.metric] if o.kind == "cost" else validation[o.task][o.metric] for o in self.objectives]

    def measure_costs(self, trial: optuna.trial.Trial, candidate: dict[str, Any]) -> dict[str, float]:
        """Measure the untrained network's costs, record them and the constraints on the trial.

        Raises :class:`optuna.TrialPruned` (with ``prune_reason``) when a hard limit is
        exceeded: the constraint values stay on the trial, so samplers still learn from it.
        """
        if not self.cost_meter.active:
            return {}
        from mtl_search.architectures import build_model
        from mtl_search.training import resolve_device

        device = self.device if isinstance(self.device, torch.device) else resolve_device(self.device)
        model = build_model(candidate["architecture"], self.data.input_schema, self.data.tasks, stem=self.stem).to(
            device
        )
        costs = self.cost_meter.measure(model, timing_batch(self.data.validation, self.cost_meter.batch_size, device))
        del model
        TrialRecord(costs=costs).write(trial)
        for key, value in self.cost_meter.constraints(costs).items():
            trial.set_constraint(key, value)
        violation = self.cost_meter.describe_violation(costs)
        if violation is not None:
            TrialRecord(prune_reason=violation).write(trial)
            raise optuna.TrialPruned(violation)
        return costs


def record_run_stop(trial: optuna.trial.Trial, error: BaseException) -> None:
    """What stops the run (a setting no candidate can train with, or a bug) fails ``trial``
    too: its reason is stored, so that it is not read as a trial whose worker died."""
    reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
    TrialRecord(fail_reason=f"{reason} (the run stopped here)").write(trial)


# What a repeat copies from the earlier trial: the outcome, not the per-epoch history.
REPEATED_RECORDS = ("validation", "kept_epoch", "test", "n_params", "sharing", "weighting")


def candidate_key(candidate: dict[str, Any]) -> str:
    """Equal for equal candidates, whether fresh from the sampler or read back from storage.

    ``training.checkpoint: last`` and ``training.precision: fp32`` are the trainer's defaults,
    so they are left out: a candidate stored before the option existed equals the same
    candidate with the default written out.
    """
    training = candidate.get("training", {})
    defaults = {"checkpoint": "last", "precision": "fp32"}
    if any(training.get(key) == value for key, value in defaults.items()):
        kept = {k: v for k, v in training.items() if defaults.get(k, object()) != v}
        candidate = candidate | {"training": kept}
    return json.dumps(candidate, sort_keys=True, default=str)


def find_same_candidate(
    study: optuna.Study, candidate: dict[str, Any], trials: Sequence[optuna.trial.FrozenTrial] | None = None
) -> optuna.trial.FrozenTrial | None:
    """The earliest trial of ``study`` (or of ``trials``, read from it) that trained exactly
    ``candidate`` to the end.

    Only COMPLETE trials count: a pruned candidate is trained again, because the pruning
    settings may have changed (and the pruner stops it again cheaply if not); a failure may
    have come from the machine rather than the candidate.
    """
    key = candidate_key(candidate)
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    for trial in trials:
        if trial.state != optuna.trial.TrialState.COMPLETE:
            continue
        record = TrialRecord.read(trial, only=("repeat_of", "validation", "candidate"))
        if (
            record.repeat_of is None
            and record.recorded("validation")
            and record.recorded("candidate")
            and candidate_key(record.candidate.to_dict()) == key
        ):
            return trial
    return None


def describe_candidate(candidate: dict[str, Any], task_names: Sequence[str]) -> str:
    """Architecture summary plus the weighting, in one line."""
    text = summarize(candidate["architecture"], task_names)
    weighting = candidate.get("loss_weighting", {"method": "static"})
    method = weighting.get("method", "static")
    if method == "static":
        weights = weighting.get("weights") or {}
        if weights and len(set(round(w, 6) for w in weights.values())) > 1:
            text += " | w=" + ",".join(f"{weights[t]:.2f}" for t in task_names if t in weights)
    else:
        text += f" | {method}"
    return text
