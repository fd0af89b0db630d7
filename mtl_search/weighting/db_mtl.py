"""DB-MTL, dual-balancing multi-task learning (Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang and Kwok, 2023).

Two balancings, one of the losses' scales and one of the gradients' magnitudes:

- every task loss enters as log L_t, so a task's loss units do not matter (the gradient of
  log L_t is grad L_t / L_t);
- on the shared parameters (``model.shared_parameters()``, as the paper), each task's gradient
  of its log loss, g_t, is taken separately and averaged over batches,

      a_t <- beta_k a_t + (1 - beta_k) g_t,    beta_k = beta / k ** beta_decay (k: the batch, from 1)

  starting from a_t = 0; every average is rescaled to the norm of the largest one and the
  rescaled averages are summed:

      update = sum_t (max_j |a_j| / |a_t|) a_t

Every other parameter (towers, task-specific blocks) receives the plain gradient of
sum_t log L_t, since one task reaches it; the architecture's regulariser is added untouched.
With no shared parameter (fully separate networks) the method is the plain sum of the log losses.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from mtl_search.errors import UserError
from mtl_search.values import NonNegativeFloat, Probability, StrictSection
from mtl_search.weighting.base import EpochMean, LossWeighting, add_to_grad, combine, shared_parameters, task_gradients

# log of a loss of exactly 0 is -inf; a floor keeps every quantity finite
SMALLEST_LOSS = 1e-8


class DBMTLSpace(StrictSection):
    """``beta``: how much of its average each task's gradient keeps per batch, in [0, 1) (default 0.9);
    ``beta_decay``: the exponent of its decay over batches, beta / k ** beta_decay (default 0.5; 0: constant)."""

    beta: Probability = 0.9
    beta_decay: NonNegativeFloat = 0.5


def balance_gradients(
    log_gradients: torch.Tensor, averages: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DB-MTL step on the rows of ``log_gradients`` (tasks x shared parameters, the gradients
    of the log losses): the new running averages, the factor each average is scaled by (largest
    norm over its norm; 1 for an average of norm 0) and the update, their scaled sum."""
    averages = beta * averages + (1.0 - beta) * log_gradients
    norms = averages.norm(dim=1)
    scales = torch.where(norms > 0, norms.max() / norms.clamp_min(torch.finfo(norms.dtype).tiny), 1.0)
    return averages, scales, scales @ averages


class DBMTL(LossWeighting):
    """``weights()`` reports the factor each task's averaged gradient was scaled by (1 for the task
    with the largest average, more for the others), averaged over the epoch's batches."""

    name = "db_mtl"
    space_model = DBMTLSpace

    def __init__(self, task_names: Sequence[str], beta: float = 0.9, beta_decay: float = 0.5) -> None:
        super().__init__(task_names)
        beta, beta_decay = float(beta), float(beta_decay)
        if not 0.0 <= beta < 1.0:
            raise UserError(f"loss_weighting.db_mtl.beta: {beta} is not in [0, 1)")
        if beta_decay < 0:
            raise UserError(f"loss_weighting.db_mtl.beta_decay: {beta_decay} is below 0")
        self.beta, self.beta_decay = beta, beta_decay
        # sized at the first batch, when the shared parameters are known; a buffer, so it moves with .to()
        self.register_buffer("gradient_averages", None)
        self.steps = 0
        self._applied = EpochMean(self.task_names)

    def current_beta(self) -> float:
        """beta_k for the batch about to be averaged in."""
        return self.beta / (self.steps + 1) ** self.beta_decay

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        log_losses = [torch.log(losses[name].clamp_min(SMALLEST_LOSS)) for name in self.task_names]
        total = combine(dict(zip(self.task_names, log_losses)), {name: 1.0 for name in self.task_names}, extra)
        shared = shared_parameters(model, self.name)
        if not shared:
            total.backward()
            return total.detach()
        log_gradients = task_gradients(log_losses, shared).detach()
        total.backward()
        # in fp32: under autocast the gradients may be 16-bit
        update = self.step(log_gradients.float())
        if update is not None:
            # the full backward put sum_t g_t (plus the regulariser's gradient) on the shared
            # parameters; swapping sum_t g_t for the balanced update leaves the regulariser untouched
            add_to_grad(shared, update.to(log_gradients.dtype) - log_gradients.sum(dim=0))
        return total.detach()

    def step(self, log_gradients: torch.Tensor) -> torch.Tensor | None:
        """Average this batch's log-loss gradients in and return the balanced update; None (the
        plain sum kept, the averages untouched) when they are not finite, as an overflowed step."""
        if not bool(torch.isfinite(log_gradients).all()):
            return None
        averages = self.gradient_averages
        if averages is None or averages.shape != log_gradients.shape:
            averages = torch.zeros_like(log_gradients)
        averages, scales, update = balance_gradients(log_gradients, averages.to(log_gradients), self.current_beta())
        self.gradient_averages = averages
        self.steps += 1
        self._applied.add(scales)
        return update

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        return self._applied.mean() or {name: 1.0 for name in self.task_names}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "beta": self.beta, "beta_decay": self.beta_decay}
