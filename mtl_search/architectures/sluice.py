"""Sluice networks (Ruder, Bingel, Augenstein and Søgaard, AAAI 2019).

One column of ``depth`` blocks per task. Each block's output is split along its channels
into ``subspaces`` equal parts. After every layer a learned matrix alpha of size
(T*S) x (T*S) mixes all subspaces of all tasks: subspace j of task t continues as
``sum_(u,k) alpha[(t,j), (u,k)] * G_(u,k)``. Per task a learned vector beta mixes the
(mixed) outputs of all layers into the tower input, so a task can read from any depth.

An orthogonality penalty pushes the subspaces of one task apart: for every layer, task and
pair of its subspaces i < j, the squared Frobenius norm of ``G_i^T G_j / rows`` (G: the
subspace activations before mixing, one row per example, or per example and pixel on
feature maps). Dividing by the number of rows keeps the weight independent of the batch
size. :meth:`SluiceBody.regularization` returns it times ``orthogonality_weight``.

Spec keys: ``depth``, ``width`` (a multiple of ``subspaces``), ``subspaces``,
``orthogonality_weight``, ``alpha_self`` (alpha starts with this weight on the identity,
the rest of each row spread evenly) and ``beta_init`` ("last": read the last layer only;
"uniform": every layer equally).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Shape
from mtl_search.architectures.cross_stitch import check_fraction, near_identity, rounded_matrix
from mtl_search.errors import UserError
from mtl_search.values import Count, NonNegativeFloat, Share, StrParam, one_of, suggest

BETA_INITS = ("last", "uniform")


class SluiceSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Count = 2
    # rounded up to a multiple of the number of subspaces
    width: Count = 64
    subspaces: Count = 2
    orthogonality_weight: NonNegativeFloat = 0.01
    alpha_self: Share = 0.9
    beta_init: Annotated[StrParam, one_of(BETA_INITS, "a beta init")] = "last"


def initial_beta(depth: int, kind: str) -> torch.Tensor:
    if kind == "last":
        return torch.eye(depth)[-1]
    return torch.full((depth,), 1.0 / depth)


class SluiceBody(Body):
    def __init__(
        self,
        depth: int,
        width: int,
        subspaces: int,
        orthogonality_weight: float,
        alpha_self: float,
        beta_init: str,
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        self.subspaces = subspaces
        self.orthogonality_weight = orthogonality_weight
        self.columns = nn.ModuleList()
        shape = in_shape
        for _ in range(depth):
            made = [blocks.block(shape, width) for _ in self.task_names]
            self.columns.append(nn.ModuleList(block for block, _ in made))
            shape = made[0][1]
        n = len(self.task_names) * subspaces
        self.alphas = nn.ParameterList(nn.Parameter(near_identity(n, alpha_self)) for _ in range(depth))
        self.betas = nn.ParameterDict({task: nn.Parameter(initial_beta(depth, beta_init)) for task in self.task_names})
        self.out_shapes = {task: shape for task in self.task_names}
        self._penalty: torch.Tensor | None = None

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        n_tasks, s = len(self.task_names), self.subspaces
        hidden = [features] * n_tasks
        layer_outputs = []  # per layer: (tasks, N, C, ...) after mixing
        penalty = None
        for blocks, alpha in zip(self.columns, self.alphas):
            columns = torch.stack([block(h) for block, h in zip(blocks, hidden)])
            if self.training and self.orthogonality_weight > 0:
                term = orthogonality(columns, s)
                penalty = term if penalty is None else penalty + term
            parts = to_subspaces(columns, s)
            # one matrix product over the flattened parts (einsum's ellipsis costs more per call)
            mixed = from_subspaces((alpha @ parts.flatten(1)).view(alpha.shape[0], *parts.shape[1:]), n_tasks)
            layer_outputs.append(mixed)
            hidden = list(mixed.unbind(0))
        self._penalty = None if penalty is None else penalty * self.orthogonality_weight
        # maps of earlier layers are pooled to the last layer's size so that beta can mix them
        last = layer_outputs[-1]
        stacked = torch.stack([_resize_like(outputs, last) for outputs in layer_outputs])  # (L, T, N, ...)
        beta = torch.stack([self.betas[task] for task in self.task_names])  # (T, L)
        # out[t] = sum_l beta[t, l] * stacked[l, t]
        weights = beta.t().reshape(*beta.t().shape, *[1] * (stacked.dim() - 2))
        return dict(zip(self.task_names, (weights * stacked).sum(0).unbind(0)))

    def regularization(self) -> torch.Tensor | None:
        """The weighted orthogonality penalty of the last training-mode forward pass."""
        return self._penalty

    def shared_parameters(self) -> list[nn.Parameter]:
        # alpha follows every layer, so each column and each alpha reaches every task;
        # a task's beta only reaches its own loss
        return list(self.columns.parameters()) + list(self.alphas)

    def sharing_report(self) -> dict[str, Any]:
        return {
            "subspaces": self.subspaces,
            "alpha": [rounded_matrix(alpha) for alpha in self.alphas],
            "beta": {task: [round(v, 3) for v in beta.detach().cpu().tolist()] for task, beta in self.betas.items()},
        }


def to_subspaces(columns: torch.Tensor, subspaces: int) -> torch.Tensor:
    """(T, N, C, ...) -> (T*S, N, C/S, ...): subspace j of task t is row t*S + j (channel slice j)."""
    t, n, c, *rest = columns.shape
    parts = columns.reshape(t, n, subspaces, c // subspaces, *rest).transpose(1, 2)
    return parts.reshape(t * subspaces, n, c // subspaces, *rest)


def from_subspaces(parts: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """The inverse of :func:`to_subspaces`."""
    ts, n, k, *rest = parts.shape
    s = ts // n_tasks
    return parts.reshape(n_tasks, s, n, k, *rest).transpose(1, 2).reshape(n_tasks, n, s * k, *rest)


def orthogonality(columns: torch.Tensor, subspaces: int) -> torch.Tensor:
    """Sum over tasks and subspace pairs i < j of ||G_i^T G_j / rows||_F^2.

    ``columns``: (T, N, C, ...) one layer's outputs; G_i: channels of subspace i, one row per
    example (and pixel). The Gram matrix of all channels holds every G_i^T G_j as a block;
    the off-diagonal blocks count each pair twice.
    """
    t, n, c = columns.shape[:3]
    rows = columns.movedim(2, -1).reshape(t, -1, c)
    gram = rows.transpose(1, 2) @ rows / rows.shape[1]
    k = c // subspaces
    same_subspace = torch.block_diag(*[torch.ones(k, k, device=columns.device)] * subspaces)
    return (gram.pow(2) * (1 - same_subspace)).sum() / 2


def _resize_like(h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # (T, N, C, H, W) maps pooled to the target's H, W
    if h.dim() == 5 and h.shape[3:] != target.shape[3:]:
        t, n = h.shape[:2]
        pooled = F.adaptive_avg_pool2d(h.flatten(0, 1), target.shape[3:])
        return pooled.reshape(t, n, *pooled.shape[1:])
    return h


def round_up(width: int, multiple: int) -> int:
    return int(math.ceil(width / multiple) * multiple)


class SluiceFamily(Family):
    name = "sluice"
    required_keys = ("depth", "width", "subspaces", "orthogonality_weight", "alpha_self", "beta_init")
    optional_keys = ()

    def space_model(self) -> type:
        return SluiceSpace

    def sample(self, trial: Any, section: SluiceSpace, task_names: Sequence[str]) -> dict[str, Any]:
        subspaces = suggest(trial, "sluice.subspaces", section.subspaces)
        spec = {
            "depth": suggest(trial, "sluice.depth", section.depth),
            "width": round_up(suggest(trial, "sluice.width", section.width), subspaces),
            "subspaces": subspaces,
            # one subspace has no pair to keep apart, so its weight is not searched
            "orthogonality_weight": suggest(trial, "sluice.orthogonality_weight", section.orthogonality_weight)
            if subspaces > 1
            else 0.0,
            "alpha_self": suggest(trial, "sluice.alpha_self", section.alpha_self),
            "beta_init": suggest(trial, "sluice.beta_init", section.beta_init),
        }
        self.validate(spec, task_names)
        return spec

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        for key in ("depth", "width", "subspaces"):
            value = spec.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"sluice spec: {key} must be a positive whole number, got {value!r}")
        if spec["width"] % spec["subspaces"]:
            raise UserError(f"sluice spec: width {spec['width']} is not a multiple of subspaces {spec['subspaces']}")
        weight = spec.get("orthogonality_weight")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise UserError(f"sluice spec: orthogonality_weight must be a number >= 0, got {weight!r}")
        check_fraction(spec.get("alpha_self"), "alpha_self", "sluice")
        if spec.get("beta_init") not in BETA_INITS:
            raise UserError(
                f"sluice spec: beta_init must be one of {', '.join(BETA_INITS)}, got {spec.get('beta_init')!r}"
            )

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return SluiceBody(
            spec["depth"],
            spec["width"],
            spec["subspaces"],
            float(spec["orthogonality_weight"]),
            float(spec["alpha_self"]),
            spec["beta_init"],
            in_shape,
            task_names,
            blocks,
        )

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        # with one subspace there are no pairs, so the penalty weight says nothing
        ortho = f" ortho={spec['orthogonality_weight']:.3g}" if spec["subspaces"] > 1 else ""
        return f"S={spec['subspaces']} {spec['depth']}x{spec['width']}{ortho} a={spec['alpha_self']:.2f} beta={spec['beta_init']}"
