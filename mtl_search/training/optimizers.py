"""Adam and AdamW on torch's fused kernel, called directly.

``torch.optim.Adam(fused=True)`` runs the same kernel, but every ``torch.optim.Optimizer``
imports ``torch._dynamo`` when it is built (about 1.3 CPU seconds, paid by every process:
each worker, each export) and wraps each step in hooks, a profiler record and a regrouping
of the tensors. A search steps small networks thousands of times, so this class keeps only
what it uses: parameter groups with their own learning rate and weight decay, ``zero_grad``
and ``step``. The update is the kernel's, so the weights are bit for bit those of
``torch.optim.Adam(fused=True)`` (tests/training/test_optimizers.py).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

BETAS = (0.9, 0.999)
EPS = 1e-8


def fused_kernel(decoupled_weight_decay: bool) -> Any:
    """torch's fused Adam (or AdamW) kernel, None in a torch without it."""
    return getattr(torch, "_fused_adamw_" if decoupled_weight_decay else "_fused_adam_", None)


class _ParameterState:
    __slots__ = ("step", "exp_avg", "exp_avg_sq")

    def __init__(self, parameter: torch.Tensor) -> None:
        # the kernel reads the step count from a float32 tensor on the parameter's device
        self.step = torch.zeros((), dtype=torch.float32, device=parameter.device)
        self.exp_avg = torch.zeros_like(parameter, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(parameter, memory_format=torch.preserve_format)


class FusedAdam:
    """Adam (``decoupled_weight_decay``: AdamW) over real floating-point parameters on CPU or CUDA.

    ``groups`` are ``{"params": [...]}`` dictionaries as torch's optimisers take them, each
    with its own ``lr`` and ``weight_decay`` when given. A parameter without a gradient is
    skipped at that step, as torch does.
    """

    def __init__(
        self, groups: Iterable[dict[str, Any]], *, lr: float, weight_decay: float, decoupled_weight_decay: bool = False
    ) -> None:
        kernel = fused_kernel(decoupled_weight_decay)
        if kernel is None:
            raise RuntimeError("this torch has no fused Adam kernel")
        self._kernel = kernel
        self.defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "betas": BETAS,
            "eps": EPS,
            "fused": True,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        self.param_groups = [{"lr": lr, "weight_decay": weight_decay} | dict(group) for group in groups]
        for group in self.param_groups:
            group["params"] = list(group["params"])
        self.state: dict[torch.Tensor, _ParameterState] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                if set_to_none:
                    parameter.grad = None
                else:
                    parameter.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            # one kernel call per device and dtype: the kernel takes tensors of one kind
            batches: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], ...]] = {}
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state.get(parameter)
                if state is None:
                    state = self.state[parameter] = _ParameterState(parameter)
                batch = batches.setdefault((parameter.device, parameter.dtype), ([], [], [], [], []))
                tensors = (parameter, parameter.grad, state.exp_avg, state.exp_avg_sq, state.step)
                for kind, tensor in zip(batch, tensors):
                    kind.append(tensor)
            for parameters, grads, exp_avgs, exp_avg_sqs, steps in batches.values():
                torch._foreach_add_(steps, 1)
                self._kernel(
                    parameters,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    [],
                    steps,
                    amsgrad=False,
                    lr=group["lr"],
                    beta1=BETAS[0],
                    beta2=BETAS[1],
                    weight_decay=group["weight_decay"],
                    eps=EPS,
                    maximize=False,
                    grad_scale=None,
                    found_inf=None,
                )
