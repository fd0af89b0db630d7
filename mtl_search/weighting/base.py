"""The loss-weighting interface.

A weighting method has one job: given this batch's per-task losses (and the model, for the
methods that look at gradients of its shared part), put gradients into the parameters'
``.grad``. The trainer then takes the optimiser step. Methods never know which family the
model belongs to: they reach shared parts only through ``model.shared_parameters()`` and
``model.representations``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


class LossWeighting:
    """Base class: subclasses implement :meth:`backward` and may override the hooks."""

    name = "base"
    # True when the method needs model.representations (the towers' inputs) kept by forward.
    needs_representations = False

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = list(task_names)

    def parameters(self) -> list[nn.Parameter]:
        """Learned parameters the trainer's optimiser updates with the model's (e.g. log-variances)."""
        return []

    def to(self, device: torch.device | str) -> "LossWeighting":
        return self

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        """Compute gradients for this batch; return the scalar total loss (detached) for logging.

        ``extra`` is a loss term the architecture adds (a regulariser); it is added with weight 1.
        """
        raise NotImplementedError

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        """Called after every epoch with the mean training loss per task."""

    def weights(self) -> dict[str, float]:
        """The weights currently applied per task, recorded with the trial each epoch."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The method and its hyperparameters as JSON data."""
        return {"method": self.name}


def combine(losses: dict[str, torch.Tensor], weights: dict[str, float | torch.Tensor], extra: torch.Tensor | None) -> torch.Tensor:
    total = sum(weights[name] * loss for name, loss in losses.items())
    if extra is not None:
        total = total + extra
    return total
