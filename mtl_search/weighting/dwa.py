"""Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019).

A task whose loss fell slowly over the last epoch gets more weight in the next one:

    r_t(e-1) = L_t(e-1) / L_t(e-2)
    w_t(e)   = K * exp(r_t(e-1) / T) / sum_j exp(r_j(e-1) / T)

with ``L_t(e)`` task t's mean training loss in epoch e, ``K`` the number of tasks (so the
weights sum to K, like equal weights) and temperature ``T`` (large T: weights near 1). The
first two epochs have no ratio yet and use weight 1. Weights only change between epochs, so
the method costs nothing per batch.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict, field_validator
from torch import nn

from mtl_search.errors import UserError
from mtl_search.values import PositiveFloat
from mtl_search.weighting.base import LossWeighting, check_smallest, combine

# a task whose loss was exactly 0 two epochs ago has no ratio; this keeps it finite
_TINY_LOSS = 1e-12


def dwa_weights(before_last: Sequence[float], last: Sequence[float], temperature: float) -> list[float]:
    """K * softmax(r / T) with r_t = last_t / before_last_t (the two latest epochs' mean losses)."""
    ratios = [now / max(before, _TINY_LOSS) for before, now in zip(before_last, last)]
    top = max(ratios)  # subtracting the largest ratio keeps exp from overflowing at small T
    scores = [math.exp((r - top) / temperature) for r in ratios]
    total = sum(scores)
    return [len(scores) * s / total for s in scores]


class DWASpace(BaseModel):
    """``temperature`` T: a constant (the paper uses 2), a range or choices."""

    model_config = ConfigDict(extra="forbid")
    temperature: PositiveFloat = 2.0

    @field_validator("temperature")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        return check_smallest(value, 0, strict=True)


class DynamicWeightAverage(LossWeighting):
    name = "dwa"
    space_model = DWASpace

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(task_names)
        if not temperature > 0:
            raise UserError(f"loss_weighting.dwa.temperature: must be positive, got {temperature}")
        self.temperature = float(temperature)
        self._epoch_losses: list[list[float]] = []  # the two latest epochs, oldest first
        self._current = [1.0] * len(self.task_names)

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        total = combine(losses, self.weights(), extra)
        total.backward()
        return total.detach()

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._epoch_losses = (self._epoch_losses + [[epoch_losses[name] for name in self.task_names]])[-2:]
        if len(self._epoch_losses) == 2:
            self._current = dwa_weights(self._epoch_losses[0], self._epoch_losses[1], self.temperature)

    def weights(self) -> dict[str, float]:
        return dict(zip(self.task_names, self._current))

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "temperature": self.temperature}
