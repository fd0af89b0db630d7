"""GradNorm, gradient normalisation (Chen et al., ICML 2018).

The task weights w_t are learned so that each weighted task's gradient norm on the shared
parameters W follows a common scale, raised for tasks that train slower:

    G_t     = | grad_W (w_t L_t) | = w_t | grad_W L_t |
    r_t     = (L_t / L_t(0)) / mean_j (L_j / L_j(0))        (L_t(0): the first batch's loss)
    target  = mean_j G_j * r_t ** alpha                     (held constant, as in the paper)
    L_grad  = sum_t | G_t - target_t |

After each batch the weights take one step of their own optimiser (Adam) on ``L_grad`` and
are renormalised to sum to K, the number of tasks; the network is trained on
``sum_t w_t L_t`` with the weights of that batch. ``alpha`` sets how strongly slow tasks are
favoured (0: equal gradient norms).

W is all of ``model.shared_parameters()`` rather than only the last shared layer, which a
family-agnostic method cannot pick out (an expert mixture has several "last" layers). Since
``G_t = w_t |grad_W L_t|`` with w_t a scalar, ``dL_grad/dw_t = sign(G_t - target_t) |grad_W L_t|``:
the unweighted gradient norms are enough, and no second-order backward is needed. With no
shared parameter there is nothing to balance and the weights stay at 1.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict, field_validator
from torch import nn

from mtl_search.errors import UserError
from mtl_search.values import FloatRange, NonNegativeFloat, PositiveFloat
from mtl_search.weighting.base import (
    EpochMean,
    LossWeighting,
    check_smallest,
    rank_count,
    shared_parameters,
    task_gradients,
)

# floor for the first losses and the weights: a weight of exactly 0 could never come back
_TINY = 1e-8


class GradNormSpace(BaseModel):
    """``alpha`` (searched over [0, 3] unless given) and ``weight_learning_rate``."""

    model_config = ConfigDict(extra="forbid")
    alpha: NonNegativeFloat = FloatRange(low=0.0, high=3.0)
    weight_learning_rate: PositiveFloat = 0.025

    @field_validator("alpha")
    @classmethod
    def _not_negative(cls, value: Any) -> Any:
        return check_smallest(value, 0, strict=False)

    @field_validator("weight_learning_rate")
    @classmethod
    def _positive(cls, value: Any) -> Any:
        return check_smallest(value, 0, strict=True)


class GradNorm(LossWeighting):
    """``alpha``: the asymmetry exponent; ``weight_learning_rate``: learning rate of the weights' Adam.

    ``weights()`` is the mean over the epoch's batches of the weights each batch used.
    """

    name = "gradnorm"
    space_model = GradNormSpace

    def __init__(self, task_names: Sequence[str], alpha: float = 1.5, weight_learning_rate: float = 0.025) -> None:
        super().__init__(task_names)
        if not alpha >= 0:
            raise UserError(f"loss_weighting.gradnorm.alpha: must be at least 0, got {alpha}")
        if not weight_learning_rate > 0:
            raise UserError(
                f"loss_weighting.gradnorm.weight_learning_rate: must be positive, got {weight_learning_rate}"
            )
        self.alpha = float(alpha)
        self.weight_learning_rate = float(weight_learning_rate)
        # a buffer, not a parameter: the weights take steps of their own optimiser only, never the trainer's
        self.register_buffer("task_weights", torch.ones(len(self.task_names)), persistent=False)
        self.initial_losses: torch.Tensor | None = None
        # made on the first batch, after to() has put the weights on their device
        self._optimizer: torch.optim.Optimizer | None = None
        self._applied = EpochMean(self.task_names)

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        stacked = torch.stack([losses[name] for name in self.task_names])
        if self.initial_losses is None:
            self.initial_losses = stacked.detach().clamp_min(_TINY)
        weights = self.task_weights.detach().clone()
        self._applied.add(weights)
        total = (weights * stacked).sum()
        if extra is not None:
            total = total + extra
        shared = shared_parameters(model, self.name)
        if not shared or len(self.task_names) < 2:
            total.backward()
            return total.detach()
        norms = gradient_norms([losses[name] for name in self.task_names], shared)
        total.backward()
        self.update_weights(stacked.detach(), norms)
        return total.detach()

    def update_weights(self, losses: torch.Tensor, gradient_norms: torch.Tensor) -> None:
        """One optimiser step of the weights on L_grad, given this batch's losses and |grad_W L_t|."""
        if self.initial_losses is None:
            self.initial_losses = losses.clamp_min(_TINY)
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam([self.task_weights], lr=self.weight_learning_rate)
        weighted_norms = self.task_weights * gradient_norms
        ratios = losses / self.initial_losses
        target = weighted_norms.mean() * (ratios / ratios.mean()) ** self.alpha
        # the gradient of L_grad = sum_t |w_t |grad_W L_t| - target_t| with the target held constant
        self.task_weights.grad = torch.sign(weighted_norms - target) * gradient_norms
        self._optimizer.step()
        with torch.no_grad():
            self.task_weights.clamp_(min=_TINY)
            self.task_weights.mul_(len(self.task_names) / self.task_weights.sum())

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        return self._applied.mean() or dict(zip(self.task_names, self.task_weights.detach().tolist()))

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "alpha": self.alpha, "weight_learning_rate": self.weight_learning_rate}


def gradient_norms(losses: Sequence[torch.Tensor], parameters: Sequence[nn.Parameter]) -> torch.Tensor:
    """|grad_W L_t| for each loss over all of ``parameters`` (detached; the graph is kept).

    Trained data-parallel, the norms are those of the whole batch's gradients (summed over the
    processes first); alone, the squares are summed parameter by parameter, with no flat copy."""
    if rank_count() > 1:
        return task_gradients(losses, parameters).detach().norm(dim=1)
    norms = []
    for loss in losses:
        grads = torch.autograd.grad(loss, list(parameters), retain_graph=True, allow_unused=True)
        squares = [g.pow(2).sum() for g in grads if g is not None]
        norms.append(torch.stack(squares).sum().sqrt() if squares else loss.new_zeros(()))
    return torch.stack(norms).detach()
