"""Reference models a front is read against: one single-task network and one gradient-boosted
model (LightGBM) per task, each trained on that task alone with the study's split.

Both are scored by the trainer's own :func:`~mtl_search.training.trainer.evaluate` path
(``Task.evaluate`` on the same rows, a conditional task on the rows where its condition
holds), so their metrics compare one to one with a trial's.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch

from mtl_search.architectures import build_model
from mtl_search.architectures.conditional import evaluation_targets
from mtl_search.data.base import MultiTaskData, Split
from mtl_search.training.trainer import count_parameters, train_network

# the single-task network: this many hidden blocks, their width sized to a parameter budget
REFERENCE_DEPTH = 2
# widths tried when sizing; a budget larger than the widest network gets the widest
MAX_REFERENCE_WIDTH = 8192

GBDT_MAX_TREES = 2000
GBDT_EARLY_STOPPING_ROUNDS = 100
GBDT_INPUT_KINDS = ("vector", "tabular")
GBDT_INSTALL_HINT = "pip install 'mtl-search[gbdt]'"


def single_task_view(data: MultiTaskData, task_name: str) -> MultiTaskData:
    """``data`` with ``task_name`` as its only task, on the same rows and split.

    A conditional (``given=``) task becomes an ordinary one labelled only where its condition
    holds: the rows its metrics are computed on in the multi-task study.
    """
    task = data.task(task_name)

    def view(split: Split) -> Split:
        target = evaluation_targets(data.tasks, split.targets)[task_name]
        return Split(inputs=split.inputs, targets={task_name: target})

    return MultiTaskData(
        name=f"{data.name}:{task_name}",
        tasks=[dataclasses.replace(task, given=None)],
        train=view(data.train),
        validation=view(data.validation),
        test=view(data.test),
        input_schema=data.input_schema,
        description=data.description,
        preprocessing=data.preprocessing,
    )


def single_task_spec(task_name: str, width: int, template: dict[str, Any]) -> dict[str, Any]:
    """A plain stack of :data:`REFERENCE_DEPTH` blocks of ``width`` for one task, with the
    block, tower and stem settings of the ``template`` architecture spec."""
    return {
        "family": "tree",
        "widths": [int(width)] * REFERENCE_DEPTH,
        "groups": [[[task_name]]] * REFERENCE_DEPTH,
        "block": dict(template.get("block") or {}),
        "tower": dict(template.get("tower") or {}),
        "stem": dict(template.get("stem") or {}),
    }


def parameter_count(
    data: MultiTaskData, task_name: str, width: int, template: dict[str, Any], stem: torch.nn.Module | None = None
) -> int:
    """Trainable parameters of the single-task network of ``width``, built without memory
    (on torch's meta device) so that sizing a large one costs nothing."""
    view = single_task_view(data, task_name)
    with torch.device("meta"):
        model = build_model(single_task_spec(task_name, width, template), view.input_schema, view.tasks, stem=stem)
    return count_parameters(model)


def width_for_parameters(
    data: MultiTaskData, task_name: str, budget: int, template: dict[str, Any], stem: torch.nn.Module | None = None
) -> int:
    """The width whose single-task network's parameter count is closest to ``budget``
    (counts grow with the width, so a bisection finds it)."""

    def count(width: int) -> int:
        return parameter_count(data, task_name, width, template, stem)

    low, high = 1, MAX_REFERENCE_WIDTH
    if count(high) <= budget:
        return high
    while high - low > 1:  # count(low) < budget <= count(high), or low == 1
        middle = (low + high) // 2
        if count(middle) < budget:
            low = middle
        else:
            high = middle
    return low if abs(count(low) - budget) <= abs(count(high) - budget) else high


def train_single_task(
    data: MultiTaskData,
    task_name: str,
    candidate: dict[str, Any],
    *,
    device: torch.device | str | None = None,
    stem: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Train ``candidate`` (a single-task spec, see :func:`single_task_spec`) on ``task_name``
    alone; its metrics on validation (of the kept epoch) and test, size and time."""
    result = train_network(single_task_view(data, task_name), candidate, device=device, stem=stem)
    return {
        "validation": result.validation[task_name],
        "test": result.test[task_name],
        "n_params": result.n_params,
        "kept_epoch": result.kept_epoch,
        "seconds": result.wall_time,
        "settings": {"architecture": candidate["architecture"], "training": candidate["training"]},
    }


def gbdt_available() -> bool:
    """Whether LightGBM can be imported (the ``gbdt`` extra)."""
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        return False
    return True


def gbdt_refusal(data: MultiTaskData) -> str | None:
    """Why no gradient-boosted reference can be trained on ``data``, or None."""
    if not gbdt_available():
        return f"LightGBM is not installed ({GBDT_INSTALL_HINT})"
    kind = data.input_schema.get("kind")
    if kind not in GBDT_INPUT_KINDS:
        return f"LightGBM takes table or vector inputs, and data {data.name!r} has {kind} inputs"
    return None


def feature_matrix(split: Split) -> Any:
    """Every input of ``split`` as plain columns (categorical codes as numbers), inputs in name order."""
    import numpy as np

    parts = [
        split.inputs[name].detach().cpu().reshape(len(split), -1).double().numpy() for name in sorted(split.inputs)
    ]
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(split), 0))


def train_gbdt(data: MultiTaskData, task_name: str, *, seed: int = 0, threads: int = 1) -> dict[str, Any]:
    """One LightGBM model for ``task_name``: at most :data:`GBDT_MAX_TREES` trees, stopped
    early when the validation loss has not improved for :data:`GBDT_EARLY_STOPPING_ROUNDS`,
    LightGBM's defaults otherwise, seeded and deterministic. Its raw scores (log-odds, class
    scores, values) are scored as a network's outputs are."""
    import lightgbm
    import numpy as np

    view = single_task_view(data, task_name)
    task = view.tasks[0]
    started = time.perf_counter()
    matrices = {name: feature_matrix(getattr(view, name)) for name in ("train", "validation", "test")}
    labels = {name: getattr(view, name).targets[task_name].detach().cpu().double().numpy() for name in matrices}
    labelled = {name: ~np.isnan(labels[name]) for name in matrices}
    objective = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}[task.kind]
    params: dict[str, Any] = {
        "objective": objective,
        "seed": int(seed),
        "deterministic": True,
        "force_row_wise": True,  # with deterministic: the same trees on every run
        "num_threads": int(threads),
        "verbose": -1,
    }
    if task.kind == "multiclass":
        params["num_class"] = task.n_classes
    train_set = lightgbm.Dataset(matrices["train"][labelled["train"]], labels["train"][labelled["train"]])
    valid_set = train_set.create_valid(
        matrices["validation"][labelled["validation"]], labels["validation"][labelled["validation"]]
    )
    booster = lightgbm.train(
        params,
        train_set,
        num_boost_round=GBDT_MAX_TREES,
        valid_sets=[valid_set],
        callbacks=[lightgbm.early_stopping(GBDT_EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    trees = int(booster.best_iteration or booster.current_iteration())
    scores = {}
    for name in ("validation", "test"):
        raw = booster.predict(matrices[name], raw_score=True, num_iteration=trees)
        output = torch.as_tensor(np.asarray(raw), dtype=torch.float32)
        target = getattr(view, name).targets[task_name].detach().cpu()
        metrics = task.evaluate(output, target)
        mask = ~torch.isnan(target)
        metrics["loss"] = float(task.loss(output[mask], target[mask])) if bool(mask.any()) else math.nan
        scores[name] = metrics
    return {
        "validation": scores["validation"],
        "test": scores["test"],
        "trees": trees,
        "seconds": time.perf_counter() - started,
        "settings": {
            "library": f"lightgbm {lightgbm.__version__}",
            "max_trees": GBDT_MAX_TREES,
            "early_stopping_rounds": GBDT_EARLY_STOPPING_ROUNDS,
            "seed": int(seed),
        },
    }
