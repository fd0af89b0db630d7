"""The objective: sample a candidate, train it, record it, return its validation metrics."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import optuna
import torch

from mtl_search.architectures import summarize
from mtl_search.data.base import MultiTaskData
from mtl_search.errors import TrialDiverged, UserError
from mtl_search.search.space import SearchSpace
from mtl_search.search.study import Objective
from mtl_search.training import TrainResult, train_candidate


class TrialFailed(Exception):
    """A candidate could not be trained; the reason is on the trial as ``fail_reason``."""


# Called after each epoch with (trial, epoch index, validation scores); may raise
# optuna.TrialPruned. Pruners and progress displays plug in here.
EpochHook = Callable[[optuna.trial.Trial, int, dict[str, dict[str, float]]], None]
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
        epochs: int | None = None,
        device: torch.device | str | None = None,
        epoch_hooks: Sequence[EpochHook] = (),
        result_hooks: Sequence[ResultHook] = (),
        stem: torch.nn.Module | None = None,
    ) -> None:
        self.data = data
        self.space = space
        self.objectives = list(objectives)
        self.seed = seed
        self.epochs = epochs
        self.device = device
        self.epoch_hooks = list(epoch_hooks)
        self.result_hooks = list(result_hooks)
        self.stem = stem

    def __call__(self, trial: optuna.trial.Trial) -> list[float]:
        candidate = self.space.sample(trial, self.data.task_names, seed=self.seed, epochs=self.epochs)
        return self.train_and_record(trial, candidate)

    def train_and_record(self, trial: optuna.trial.Trial, candidate: dict[str, Any]) -> list[float]:
        trial.set_user_attr("candidate", candidate)
        trial.set_user_attr("summary", describe_candidate(candidate, self.data.task_names))
        history: list[dict[str, Any]] = []

        def on_epoch(epoch: int, scores: dict[str, dict[str, float]]) -> None:
            history.append(scores)
            for hook in self.epoch_hooks:
                hook(trial, epoch, scores)

        try:
            result = train_candidate(self.data, candidate, device=self.device, on_epoch=on_epoch, stem=self.stem)
        except optuna.TrialPruned:
            if history:
                trial.set_user_attr("validation", history[-1])
                trial.set_user_attr("history", [{"epoch": i + 1, "validation": s} for i, s in enumerate(history)])
            raise
        except (UserError, KeyboardInterrupt):
            raise
        except TrialDiverged as error:
            trial.set_user_attr("fail_reason", str(error))
            raise TrialFailed(str(error)) from error
        except Exception as error:  # a bug or resource problem in one candidate must not stop the study
            reason = f"{type(error).__name__}: {error}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason) from error
        for key, value in result.to_record().items():
            trial.set_user_attr(key, value)
        for hook in self.result_hooks:
            hook(trial, candidate, result)
        values = [result.validation[o.task][o.metric] for o in self.objectives]
        if not all(math.isfinite(v) for v in values):
            bad = [o.name for o, v in zip(self.objectives, values) if not math.isfinite(v)]
            reason = f"validation metric(s) not finite: {', '.join(bad)}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason)
        return values


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
