"""Geometric loss strategy (Chennupati, Sistu, Yogamani and Rawashdeh, CVPR workshops 2019).

The total loss is the geometric mean of the task losses,

    L = (L_1 * L_2 * ... * L_T) ** (1 / T)

computed as exp(mean_t log L_t) so that a product of many small losses does not underflow.
Its gradient puts the weight ``L / (T * L_t)`` on task t's loss: a task whose loss is small
relative to the others is pushed harder, so no task's scale dominates the sum. Nothing is
searched and nothing is kept between batches.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from mtl_search.weighting.base import EpochMean, ScalarisedLoss

# log of a loss of exactly 0 is -inf; a floor keeps the mean finite (its gradient is then 0)
SMALLEST_LOSS = 1e-12


class GeometricLossStrategy(ScalarisedLoss):
    """The geometric mean of the task losses; ``weights()`` reports the factor in front of each
    ``L_t`` in its gradient, ``L / (T L_t)``, averaged over the epoch's batches."""

    name = "gls"

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
        self._applied = EpochMean(self.task_names)

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """(prod_t L_t) ** (1/T), with each L_t floored at SMALLEST_LOSS."""
        stacked = torch.stack([losses[name] for name in self.task_names]).clamp_min(SMALLEST_LOSS)
        geometric_mean = torch.exp(torch.log(stacked).mean())
        self._applied.add(geometric_mean.detach() / (len(self.task_names) * stacked.detach()))
        return geometric_mean

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        applied = self._applied.mean()
        return applied if applied is not None else {name: 1.0 / len(self.task_names) for name in self.task_names}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name}
