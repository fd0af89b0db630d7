"""GradVac, gradient vaccine (Wang, Tsvetkov, Firat and Cao, ICLR 2021).

On the shared parameters (``model.shared_parameters()``, the paper's whole-model granularity)
every task's gradient g_i is taken separately. Each ordered pair of tasks keeps a target
cosine similarity phi_hat_ij, an average over batches of the cosines seen (starting at 0).
Going through the other tasks in a random order, the (partly corrected) g_i is compared with
task j's original gradient: when their cosine phi is below the target, the multiple of g_j
that lifts the cosine exactly to the target is added (the paper's closed form),

    g_i <- g_i + |g_i| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|g_j| sqrt(1 - phi_hat^2)) g_j

and, whether or not it was, the target moves towards the cosine seen:
phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi. With every target at 0 the correction is
PCGrad's projection; a positive target asks for more than not conflicting.

The shared parameters receive the sum of the corrected gradients; every other parameter
(towers, task-specific blocks) the plain sum of the task gradients, and the architecture's
regulariser is added untouched, as for PCGrad. With no shared parameter (fully separate
networks) GradVac is the plain sum.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from mtl_search.errors import UserError
from mtl_search.values import Share, StrictSection
from mtl_search.weighting.base import EpochMean, LossWeighting, add_to_grad, combine, shared_parameters, task_gradients

# a target of cosine 1 (parallel gradients) would need an infinite correction: its sine is floored
SMALLEST_SINE = 1e-8


class GradVacSpace(StrictSection):
    """``beta``: how far each target cosine moves towards the cosine seen, per batch, in [0, 1] (default 0.01)."""

    beta: Share = 0.01


def vaccinate(
    gradients: torch.Tensor, targets: torch.Tensor, beta: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """GradVac's corrections of the rows of ``gradients`` (tasks x parameters) against the target
    cosines ``targets`` (tasks x tasks, row i for task i's gradient), one random order per task.

    Returns the coefficients C (tasks x tasks), corrected row i = sum_j C_ij g_j, and the new targets.
    """
    n_tasks = gradients.shape[0]
    norms = gradients.norm(dim=1)
    coefficients = torch.eye(n_tasks, dtype=gradients.dtype, device=gradients.device)
    corrected = gradients.clone()
    targets = targets.clone()
    tiny = torch.finfo(gradients.dtype).tiny
    for i in range(n_tasks):
        for j in torch.randperm(n_tasks, generator=generator).tolist():
            if j == i:
                continue
            length = corrected[i].norm()
            cosine = ((corrected[i] @ gradients[j]) / (length * norms[j]).clamp_min(tiny)).clamp(-1.0, 1.0)
            target = targets[i, j]
            sine, target_sine = (1 - cosine**2).sqrt(), (1 - target**2).sqrt().clamp_min(SMALLEST_SINE)
            step = length * (target * sine - cosine * target_sine) / (norms[j].clamp_min(tiny) * target_sine)
            # a torch.where, not a branch that would wait for the device; a zero gradient gets no correction
            step = torch.where((cosine < target) & (length > 0) & (norms[j] > 0), step, 0.0)
            corrected[i] = corrected[i] + step * gradients[j]
            coefficients[i, j] = coefficients[i, j] + step
            targets[i, j] = (1 - beta) * target + beta * cosine
    return coefficients, targets


class GradVac(LossWeighting):
    """``seed`` seeds the generator of the random orders (on the CPU, so runs repeat on any device).
    ``weights()`` reports the coefficient of each task's raw gradient in the shared update
    (1 plus what the other tasks' corrections added of it), averaged over the epoch's batches."""

    name = "gradvac"
    space_model = GradVacSpace

    def __init__(self, task_names: Sequence[str], beta: float = 0.01, seed: int = 0) -> None:
        super().__init__(task_names)
        beta = float(beta)
        if not 0.0 <= beta <= 1.0:
            raise UserError(f"loss_weighting.gradvac.beta: {beta} is not in [0, 1]")
        self.beta = beta
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.register_buffer("target_cosines", torch.zeros(len(self.task_names), len(self.task_names)))
        self._applied = EpochMean(self.task_names)

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        task_losses = [losses[name] for name in self.task_names]
        total = combine(dict(zip(self.task_names, task_losses)), {name: 1.0 for name in self.task_names}, extra)
        shared = shared_parameters(model, self.name)
        if not shared or len(self.task_names) < 2:
            total.backward()
            return total.detach()
        gradients = task_gradients(task_losses, shared).detach()
        total.backward()
        # in fp32: under autocast the gradients may be 16-bit
        update = self.step(gradients.float())
        if update is not None:
            # the full backward put sum_t g_t (plus the regulariser's gradient) on the shared
            # parameters; swapping sum_t g_t for the corrected sum leaves the regulariser untouched
            add_to_grad(shared, update.to(gradients.dtype) - gradients.sum(dim=0))
        return total.detach()

    def step(self, gradients: torch.Tensor) -> torch.Tensor | None:
        """The corrected sum for this batch's task gradients, the targets moved; None (the plain
        sum kept, the targets untouched) when the gradients are not finite, as an overflowed step."""
        if not bool(torch.isfinite(gradients).all()):
            return None
        coefficients, targets = vaccinate(gradients, self.target_cosines.to(gradients), self.beta, self.generator)
        self.target_cosines.copy_(targets)
        update_weights = coefficients.sum(dim=0)
        self._applied.add(update_weights)
        return update_weights @ gradients

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        return self._applied.mean() or {name: 1.0 for name in self.task_names}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "beta": self.beta, "seed": self.seed}
