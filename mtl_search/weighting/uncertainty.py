"""Uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

Each task t has a learned log-variance ``s_t = log sigma_t^2``, trained with the network by
the trainer's optimiser. The total loss is

    regression:      0.5 * exp(-s_t) * L_t + 0.5 * s_t
    classification:        exp(-s_t) * L_t + 0.5 * s_t

Why these forms: for a Gaussian likelihood with variance sigma^2 the negative
log-likelihood of a mean-squared error ``L`` is ``L / (2 sigma^2) + log sigma`` exactly,
which is the regression line. For a softmax (or sigmoid) scaled by ``1 / sigma^2`` the paper
approximates the negative log-likelihood by ``L / sigma^2 + log sigma``, which is the
classification line. Written with ``s = log sigma^2`` rather than ``sigma`` the loss has no
division by zero and the parameter may go negative.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtl_search.values import FloatParam
from mtl_search.weighting.base import EpochMean, ScalarisedLoss

# 1/2 in front of exp(-s) L for a Gaussian likelihood; 1 for the classification approximation
PRECISION_FACTOR = {"regression": 0.5, "binary": 1.0, "multiclass": 1.0}


class UncertaintySpace(BaseModel):
    """``initial_log_variance``: every ``s_t`` at the start (0: sigma = 1)."""

    model_config = ConfigDict(extra="forbid")
    initial_log_variance: FloatParam = 0.0


class UncertaintyWeighting(ScalarisedLoss):
    """Learned homoscedastic uncertainty per task.

    ``task_kinds`` decides the form per task (see the module docstring); ``initial_log_variance``
    is every ``s_t`` at the start. ``weights()`` reports the factor in front of each ``L_t``
    (``0.5 exp(-s_t)`` or ``exp(-s_t)``), averaged over the epoch's batches.
    """

    name = "uncertainty"
    space_model = UncertaintySpace
    needs_task_kinds = True

    def __init__(
        self,
        task_names: Sequence[str],
        task_kinds: Mapping[str, str] | None = None,
        initial_log_variance: float = 0.0,
    ) -> None:
        super().__init__(task_names)
        kinds = dict(task_kinds or {})
        self.initial_log_variance = float(initial_log_variance)
        factors = torch.tensor([PRECISION_FACTOR[kinds.get(name, "regression")] for name in self.task_names])
        self.register_buffer("precision_factors", factors, persistent=False)
        # a parameter: the trainer's optimiser trains it with the network
        self.log_variances = nn.Parameter(torch.full((len(self.task_names),), self.initial_log_variance))
        self._applied = EpochMean(self.task_names)

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum_t c_t exp(-s_t) L_t + 0.5 s_t, with c_t = 0.5 (regression) or 1 (classification)."""
        stacked = torch.stack([losses[name] for name in self.task_names])
        weights = self.precision_factors * torch.exp(-self.log_variances)
        self._applied.add(weights)
        return (weights * stacked).sum() + 0.5 * self.log_variances.sum()

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        applied = self._applied.mean()
        if applied is None:
            current = self.precision_factors * torch.exp(-self.log_variances.detach())
            applied = dict(zip(self.task_names, current.tolist()))
        return applied

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "initial_log_variance": self.initial_log_variance}
