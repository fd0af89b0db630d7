"""PCGrad, projecting conflicting gradients (Yu et al., NeurIPS 2020).

On the shared parameters (``model.shared_parameters()``) every task's gradient g_i is taken
separately. Going through the other tasks in a random order, whenever the (partly
projected) g_i conflicts with task j's gradient (negative dot product) it is projected onto
the normal plane of g_j:

    g_i <- g_i - (g_i . g_j) / |g_j|^2 * g_j      if g_i . g_j < 0

The shared parameters receive the sum of the projected gradients; every other parameter
(towers, task-specific blocks) receives the plain sum of the task gradients, since only one
task reaches it and there is nothing to conflict with. With no shared parameter (fully
separate networks) PCGrad is the plain sum.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from mtl_search.weighting.base import LossWeighting, add_to_grad, combine, shared_parameters, task_gradients


def project_conflicting(gradients: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PCGrad's projections of each row of ``gradients`` (tasks x parameters), one random order per task.

    Projections are taken against the other tasks' *original* gradients, as in the paper.
    """
    n_tasks = gradients.shape[0]
    squared_norms = (gradients * gradients).sum(dim=1).clamp_min(torch.finfo(gradients.dtype).tiny)
    projected = gradients.clone()
    for i in range(n_tasks):
        order = torch.randperm(n_tasks, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            # min(dot, 0) projects only on conflict, without a branch that would wait for the device
            dot = projected[i] @ gradients[j]
            projected[i] = projected[i] - torch.clamp(dot, max=0.0) / squared_norms[j] * gradients[j]
    return projected


class PCGrad(LossWeighting):
    """``seed`` seeds the generator of the random projection orders (on the CPU, so runs repeat on any device)."""

    name = "pcgrad"

    def __init__(self, task_names: Sequence[str], seed: int = 0) -> None:
        super().__init__(task_names)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        total = combine(losses, self.weights(), extra)
        shared = shared_parameters(model, self.name)
        if not shared or len(self.task_names) < 2:
            total.backward()
            return total.detach()
        gradients = task_gradients([losses[name] for name in self.task_names], shared)
        total.backward()
        # the full backward put sum_t g_t (plus the regulariser's gradient) on the shared
        # parameters; swapping sum_t g_t for the projected sum leaves the regulariser untouched
        add_to_grad(shared, project_conflicting(gradients, self.generator).sum(dim=0) - gradients.sum(dim=0))
        return total.detach()

    def weights(self) -> dict[str, float]:
        return {name: 1.0 for name in self.task_names}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "seed": self.seed}
