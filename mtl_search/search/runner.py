"""Running a search: the pieces put together, as the CLI and the Python API use them."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import optuna
import torch

from mtl_search.data.base import MultiTaskData
from mtl_search.search.objective import CandidateObjective, EpochHook, ResultHook, TrialFailed
from mtl_search.search.space import SearchSpace
from mtl_search.search.storage import open_storage
from mtl_search.search.study import create_or_continue, make_sampler, objectives_for


@dataclasses.dataclass
class SearchSettings:
    study_name: str
    storage: str | None = None
    sampler: str = "tpe"
    seed: int = 0
    n_trials: int | None = 20
    timeout: float | None = None
    epochs: int | None = None
    device: str | None = None


def run_search(
    data: MultiTaskData,
    space: SearchSpace,
    settings: SearchSettings,
    *,
    epoch_hooks: Sequence[EpochHook] = (),
    result_hooks: Sequence[ResultHook] = (),
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
    stem: torch.nn.Module | None = None,
    enqueue: Sequence[dict[str, Any]] = (),
    storage: optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """Create or continue the study and run ``n_trials`` more trials (or until ``timeout``).

    ``enqueue`` holds parameter dictionaries to try first (e.g. from affinity seeding).
    """
    objectives = objectives_for(data.tasks, space.objectives.metrics)
    storage = storage or open_storage(settings.storage)
    study = create_or_continue(
        settings.study_name, settings.storage, data, objectives, space.to_data(),
        make_sampler(settings.sampler, settings.seed), storage=storage,
    )
    for params in enqueue:
        study.enqueue_trial(params, skip_if_exists=True)
    objective = CandidateObjective(
        data, space, objectives, seed=settings.seed, epochs=settings.epochs, device=settings.device,
        epoch_hooks=epoch_hooks, result_hooks=result_hooks, stem=stem,
    )
    study.optimize(
        objective,
        n_trials=settings.n_trials,
        timeout=settings.timeout,
        catch=(TrialFailed,),
        callbacks=list(callbacks),
        gc_after_trial=False,
    )
    return study
