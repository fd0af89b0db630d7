"""Smooth Tchebycheff scalarisation, STCH (Lin, Zhang, Liu, Zhang, Liu and Zhang, ICML 2024).

The Tchebycheff scalarisation trains on the worst task only, max_t (f_t - z_t) with z an ideal
(reference) point; its smooth form replaces the max by a log-sum-exp with smoothing ``mu``:

    L = mu * log sum_t exp((f_t - z_t) / mu)

whose gradient is sum_t softmax_t((f - z) / mu) * grad f_t: the tasks furthest from their
reference share the weight, and as mu -> 0 it goes to the worst task alone. For training a
network the task losses are put on one scale first: f_t = log L_t and z_t = log of task t's
mean training loss in the last of the first ``warmup_epochs`` epochs, which train with equal weights
(with no warm-up, the first batch's losses). f_t - z_t is then log(L_t / z-loss_t), the log of
how far each loss stands from where it started, whatever its units.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict

from mtl_search.errors import UserError
from mtl_search.values import NonNegativeInt, PositiveFloat
from mtl_search.weighting.base import EpochMean, ScalarisedLoss

# log of a loss of exactly 0 is -inf; a floor keeps every quantity finite
SMALLEST_LOSS = 1e-8


class STCHSpace(BaseModel):
    """``mu``: the smoothing (small: the worst task alone); ``warmup_epochs``: equal-weight epochs
    whose mean losses become the reference point."""

    model_config = ConfigDict(extra="forbid")
    mu: PositiveFloat = 1.0
    warmup_epochs: NonNegativeInt = 1


class SmoothTchebycheff(ScalarisedLoss):
    """``weights()`` reports the factor in front of each ``L_t`` in the gradient,
    ``softmax_t((f - z) / mu) / L_t``, averaged over the epoch's batches (1 in the warm-up)."""

    name = "stch"
    space_model = STCHSpace

    def __init__(self, task_names: Sequence[str], mu: float = 1.0, warmup_epochs: int = 1) -> None:
        super().__init__(task_names)
        if not mu > 0:
            raise UserError(f"loss_weighting.stch.mu: must be positive, got {mu}")
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise UserError(f"loss_weighting.stch.warmup_epochs: expected a whole number >= 0, got {warmup_epochs!r}")
        self.mu = float(mu)
        self.warmup_epochs = warmup_epochs
        self.epochs_done = 0
        self.register_buffer("reference_log_losses", torch.zeros(len(self.task_names)))
        self.has_reference = False
        self._applied = EpochMean(self.task_names)

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack([losses[name] for name in self.task_names])
        if self.epochs_done < self.warmup_epochs:  # equal weights while the reference is measured
            self._applied.add(torch.ones_like(stacked))
            return stacked.sum()
        log_losses = torch.log(stacked.clamp_min(SMALLEST_LOSS))
        if not self.has_reference:
            self.reference_log_losses.copy_(log_losses.detach())
            self.has_reference = True
        gaps = (log_losses - self.reference_log_losses) / self.mu
        shares = torch.softmax(gaps.detach(), dim=0)
        self._applied.add(shares / stacked.detach().clamp_min(SMALLEST_LOSS))
        return self.mu * torch.logsumexp(gaps, dim=0)

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self.epochs_done += 1
        if self.epochs_done == self.warmup_epochs:
            # the last warm-up epoch's mean training losses: the reference point from now on
            means = torch.tensor([epoch_losses[name] for name in self.task_names], dtype=torch.float32)
            self.reference_log_losses.copy_(torch.log(means.clamp_min(SMALLEST_LOSS)))
            self.has_reference = True
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        applied = self._applied.mean()
        return applied if applied is not None else {name: 1.0 for name in self.task_names}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "mu": self.mu, "warmup_epochs": self.warmup_epochs}
