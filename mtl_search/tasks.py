"""Tasks: what is predicted, how it is scored and which way is better.

A task is plain data (name, kind, number of classes, metrics). Its loss and metrics work on
whole tensors at once, and skip rows whose label is missing (NaN), so that partially
labelled data sets train each task on the rows that have its label.

A regression task also carries its target's train mean and standard deviation: the network
learns the target standardised, and the model turns its output back into the column's units
(:class:`mtl_search.architectures.MultiTaskModel`), so that a target of mean 1000 neither
drowns the other tasks' losses nor makes a head spend thousands of steps moving its bias.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mtl_search.errors import UserError

if TYPE_CHECKING:  # imported where tensors are scored: reading a finished study's tasks needs no torch
    import torch

KINDS = ("binary", "multiclass", "regression")

# metric name -> (direction, kinds it applies to)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "auc": ("maximize", ("binary",)),
    "accuracy": ("maximize", ("binary", "multiclass")),
    "logloss": ("minimize", ("binary", "multiclass")),
    "mse": ("minimize", ("regression",)),
    "rmse": ("minimize", ("regression",)),
    "mae": ("minimize", ("regression",)),
}
DEFAULT_METRICS = {"binary": ("auc",), "multiclass": ("accuracy",), "regression": ("mse",)}


class TaskError(UserError):
    """A bad task field; ``field`` (name, kind, classes, metrics, target or given) and ``task``
    (the task's name, where the error is about tasks together) let a description file name its key."""

    def __init__(self, message: str, field: str = "", task: str = "") -> None:  # defaults keep it picklable
        super().__init__(message)
        self.field = field
        self.task = task


@dataclasses.dataclass(frozen=True)
class Task:
    """One prediction target.

    ``metrics`` lists the metrics computed on held-out data; each becomes one objective of
    the search unless the search is told otherwise. ``given`` names a task this one is
    conditional on (entire-space modelling, ESMM style); None for ordinary tasks.
    ``target_mean`` and ``target_std`` (regression only) are the target's statistics on the
    train split; None until :class:`mtl_search.data.base.MultiTaskData` measures them, and
    read as 0 and 1 (no scaling) meanwhile.
    """

    name: str
    kind: str
    n_classes: int = 0
    metrics: tuple[str, ...] = ()
    given: str | None = None
    target_mean: float | None = None
    target_std: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "_-." for c in self.name):
            raise TaskError(f"task name {self.name!r}: use letters, digits, '_', '-' or '.'", "name")
        if self.kind not in KINDS:
            raise TaskError(
                f"task {self.name!r}: unknown kind {self.kind!r} (expected one of {', '.join(KINDS)})", "kind"
            )
        if self.kind == "multiclass" and self.n_classes < 2:
            raise TaskError(
                f"task {self.name!r}: a multiclass task needs at least 2 classes, got {self.n_classes}", "classes"
            )
        if self.kind == "binary":
            object.__setattr__(self, "n_classes", 2)
        if not self.metrics:
            object.__setattr__(self, "metrics", DEFAULT_METRICS[self.kind])
        for metric in self.metrics:
            if metric not in METRICS:
                raise TaskError(
                    f"task {self.name!r}: unknown metric {metric!r} (known: {', '.join(METRICS)})", "metrics"
                )
            if self.kind not in METRICS[metric][1]:
                raise TaskError(
                    f"task {self.name!r}: metric {metric!r} does not apply to a {self.kind} task", "metrics"
                )
        self._check_target_statistics()

    def _check_target_statistics(self) -> None:
        mean, std = self.target_mean, self.target_std
        if mean is None and std is None:
            return
        if self.kind != "regression":
            raise TaskError(
                f"task {self.name!r}: only a regression task has target_mean and target_std ({self.name!r} is {self.kind})",
                "target",
            )
        if mean is None or std is None:
            raise TaskError(f"task {self.name!r}: give target_mean and target_std together", "target")
        try:
            mean, std = float(mean), float(std)
        except (TypeError, ValueError):
            mean = std = math.nan
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise TaskError(
                f"task {self.name!r}: target_mean must be a finite number and target_std a positive one, "
                f"got {self.target_mean!r} and {self.target_std!r}",
                "target",
            )
        object.__setattr__(self, "target_mean", mean)
        object.__setattr__(self, "target_std", std)

    @property
    def output_size(self) -> int:
        """Width of the model output for this task (logits for classification)."""
        return self.n_classes if self.kind == "multiclass" else 1

    def direction(self, metric: str) -> str:
        return METRICS[metric][0]

    @property
    def target_scale(self) -> tuple[float, float]:
        """(mean, std) that turn a standardised output into the target's units; (0, 1) for
        other kinds and for a regression task not yet measured (or stored before scaling)."""
        if self.target_mean is None or self.target_std is None:
            return 0.0, 1.0
        return self.target_mean, self.target_std

    def with_target_statistics(self, target: torch.Tensor) -> "Task":
        """This regression task with the mean and standard deviation of ``target``'s labelled
        rows (a constant or absent target gets std 1). Summed with ``math.fsum``, exactly
        rounded, so that every machine that reads the data stores the same numbers and a
        study continued elsewhere is not taken for one made with other data."""
        values = target.detach().cpu().double().reshape(-1).numpy()
        values = values[~np.isnan(values)]
        if not values.size:
            return dataclasses.replace(self, target_mean=0.0, target_std=1.0)
        mean = math.fsum(values) / values.size
        std = math.sqrt(math.fsum(np.square(values - mean)) / values.size)  # elementwise IEEE: the same everywhere
        return dataclasses.replace(
            self, target_mean=mean, target_std=std if math.isfinite(std) and std > 1e-12 else 1.0
        )

    # -- loss -------------------------------------------------------------------------
    def loss(self, output: torch.Tensor, target: torch.Tensor, *, all_labelled: bool = False) -> torch.Tensor:
        """Mean loss over the rows that carry a label (target not NaN).

        Returns 0 (with a graph) when a batch holds no labelled row for this task.
        ``all_labelled=True`` skips the check (the trainer knows when a split has no gap,
        and the check costs a device synchronisation per batch on a GPU).
        """
        import torch
        from torch.nn import functional as F

        mask = None if all_labelled else ~torch.isnan(target)
        if mask is not None and not bool(mask.all()):
            if not bool(mask.any()):
                return output.sum() * 0.0
            output, target = output[mask], target[mask]
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(output.reshape(-1), target)
        if self.kind == "multiclass":
            return F.cross_entropy(output, target.long())
        # the MSE of the standardised target: comparable with the other tasks' losses
        return F.mse_loss(output.reshape(-1), target) / self.target_scale[1] ** 2

    def constant_loss(self, target: torch.Tensor) -> float:
        """The loss of the best constant prediction on ``target``'s labelled rows (its mean, or
        its class frequencies): the scale a trained model's loss is read against (1 for a
        standardised regression target); 0 for a constant or unlabelled target."""
        import torch

        values = target[~torch.isnan(target)].detach().double().cpu()
        if not values.numel():
            return 0.0
        if self.kind == "regression":
            return float(values.var(unbiased=False)) / self.target_scale[1] ** 2
        frequencies = torch.bincount(values.long(), minlength=self.n_classes).double() / values.numel()
        frequencies = frequencies[frequencies > 0]
        return float(-(frequencies * frequencies.log()).sum())

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """Model output turned into what a user reads: P(y=1), class probabilities or the value."""
        import torch

        if self.kind == "binary":
            return torch.sigmoid(output.reshape(-1))
        if self.kind == "multiclass":
            return torch.softmax(output, dim=-1)
        return output.reshape(-1)

    # -- metrics ----------------------------------------------------------------------
    def evaluate(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Every metric of the task on the labelled rows of ``output``/``target``."""
        import torch

        mask = ~torch.isnan(target)
        output, target = output[mask].detach().float().cpu(), target[mask].cpu()
        return {metric: _metric(metric, self, output, target) for metric in self.metrics}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self) | {"metrics": list(self.metrics)}
        if self.target_mean is None:
            # not measured (a declaration, as a table's description stores it): the same
            # keys as before scaling existed, so that descriptions stored then still match
            del data["target_mean"], data["target_std"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Task":
        """A stored task; a regression task stored without statistics (by an earlier release,
        before targets were standardised) learned its raw target, and reads as mean 0, std 1."""
        regression = data["kind"] == "regression"
        return cls(
            name=data["name"],
            kind=data["kind"],
            n_classes=int(data.get("n_classes", 0)),
            metrics=tuple(data.get("metrics", ())),
            given=data.get("given"),
            target_mean=data.get("target_mean", 0.0 if regression else None),
            target_std=data.get("target_std", 1.0 if regression else None),
        )


def _metric(metric: str, task: Task, output: torch.Tensor, target: torch.Tensor) -> float:
    if target.numel() == 0:
        return math.nan
    if metric == "auc":
        return binary_auc(output.reshape(-1).numpy(), target.numpy())
    if metric == "accuracy":
        if task.kind == "binary":
            predicted = (output.reshape(-1) > 0).float()
        else:
            predicted = output.argmax(dim=-1).float()
        return float((predicted == target).float().mean())
    if metric == "logloss":
        from torch.nn import functional as F

        if task.kind == "binary":
            return float(F.binary_cross_entropy_with_logits(output.reshape(-1), target))
        return float(F.cross_entropy(output, target.long()))
    error = output.reshape(-1) - target
    if metric == "mse":
        return float((error**2).mean())
    if metric == "rmse":
        return float((error**2).mean().sqrt())
    if metric == "mae":
        return float(error.abs().mean())
    raise KeyError(metric)


def parse_task_declaration(text: str) -> Task:
    """Parse ``name:kind[:option=value...]`` as given to ``--task``.

    Options: ``classes=N`` (multiclass), ``metrics=auc+logloss``, ``given=other_task``.
    """
    parts = text.split(":")
    if len(parts) < 2 or not parts[0]:
        raise UserError(f"--task {text!r}: expected NAME:KIND, for example income:binary")
    name, kind, options = parts[0], parts[1], parts[2:]
    kwargs: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise UserError(f"--task {text!r}: option {option!r} is not KEY=VALUE")
        if key == "classes":
            try:
                kwargs["n_classes"] = int(value)
            except ValueError:
                raise UserError(f"--task {text!r}: classes={value!r} is not a whole number") from None
        elif key == "metrics":
            kwargs["metrics"] = tuple(m for m in value.split("+") if m)
            if not kwargs["metrics"]:  # would silently mean the default metrics
                raise UserError(f"--task {text!r}: metrics= names no metric (known: {', '.join(METRICS)})")
        elif key == "given":
            kwargs["given"] = value
        else:
            raise UserError(f"--task {text!r}: unknown option {key!r} (known: classes, metrics, given)")
    if kind == "multiclass" and "n_classes" not in kwargs:
        kwargs["n_classes"] = 2  # refined from the data by loaders that see the labels
    task = Task(name=name, kind=kind, **kwargs)
    if "n_classes" in kwargs and kind != "multiclass":  # would be ignored: refused, as in a description file
        raise UserError(f"--task {text!r}: only a multiclass task has classes (task {name!r} is {kind})")
    return task


def validate_conditions(tasks: Sequence[Task]) -> None:
    """Every ``given`` names another binary task of the data, without cycles."""
    by_name = {task.name: task for task in tasks}
    for task in tasks:
        if task.given is None:
            continue
        if task.given not in by_name:
            raise TaskError(
                f"task {task.name!r}: given={task.given} is not a task of the data (tasks: {', '.join(by_name)})",
                "given",
                task.name,
            )
        if task.kind != "binary" or by_name[task.given].kind != "binary":
            raise TaskError(f"task {task.name!r}: given={task.given} needs both tasks to be binary", "given", task.name)
        seen = {task.name}
        current = by_name[task.given]
        while current.given is not None:
            if current.name in seen:
                raise TaskError(
                    f"task {task.name!r}: the given= conditions form a cycle through {current.name!r}",
                    "given",
                    task.name,
                )
            seen.add(current.name)
            current = by_name[current.given]


def binary_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``labels`` (1 positive, 0 negative);
    NaN unless both classes occur.

    The Mann-Whitney form: the mean rank of the positives among all scores, tied scores sharing
    their average rank, which counts a tied positive-negative pair as half, as the ROC curve's
    diagonal segment through tied scores does. It equals scikit-learn's ``roc_auc_score`` to
    float rounding at a tenth of its cost, which matters because every epoch of every trial
    scores its validation split.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(labels).reshape(-1) > 0.5
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return math.nan
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # runs of equal scores: [starts, ends) in sorted order, ranks 1-based
    boundaries = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [ordered.size]))
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    rank_sum = float(ranks[positive[order]].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative)
