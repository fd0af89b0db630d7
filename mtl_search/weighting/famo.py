"""Fast adaptive multitask optimisation, FAMO (Liu, Liang, Chen and Liu, NeurIPS 2023).

FAMO keeps one logit per task, xi, and task weights z = softmax(xi). The network trains on

    c * sum_t z_t * log L_t,   c = 1 / sum_t (z_t / L_t)   (c and z held constant)

whose gradient is sum_t (c z_t / L_t) * grad L_t: the factors in front of the losses sum to 1,
and each task's log loss moves at a rate set by z. The logits then learn from how much each
log loss fell: with d_t the fall of log L_t since the previous batch,

    grad_xi = z * (d - z . d)        (the gradient of z . d through the softmax)
    xi <- Adam step on grad_xi + weight_decay * xi, learning rate ``lr``

so a task whose loss fell less than the others gains weight. The paper measures the fall on
one batch before and after the network's step, at the cost of a second forward pass; here it
is measured between consecutive batches, which keeps the method to one forward and one
backward per batch (the batch-to-batch noise is what the logits' small learning rate and
Adam's averaging smooth out). ``lr`` 0.025 and ``weight_decay`` 0.001 are the paper's.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict

from mtl_search.errors import UserError
from mtl_search.values import NonNegativeFloat, PositiveFloat
from mtl_search.weighting.base import EpochMean, ScalarisedLoss

# log of a loss of exactly 0 is -inf; a floor keeps every quantity finite
SMALLEST_LOSS = 1e-8
# Adam's constants for the logits (torch's defaults)
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


class FAMOSpace(BaseModel):
    """``lr``: the logits' learning rate; ``weight_decay``: their decay towards equal weights."""

    model_config = ConfigDict(extra="forbid")
    lr: PositiveFloat = 0.025
    weight_decay: NonNegativeFloat = 0.001


class FAMO(ScalarisedLoss):
    """Task logits updated every batch from the fall of each log loss; ``weights()`` reports the
    factor in front of each ``L_t``, ``c z_t / L_t``, averaged over the epoch's batches."""

    name = "famo"
    space_model = FAMOSpace

    def __init__(self, task_names: Sequence[str], lr: float = 0.025, weight_decay: float = 0.001) -> None:
        super().__init__(task_names)
        if not lr > 0:
            raise UserError(f"loss_weighting.famo.lr: must be positive, got {lr}")
        if not weight_decay >= 0:
            raise UserError(f"loss_weighting.famo.weight_decay: must be at least 0, got {weight_decay}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        count = len(self.task_names)
        # buffers, not parameters: the method steps them itself; the trainer's optimiser must not
        self.register_buffer("logits", torch.zeros(count))
        self.register_buffer("first_moment", torch.zeros(count))
        self.register_buffer("second_moment", torch.zeros(count))
        self.register_buffer("previous_log_losses", torch.zeros(count))
        self.logit_steps = 0
        self.seen_a_batch = False
        self._applied = EpochMean(self.task_names)

    def task_weights(self) -> torch.Tensor:
        """z = softmax(logits)."""
        return torch.softmax(self.logits, dim=0)

    def update_logits(self, log_losses: torch.Tensor) -> None:
        """One Adam step of the logits on the fall of each log loss since the previous batch."""
        fall = self.previous_log_losses - log_losses
        weights = self.task_weights()
        gradient = weights * (fall - (weights * fall).sum()) + self.weight_decay * self.logits
        self.logit_steps += 1
        self.first_moment.mul_(BETA1).add_(gradient, alpha=1 - BETA1)
        self.second_moment.mul_(BETA2).addcmul_(gradient, gradient, value=1 - BETA2)
        first = self.first_moment / (1 - BETA1**self.logit_steps)
        second = self.second_moment / (1 - BETA2**self.logit_steps)
        self.logits.sub_(self.lr * first / (second.sqrt() + ADAM_EPS))

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """c * sum_t z_t log L_t after updating the logits from this batch's losses."""
        stacked = torch.stack([losses[name] for name in self.task_names]).clamp_min(SMALLEST_LOSS)
        log_losses = torch.log(stacked)
        observed = log_losses.detach()
        if self.seen_a_batch:
            self.update_logits(observed)
        self.previous_log_losses.copy_(observed)
        self.seen_a_batch = True
        weights = self.task_weights()
        scale = 1.0 / (weights / stacked.detach()).sum()
        self._applied.add(scale * weights / stacked.detach())
        return scale * (weights * log_losses).sum()

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        applied = self._applied.mean()
        return applied if applied is not None else dict(zip(self.task_names, self.task_weights().tolist()))

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "lr": self.lr, "weight_decay": self.weight_decay}
