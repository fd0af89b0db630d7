"""MGDA-UB, multi-task learning as multi-objective optimisation (Sener and Koltun, NeurIPS 2018).

Each batch, the task weights are the point of the simplex whose combination of the task
gradients has the smallest norm:

    alpha = argmin_{alpha >= 0, sum alpha = 1} | sum_t alpha_t g_t |^2

(closed form for two tasks, Frank-Wolfe with away steps for more), and the network is trained on
``sum_t K * alpha_t * L_t`` (K tasks; scaled by K so that the weights sum to K like equal
weights, which keeps one learning-rate range meaningful across methods).

Which gradients ``g_t``: MGDA-UB (the "upper bound" variant) takes them w.r.t. the shared
representation Z, the one tensor every task's tower reads, which needs a backward pass
through the towers only. When the tasks' towers read *different* tensors (a tree split
before the towers, mixtures of experts, cross-stitch, sluice) there is no such Z, and the
gradients are taken w.r.t. ``model.shared_parameters()`` instead: that is the exact MGDA,
which the upper bound approximates, at the price of one backward pass through the shared
part per task. ``gradients="parameters"`` asks for that always. With no shared parameter at
all the tasks do not compete for anything and the weights stay equal.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, field_validator
from torch import nn

from mtl_search.errors import UserError
from mtl_search.values import StrParam
from mtl_search.weighting.base import (
    EpochMean,
    LossWeighting,
    rank_count,
    shared_parameters,
    sum_over_ranks,
    task_gradients,
)

NORMALIZATIONS = ("none", "l2", "loss")


def min_norm_on_segment(aa: float, ab: float, bb: float) -> float:
    """gamma in [0, 1] minimising |gamma a + (1 - gamma) b|^2, from a.a, a.b and b.b."""
    denominator = aa - 2.0 * ab + bb
    if denominator <= 1e-20:  # a == b: every point of the segment is the same
        return 0.5
    return float(np.clip((bb - ab) / denominator, 0.0, 1.0))


def min_norm_weights(gram: np.ndarray, max_iterations: int = 100, tolerance: float = 1e-8) -> np.ndarray:
    """Simplex weights alpha minimising alpha^T G alpha, for the Gram matrix G[i, j] = g_i . g_j.

    Two tasks: the closed form on the segment. More: Frank-Wolfe with away steps from the
    centre of the simplex. Each step either moves towards the gradient nearest the origin
    direction (a Frank-Wolfe step) or away from the worst gradient still in use, whichever
    promises more, with an exact line search. Plain Frank-Wolfe only creeps towards a
    weight of 0; away steps reach it, so optima on a face of the simplex are found too.
    Stops when the duality gap is below ``tolerance`` times the largest squared gradient norm.
    """
    gram = np.asarray(gram, dtype=np.float64)
    n = gram.shape[0]
    if n == 1:
        return np.ones(1)
    if n == 2:
        gamma = min_norm_on_segment(gram[0, 0], gram[0, 1], gram[1, 1])
        return np.array([gamma, 1.0 - gamma])
    alpha = np.full(n, 1.0 / n)
    scale = max(float(gram.diagonal().max()), 1e-20)
    for _ in range(max_iterations):
        towards = gram @ alpha  # g_t . v for the current point v = sum alpha_t g_t
        current = float(alpha @ towards)  # |v|^2
        toward = int(np.argmin(towards))
        in_use = np.flatnonzero(alpha > 0)
        away = int(in_use[np.argmax(towards[in_use])])
        if current - towards[toward] <= tolerance * scale:
            break  # no vertex is a descent direction: alpha is optimal
        if current - towards[toward] >= towards[away] - current:
            direction = -alpha.copy()
            direction[toward] += 1.0
            largest_step = 1.0
        else:
            direction = alpha.copy()
            direction[away] -= 1.0
            largest_step = alpha[away] / max(1.0 - alpha[away], 1e-12)  # step that drops g_away
        curvature = float(direction @ gram @ direction)
        slope = float(direction @ towards)
        step = largest_step if curvature <= 1e-20 else min(max(-slope / curvature, 0.0), largest_step)
        alpha = np.clip(alpha + step * direction, 0.0, None)
        alpha /= alpha.sum()
    return alpha


def shared_representation(model: nn.Module) -> torch.Tensor | None:
    """The tensor every task's tower read in the last forward pass, or None if they differ."""
    representations = list(getattr(model, "representations", {}).values())
    if not representations:
        return None
    first = representations[0]
    if all(r is first for r in representations) and first.requires_grad:
        return first
    return None


class MGDASpace(BaseModel):
    """``normalization``: none / l2 / loss, or ``{choices: [...]}`` of them to search it;
    ``gradients``: auto (MGDA-UB when a representation is shared) or parameters (exact MGDA)."""

    model_config = ConfigDict(extra="forbid")
    normalization: StrParam = "none"
    gradients: Literal["auto", "parameters"] = "auto"

    @field_validator("normalization")
    @classmethod
    def _known(cls, value: Any) -> Any:
        unknown = [c for c in getattr(value, "choices", [value]) if c not in NORMALIZATIONS]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of {', '.join(NORMALIZATIONS)}")
        return value


class MGDA(LossWeighting):
    """``normalization`` of each g_t before solving: "none"; "l2" (unit norm); "loss" (divided by
    L_t, so that tasks on different loss scales compare by relative change). ``gradients``:
    "auto" (the shared representation when there is one, else the shared parameters) or
    "parameters". ``weights()`` is the mean over the epoch's batches of ``K * alpha``.
    """

    name = "mgda"
    space_model = MGDASpace

    def __init__(
        self,
        task_names: Sequence[str],
        normalization: str = "none",
        gradients: str = "auto",
        max_iterations: int = 100,
    ) -> None:
        super().__init__(task_names)
        if normalization not in NORMALIZATIONS:
            raise UserError(
                f"loss_weighting.mgda.normalization: {normalization!r} is not one of {', '.join(NORMALIZATIONS)}"
            )
        if gradients not in ("auto", "parameters"):
            raise UserError(f"loss_weighting.mgda.gradients: {gradients!r} is not 'auto' or 'parameters'")
        self.normalization = normalization
        self.gradients = gradients
        self.max_iterations = int(max_iterations)
        self.needs_representations = gradients == "auto"
        self._applied = EpochMean(self.task_names)

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        stacked = torch.stack([losses[name] for name in self.task_names])
        weights = len(self.task_names) * self.solve(stacked, model).to(stacked.device, stacked.dtype)
        self._applied.add(weights)
        total = (weights * stacked).sum()
        if extra is not None:
            total = total + extra
        total.backward()
        return total.detach()

    def solve(self, losses: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """The min-norm simplex weights alpha (on the CPU) for this batch's stacked task losses."""
        n_tasks = losses.shape[0]
        representation = shared_representation(model) if self.gradients == "auto" else None
        inputs = [representation] if representation is not None else shared_parameters(model, self.name)
        if not inputs or n_tasks < 2:
            return torch.full((n_tasks,), 1.0 / n_tasks)
        # in fp32: under autocast the shared representation, and so its gradients, may be 16-bit
        sharded = representation is not None and rank_count() > 1
        grads = task_gradients(list(losses), inputs, sharded_inputs=sharded).detach().float()
        if sharded:
            # trained data-parallel, each process holds the gradients of its own rows of the
            # representation: the whole batch's Gram matrix is the sum of the processes' ones
            gram = sum_over_ranks(grads @ grads.T)
            if self.normalization == "l2":
                norms = gram.diagonal().sqrt().clamp_min(1e-12)
                gram = gram / torch.outer(norms, norms)
            elif self.normalization == "loss":
                scale = losses.detach().float().clamp_min(1e-12)
                gram = gram / torch.outer(scale, scale)
            return self._weights_from_gram(gram, n_tasks)
        if self.normalization == "l2":
            grads = grads / grads.norm(dim=1, keepdim=True).clamp_min(1e-12)
        elif self.normalization == "loss":
            grads = grads / losses.detach().clamp_min(1e-12).unsqueeze(1)
        return self._weights_from_gram(grads @ grads.T, n_tasks)

    def _weights_from_gram(self, gram_tensor: torch.Tensor, n_tasks: int) -> torch.Tensor:
        # one small copy to the host per batch: the solver is a few iterations on a K x K matrix
        gram = gram_tensor.cpu().double().numpy()
        if not np.isfinite(gram).all():
            # an overflowed fp16 step (the loss scaler skips it) or a diverging candidate: no direction to solve for
            return torch.full((n_tasks,), 1.0 / n_tasks)
        alpha = min_norm_weights(gram, self.max_iterations)
        return torch.from_numpy(alpha).float()

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        return self._applied.mean() or {name: 1.0 for name in self.task_names}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "normalization": self.normalization, "gradients": self.gradients}
