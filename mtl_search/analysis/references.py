"""Delta-m: how much a multi-task network gains or loses against single-task networks.

For each task objective (a task's metric ``M``) and the single-task network's value of the
same metric ``M_st``, the relative change in percent, signed so that positive is better::

    change = s * (M - M_st) / M_st * 100,   s = +1 when higher is better, -1 when lower is

(the sign convention of LibMTL's Delta-p: its ``(-1)^w`` with ``w = 1`` for higher-is-better
metrics, applied to ``M_st - M``). A task's change is the mean over its objective metrics,
and Delta-m the mean over tasks. A task whose change is below zero did worse than its
single-task network: negative transfer. A change is unknown (None) where either value is
missing or not finite, or the reference is 0.

No torch here: ``pareto`` reads stored references and computes this in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Any, Mapping, Sequence

from mtl_search.records.objective import Objective
from mtl_search.records.references import ReferenceModel, ReferenceRecord


def relative_change(value: Any, reference: Any, direction: str) -> float | None:
    """The change of ``value`` against ``reference`` in percent, positive when better."""
    if not _finite(value) or not _finite(reference) or reference == 0:
        return None
    change = (float(value) - float(reference)) / abs(float(reference)) * 100.0
    return change if direction == "maximize" else -change


@dataclasses.dataclass(frozen=True)
class Transfer:
    """A network's changes against the references: ``delta_m`` (None when no task's is
    known), per task, and the tasks that lost (negative transfer)."""

    delta_m: float | None
    tasks: dict[str, float | None]
    negative: list[str]


def transfer(
    values: Mapping[str, Mapping[str, Any]],
    references: Mapping[str, ReferenceModel],
    objectives: Sequence[Objective],
    split: str = "validation",
) -> Transfer:
    """Delta-m of a network whose metrics are ``values`` (``{task: {metric: value}}``) against
    ``references`` (single-task models by task), over the task ``objectives``, on ``split``."""
    by_task: dict[str, list[float | None]] = {}
    for objective in objectives:
        if objective.kind != "task":
            continue
        model = references.get(objective.task)
        reference = getattr(model, split).get(objective.metric) if model is not None else None
        value = (values.get(objective.task) or {}).get(objective.metric)
        by_task.setdefault(objective.task, []).append(relative_change(value, reference, objective.direction))
    tasks = {
        task: (statistics.fmean(known) if (known := [c for c in changes if c is not None]) else None)
        for task, changes in by_task.items()
    }
    known = [change for change in tasks.values() if change is not None]
    return Transfer(
        delta_m=statistics.fmean(known) if known else None,
        tasks=tasks,
        negative=[task for task, change in tasks.items() if change is not None and change < 0],
    )


def row_transfer(row: Mapping[str, Any], record: ReferenceRecord | None, objectives: Sequence[Objective]) -> dict:
    """The Delta-m keys of one front row (see :func:`mtl_search.analysis.front.front_rows`):
    ``delta_m`` and ``task_change`` (percent, on validation, what chose the front),
    ``negative_transfer`` (the tasks below their single-task network on validation), and the
    same on test as ``delta_m_test``, ``task_change_test``, ``negative_transfer_test``.
    None and empty without stored references."""
    if record is None or not record.single_task:
        return {
            "delta_m": None,
            "task_change": {},
            "negative_transfer": [],
            "delta_m_test": None,
            "task_change_test": {},
            "negative_transfer_test": [],
        }
    names = {o.name: o for o in objectives}
    validation: dict[str, dict[str, Any]] = {}
    for name, value in (row.get("values") or {}).items():
        objective = names.get(name)
        if objective is not None and objective.kind == "task":
            validation.setdefault(objective.task, {})[objective.metric] = value
    on_validation = transfer(validation, record.single_task, objectives, "validation")
    on_test = transfer(row.get("test") or {}, record.single_task, objectives, "test")
    return {
        "delta_m": on_validation.delta_m,
        "task_change": on_validation.tasks,
        "negative_transfer": on_validation.negative,
        "delta_m_test": on_test.delta_m,
        "task_change_test": on_test.tasks,
        "negative_transfer_test": on_test.negative,
    }


def reference_points(
    record: ReferenceRecord | None, objectives: Sequence[Objective], split: str = "validation"
) -> dict[str, list[float | None]]:
    """Each kind of reference model as a point in objective space (``{label: [value per
    objective]}``): a task objective is its model's metric; the ``params`` cost is the sum of
    the single-task networks' parameters; any other value is unknown (None)."""
    if record is None:
        return {}
    points = {}
    for label, models in record.models().items():
        point: list[float | None] = []
        for objective in objectives:
            if objective.kind == "task":
                model = models.get(objective.task)
                value = getattr(model, split).get(objective.metric) if model is not None else None
                point.append(float(value) if _finite(value) else None)
            elif objective.metric == "params" and all(m.n_params is not None for m in models.values()):
                point.append(float(sum(m.n_params or 0 for m in models.values())))
            else:
                point.append(None)
        points[label] = point
    return points


def reference_rows(
    record: ReferenceRecord, objectives: Sequence[Objective]
) -> list[tuple[str, Objective, ReferenceModel, str]]:
    """(model label, objective, its reference model, its size in words) for each task objective
    a stored reference model scores, in the order ``pareto`` and the report list them."""
    rows = []
    for label, models in record.models().items():
        for objective in objectives:
            model = models.get(objective.task) if objective.kind == "task" else None
            if model is not None:
                size = f"{model.n_params} parameters" if model.n_params is not None else f"{model.trees} trees"
                rows.append((label, objective, model, size))
    return rows


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
