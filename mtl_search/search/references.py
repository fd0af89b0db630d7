"""Training a study's reference models and storing them with it (``mtl-search baselines``).

Per task, a single-task network and, with LightGBM installed, a gradient-boosted model
(:mod:`mtl_search.training.references`), on the study's data and split. The networks get
the study's budget: each is sized to the parameter count of the front's median-sized
trial (so every task alone gets as large a network as the multi-task network that serves
all of them, as single-task baselines usually are) and trains with that trial's training
settings (epochs, batch size, learning rate, weight decay, optimiser, seed, checkpoint,
precision) and its block, tower and stem settings.
"""

from __future__ import annotations

from typing import Any, Callable

import optuna
import torch

from mtl_search.data.base import MultiTaskData
from mtl_search.errors import UserError
from mtl_search.records.references import ReferenceModel, ReferenceRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import pareto_trials
from mtl_search.training.references import (
    gbdt_refusal,
    single_task_spec,
    train_gbdt,
    train_single_task,
    width_for_parameters,
)
from mtl_search.version import __version__

# (kind label, task, the model's record): called after each reference model trained
ModelCallback = Callable[[str, str, ReferenceModel], None]


def sizing_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The front trial with the median parameter count (the lower median; ties by trial
    number): its size and training settings are the single-task networks' budget."""
    front = [t for t in pareto_trials(study) if TrialRecord.read(t, only=("n_params",)).n_params is not None]
    if not front:
        raise UserError(
            f"study {study.study_name!r}: no completed trial yet; the reference networks get the size and "
            f"training budget of the front's median network, so run the search first"
        )
    ranked = sorted(front, key=lambda t: (TrialRecord.read(t, only=("n_params",)).n_params, t.number))
    return ranked[(len(ranked) - 1) // 2]


def single_task_candidate(template: TrialRecord, task_name: str, width: int) -> dict[str, Any]:
    """The single-task network of ``width`` for ``task_name``, trained as ``template`` was."""
    return {
        "architecture": single_task_spec(task_name, width, template.candidate.architecture),
        "training": dict(template.candidate.training),
        "loss_weighting": {"method": "static"},
    }


def train_references(
    study: optuna.Study,
    data: MultiTaskData,
    *,
    device: torch.device | str | None = None,
    stem: torch.nn.Module | None = None,
    gbdt: bool = True,
    on_model: ModelCallback | None = None,
) -> ReferenceRecord:
    """Train every task's reference models on ``data`` (the study's own), store them on
    ``study`` (replacing earlier ones) and return their record.

    ``gbdt`` False, LightGBM not installed, or inputs it does not take (images, sequences):
    networks only, and the record's ``gbdt_skipped`` says why.
    """
    trial = sizing_trial(study)
    template = TrialRecord.read(trial)
    budget = int(template.n_params or 0)
    networks: dict[str, ReferenceModel] = {}
    for task in data.task_names:
        width = width_for_parameters(data, task, budget, template.candidate.architecture, stem)
        candidate = single_task_candidate(template, task, width)
        networks[task] = ReferenceModel(**train_single_task(data, task, candidate, device=device, stem=stem))
        if on_model is not None:
            on_model("single-task network", task, networks[task])
    skipped = "not asked for" if not gbdt else gbdt_refusal(data)
    boosted: dict[str, ReferenceModel] = {}
    if skipped is None:
        seed = template.candidate.seed
        for task in data.task_names:
            boosted[task] = ReferenceModel(**train_gbdt(data, task, seed=seed, threads=torch.get_num_threads()))
            if on_model is not None:
                on_model("LightGBM", task, boosted[task])
    record = ReferenceRecord(
        version=__version__,
        single_task=networks,
        gbdt=boosted,
        gbdt_skipped=skipped,
        sized_like_trial=trial.number,
        parameter_budget=budget,
    )
    record.write(study)
    return record
