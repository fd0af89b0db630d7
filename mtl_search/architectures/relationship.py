"""A task-relationship prior over the towers (Deep Relationship Networks, Long & Wang).

The towers are the task-specific layers every family has. For each tower layer whose
weight has the same shape in every task, the task's weight is flattened into a column;
stacking the columns of all such layers gives ``W`` (D rows, T tasks). The prior is
matrix-normal, ``W ~ MN(0, I_D, Omega)``, with a task covariance ``Omega`` (T x T):

    -log p(W | Omega) = 1/2 tr(W Omega^-1 W^T) + D/2 log det Omega + DT/2 log(2 pi)

Between re-estimations ``Omega`` is fixed, so only the first term depends on the weights;
the loss adds ``weight * 1/2 * tr(W Omega^-1 W^T)`` (the constants are left out).

``Omega`` is re-estimated in closed form after every epoch, as in multi-task relationship
learning (Zhang & Yeung), which the DRN paper follows: with ``M = (W^T W)^(1/2)``,

    Omega = (M + ridge * tr(M)/T * I) / ((1 + ridge) * tr(M))

i.e. the minimiser of tr(W Omega^-1 W^T) over covariances of unit trace, with a ridge
relative to the mean eigenvalue so that its condition number stays below
1 + T/ridge whatever the scale of the weights. It starts at ``I/T`` (tasks unrelated).
The trace form (rather than the maximum-likelihood ``W^T W / D``) keeps the penalty's
scale fixed: it cannot be shrunk by shrinking ``Omega``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from mtl_search.errors import UserError

DEFAULT_RIDGE = 0.1


class TaskRelationshipPrior(nn.Module):
    """The prior's penalty, its closed-form covariance update and a readable report.

    ``layers`` holds, per prior layer, one weight tensor per task (equal shapes, task order
    of ``task_names``). The module owns no parameters: the weights belong to the towers.
    """

    def __init__(
        self,
        layers: Sequence[Sequence[torch.Tensor]],
        task_names: Sequence[str],
        weight: float,
        ridge: float = DEFAULT_RIDGE,
    ) -> None:
        super().__init__()
        if not layers:
            raise UserError("relationship: the towers have no layer of equal shape in every task")
        self.task_names = list(task_names)
        self.weight = float(weight)
        self.ridge = float(ridge)
        # plain list: the tensors are registered on the towers already
        self._layers = [list(per_task) for per_task in layers]
        n_tasks = len(self.task_names)
        self.register_buffer("covariance", torch.eye(n_tasks) / n_tasks)
        self.register_buffer("precision", torch.eye(n_tasks) * n_tasks)

    @classmethod
    def over_towers(
        cls, towers: Mapping[str, nn.Module], task_names: Sequence[str], weight: float, ridge: float = DEFAULT_RIDGE
    ) -> "TaskRelationshipPrior":
        """The prior over every Linear layer position whose weight shape agrees across tasks."""
        linears = {name: [m for m in towers[name].modules() if isinstance(m, nn.Linear)] for name in task_names}
        depth = min(len(layers) for layers in linears.values())
        layers = []
        for position in range(depth):
            weights = [linears[name][position].weight for name in task_names]
            if len({tuple(w.shape) for w in weights}) == 1:
                layers.append(weights)
        return cls(layers, task_names, weight, ridge)

    def stacked(self) -> torch.Tensor:
        """W: one column per task, the task's prior weights flattened and concatenated (D x T)."""
        columns = [torch.cat([layer[t].reshape(-1) for layer in self._layers]) for t in range(len(self.task_names))]
        return torch.stack(columns, dim=1)

    def penalty(self) -> torch.Tensor:
        """weight * 1/2 * tr(W Omega^-1 W^T), written as the sum of Omega^-1 (*) W^T W."""
        w = self.stacked()
        gram = w.T @ w
        return 0.5 * self.weight * (self.precision.to(gram.dtype) * gram).sum()

    @torch.no_grad()
    def reestimate(self) -> None:
        """Omega from the current weights in closed form (see the module docstring)."""
        self.covariance.copy_(closed_form_covariance(self.stacked().detach(), self.ridge).to(self.covariance))
        self.precision.copy_(torch.linalg.inv(self.covariance.double()).to(self.precision))

    def report(self) -> dict[str, Any]:
        covariance = self.covariance.detach().double().cpu()
        scale = covariance.diagonal().sqrt()
        correlation = covariance / torch.outer(scale, scale)
        return {
            "tasks": list(self.task_names),
            "weight": self.weight,
            "ridge": self.ridge,
            "rows": int(sum(layer[0].numel() for layer in self._layers)),
            "covariance": [[round(v, 5) for v in row] for row in covariance.tolist()],
            "correlation": [[round(v, 4) for v in row] for row in correlation.tolist()],
        }


def closed_form_covariance(w: torch.Tensor, ridge: float) -> torch.Tensor:
    """(M + ridge * tr(M)/T * I) / ((1 + ridge) tr(M)) with M = (W^T W)^(1/2); W is D x T."""
    gram = (w.T @ w).double()
    n_tasks = gram.shape[0]
    eigenvalues, vectors = torch.linalg.eigh(gram)
    root = vectors @ torch.diag(eigenvalues.clamp(min=0).sqrt()) @ vectors.T
    trace = root.trace()
    if trace <= 0:  # all-zero weights: nothing learned yet, so no relationship
        return torch.eye(n_tasks, dtype=torch.float64) / n_tasks
    identity = torch.eye(n_tasks, dtype=torch.float64)
    return (root + ridge * trace / n_tasks * identity) / ((1 + ridge) * trace)


def prior_from_spec(
    settings: Any, towers: Mapping[str, nn.Module], task_names: Sequence[str]
) -> TaskRelationshipPrior | None:
    """The prior a spec's ``relationship`` entry asks for; None when absent or weight 0."""
    if settings is None:
        return None
    validate_relationship(settings)
    if float(settings["weight"]) == 0.0:
        return None
    return TaskRelationshipPrior.over_towers(
        towers, task_names, settings["weight"], settings.get("ridge", DEFAULT_RIDGE)
    )


def validate_relationship(settings: Any) -> None:
    if not isinstance(settings, dict) or "weight" not in settings:
        raise UserError("architecture spec: relationship must be an object with 'weight' (and optionally 'ridge')")
    unknown = set(settings) - {"weight", "ridge"}
    if unknown:
        raise UserError(
            f"architecture spec: relationship.{sorted(unknown)[0]} is not a known key (known: weight, ridge)"
        )
    weight, ridge = settings["weight"], settings.get("ridge", DEFAULT_RIDGE)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
        raise UserError(f"architecture spec: relationship.weight must be a number >= 0, got {weight!r}")
    if not isinstance(ridge, (int, float)) or isinstance(ridge, bool) or ridge <= 0:
        raise UserError(f"architecture spec: relationship.ridge must be a number > 0, got {ridge!r}")
