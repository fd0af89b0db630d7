"""DSelect-k: experts as in MMoE, each task's gate a sparse differentiable selection (Hazimeh et al., NeurIPS 2021).

``experts`` stacks of blocks read the stem's features. Each task's gate has ``k`` selectors;
selector i turns ``m = ceil(log2(experts))`` logits into one weight per binary code
``c`` in ``0 .. 2**m - 1``: ``r_i(c) = prod_j (S(z_ij) if bit j of c is 1 else 1 - S(z_ij))``,
``S`` the cubic smooth-step of width ``gamma`` (0 below ``-gamma/2``, 1 above ``gamma/2``).
When every ``S(z_ij)`` reaches 0 or 1 the selector picks exactly one expert, and its
gradient is then zero: the selection is sparse and stays so. A softmax over ``k`` more
logits mixes the selectors, so a task reads at most ``k`` experts once the selectors have
settled. All ``k * (m + 1)`` logits come from one linear layer on the (pooled) input, a gate
per example as in the paper's per-example gating.

When ``experts`` is not a power of two, code ``c`` stands for expert ``c mod experts``, so
a selector's weights always sum to one over the real experts (the paper leaves codes
without an expert; folding them keeps every gate a distribution).

The entropy regulariser of the paper, ``entropy_weight`` times each selector's entropy over
the codes (summed over selectors and tasks, averaged over the batch), pushes the selectors
to a single code sooner.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from mtl_search.architectures.base import Body, Family
from mtl_search.architectures.blocks import BlockFactory, Flatten, Shape, check_widths, flat_size
from mtl_search.architectures.experts import GateMonitor, _check_int, _format_widths, _widths, mix
from mtl_search.errors import UserError, is_number
from mtl_search.values import (
    Count,
    FloatRange,
    IntChoice,
    IntRange,
    NonNegativeFloat,
    PositiveFloat,
    extremes,
    suggest,
)


def smooth_step(t: torch.Tensor, gamma: float) -> torch.Tensor:
    """0 for t <= -gamma/2, 1 for t >= gamma/2, the cubic -2t^3/gamma^3 + 3t/(2 gamma) + 1/2 between.

    The cubic is 0 and 1 at the clamp's ends with zero slope there, so clamping first gives
    the piecewise function (and its zero gradient outside) without a branch.
    """
    t = t.clamp(-gamma / 2, gamma / 2)
    return -2.0 / gamma**3 * t**3 + 1.5 / gamma * t + 0.5


def code_bits(n_experts: int) -> torch.Tensor:
    """(2**m, m) table of the binary codes, bit j of code c in column j (least significant first)."""
    bits = max(1, math.ceil(math.log2(n_experts)))
    codes = torch.arange(2**bits)
    return ((codes.unsqueeze(1) >> torch.arange(bits)) & 1).float()


def code_to_expert(n_experts: int, n_codes: int) -> torch.Tensor:
    """(codes, experts) 0/1 matrix: code c stands for expert c mod n_experts."""
    return nn.functional.one_hot(torch.arange(n_codes) % n_experts, n_experts).float()


class DSelectGate(nn.Module):
    """k smooth-step selectors over binary codes, mixed by a softmax: (N, ...) -> (N, n_experts).

    After a forward pass ``code_weights`` holds each selector's weights over the codes,
    (N, k, codes), for the entropy regulariser.
    """

    def __init__(self, in_shape: Shape, n_experts: int, k: int, gamma: float) -> None:
        super().__init__()
        self.k, self.gamma = k, float(gamma)
        self.register_buffer("bits", code_bits(n_experts), persistent=False)
        self.register_buffer("folding", code_to_expert(n_experts, self.bits.shape[0]), persistent=False)
        self.n_bits = self.bits.shape[1]
        self.pool = Flatten()
        # k * m selector logits, then k logits of the softmax over the selectors
        self.linear = nn.Linear(flat_size(in_shape), k * self.n_bits + k)
        # Start every selector logit inside (-gamma/2, gamma/2), where the smooth-step has a
        # gradient, and the selectors apart from each other (equal selectors get equal
        # gradients and never part): the paper's uniform start, here on the bias.
        bound = self.gamma / (4 * math.sqrt(self.linear.in_features))
        nn.init.uniform_(self.linear.weight, -bound, bound)
        nn.init.uniform_(self.linear.bias, -self.gamma / 4, self.gamma / 4)
        self.code_weights: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.linear(self.pool(h).flatten(1))
        selector_logits = logits[:, : self.k * self.n_bits].unflatten(1, (self.k, self.n_bits))
        on = smooth_step(selector_logits, self.gamma).unsqueeze(2)  # (N, k, 1, m)
        # weight of code c: product over bits of S(z) where c has a 1, 1 - S(z) where it has a 0
        per_bit = on * self.bits + (1 - on) * (1 - self.bits)  # (N, k, codes, m)
        codes = per_bit.prod(dim=3)  # (N, k, codes)
        self.code_weights = codes
        selectors = codes @ self.folding  # (N, k, experts)
        mixing = torch.softmax(logits[:, self.k * self.n_bits :], dim=1)  # (N, k)
        return (mixing.unsqueeze(2) * selectors).sum(1)


def selector_entropy(code_weights: torch.Tensor) -> torch.Tensor:
    """Entropy of each selector's code weights, summed over the selectors, averaged over rows."""
    # 0 log 0 is 0: a settled selector has weights exactly 0 and 1
    plogp = code_weights * torch.log(code_weights.clamp_min(torch.finfo(code_weights.dtype).tiny))
    return -plogp.sum(dim=(1, 2)).mean()


class DSelectKSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experts: Count = Field(default_factory=lambda: IntRange(low=2, high=8))
    k: Count = Field(default_factory=lambda: IntRange(low=1, high=2))
    expert_depth: Count = 1
    expert_width: Count = Field(default_factory=lambda: IntChoice(choices=[16, 32, 64]))
    gamma: PositiveFloat = Field(default_factory=lambda: FloatRange(low=0.5, high=4.0, log=True))
    entropy_weight: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _two_experts(self) -> "DSelectKSpace":
        # one expert leaves nothing to select: refused when the space loads, not trial after trial
        if min(extremes(self.experts)) < 2:
            raise ValueError(f"experts must be at least 2, got {min(extremes(self.experts))}")
        return self


class DSelectKBody(Body):
    def __init__(
        self,
        n_experts: int,
        k: int,
        expert_widths: Sequence[int],
        gamma: float,
        entropy_weight: float,
        in_shape: Shape,
        task_names: Sequence[str],
        blocks: BlockFactory,
    ) -> None:
        super().__init__()
        self.task_names = list(task_names)
        experts = [blocks.stack(in_shape, expert_widths) for _ in range(n_experts)]
        self.experts = nn.ModuleList(expert for expert, _ in experts)
        self.gates = nn.ModuleDict({task: DSelectGate(in_shape, n_experts, k, gamma) for task in self.task_names})
        self.out_shapes = {task: experts[0][1] for task in self.task_names}
        self.entropy_weight = float(entropy_weight)
        self.monitor = GateMonitor()
        self._entropy: torch.Tensor | None = None

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = [expert(features) for expert in self.experts]
        representations = {}
        entropy = None
        for task in self.task_names:
            gate = self.gates[task]
            weights = gate(features)
            self.monitor.observe(task, weights, self.training)
            representations[task] = mix(weights, outputs)
            if self.training and self.entropy_weight > 0:
                term = selector_entropy(gate.code_weights)
                entropy = term if entropy is None else entropy + term
        self._entropy = None if entropy is None else entropy * self.entropy_weight
        return representations

    def regularization(self) -> torch.Tensor | None:
        """The weighted selector entropy of the last training-mode forward pass."""
        return self._entropy

    def shared_parameters(self) -> list[nn.Parameter]:
        # every task's gate can reach every expert; a gate only its own task's loss
        return list(self.experts.parameters())

    def sharing_report(self) -> dict[str, Any]:
        labels = [f"e{i}" for i in range(len(self.experts))]
        return {"gates": self.monitor.means({task: labels for task in self.task_names})}


class DSelectKFamily(Family):
    name = "dselect_k"
    required_keys = ("experts", "k", "expert_widths", "gamma")
    optional_keys = ("entropy_weight",)

    def space_model(self) -> type:
        return DSelectKSpace

    def sample(self, trial: Any, section: DSelectKSpace, task_names: Sequence[str]) -> dict[str, Any]:
        return {
            "experts": suggest(trial, "dselect_k.experts", section.experts),
            "k": suggest(trial, "dselect_k.k", section.k),
            "expert_widths": _widths(trial, "dselect_k.expert", section.expert_depth, section.expert_width, 1),
            "gamma": float(suggest(trial, "dselect_k.gamma", section.gamma)),
            "entropy_weight": float(suggest(trial, "dselect_k.entropy_weight", section.entropy_weight)),
        }

    def validate(self, spec: dict[str, Any], task_names: Sequence[str]) -> None:
        _check_int(spec.get("experts"), "experts", "dselect_k", 2)
        _check_int(spec.get("k"), "k", "dselect_k", 1)
        check_widths(spec.get("expert_widths"), "dselect_k spec", "expert_widths", allow_empty=False)
        gamma = spec.get("gamma")
        if not is_number(gamma) or not math.isfinite(gamma) or gamma <= 0:
            raise UserError(f"dselect_k spec: gamma must be a finite number above 0, got {gamma!r}")
        weight = spec.get("entropy_weight", 0.0)
        if not is_number(weight) or not math.isfinite(weight) or weight < 0:
            raise UserError(f"dselect_k spec: entropy_weight must be a finite number >= 0, got {weight!r}")

    def build(self, spec: dict[str, Any], in_shape: Shape, task_names: Sequence[str], blocks: BlockFactory) -> Body:
        return DSelectKBody(
            spec["experts"],
            spec["k"],
            spec["expert_widths"],
            spec["gamma"],
            spec.get("entropy_weight", 0.0),
            in_shape,
            task_names,
            blocks,
        )

    def summary(self, spec: dict[str, Any], task_names: Sequence[str]) -> str:
        text = (
            f"{spec['experts']}x{_format_widths(spec['expert_widths'])} experts, "
            f"DSelect-{spec['k']} gate per task gamma={spec['gamma']:.3g}"
        )
        if spec.get("entropy_weight"):
            text += f" entropy={spec['entropy_weight']:.3g}"
        return text
