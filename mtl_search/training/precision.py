"""Mixed precision: what ``training.precision`` (fp32, bf16, fp16) changes in a training step.

fp32 trains as PyTorch does by default: nothing below runs. bf16 and fp16 run each training
step's forward pass and losses under ``torch.autocast`` with that 16-bit type (matrix products
and convolutions in 16 bits; losses, normalisations and reductions in fp32, as autocast
decides). The weights, the optimiser and its state stay fp32, and so does evaluation:
validation metrics, the kept epoch, pruning and the exported model do not depend on rounding
of 16-bit arithmetic, and a trial's scores compare with those of an fp32 trial.

bf16 has fp32's range, so its gradients need no care. fp16's smallest values are about
6e-8: small gradients would round to 0, so fp16 scales the gradients up by a factor a
``torch.amp.GradScaler`` adapts (halved, and the step skipped, when a gradient overflows).
Loss weightings compute the gradients themselves, some from each task's loss separately
(pcgrad, mgda), so the factor is applied where each loss enters the backward pass rather than
to their total: every gradient that reaches the network is multiplied by it, the loss values
a weighting reads are not, and a weighting's own learned parameters (uncertainty's
log-variances) are brought to the same factor before the scaler divides it out again.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, ContextManager, Sequence

import torch
from torch import nn

from mtl_search.errors import UserError

PRECISIONS = ("fp32", "bf16", "fp16")
AUTOCAST_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Weightings fp16's loss scaling breaks, and why. gradnorm steps its task weights from gradient
# norms inside ``backward``: a batch whose fp16 gradients overflowed is skipped by the network's
# optimiser, but that inner step would already have taken the overflowed values. nash_mtl's weights
# shrink as the gradients grow (alpha_t (G alpha)_t = 1), so its update ignores the loss scale that
# unscaling then divides out. db_mtl averages gradients over batches: after the scaler halves its
# factor, the average still holds gradients at the old factor, which unscaling would not undo.
FP16_REFUSED_WEIGHTINGS = {
    "gradnorm": "takes optimiser steps of its own that cannot skip a batch whose fp16 gradients overflowed",
    "nash_mtl": "gives an update that does not grow with fp16's loss scale, so unscaling would shrink it",
    "db_mtl": "averages gradients over batches, which fp16's changing loss scale would mix",
}


def check_precision(value: Any, where: str = "training.precision") -> str:
    """``value`` if it names a precision; else a one-line :class:`UserError` naming ``where``."""
    if not isinstance(value, str) or value not in PRECISIONS:
        raise UserError(f"{where} {value!r}: expected one of {', '.join(PRECISIONS)}")
    return value


def check_supported(precision: str, device: torch.device, where: str = "training.precision") -> None:
    """Refuse (one line) a precision whose autocast this torch does not run on ``device``.

    torch turns an unsupported autocast type off with a warning (bf16 on an older Apple GPU)
    or raises (bf16 on a CUDA card before Ampere); either way the candidate would not train
    as asked, so the autocast is tried once here.
    """
    if precision == "fp32":
        return
    dtype = AUTOCAST_TYPES[precision]
    available = getattr(torch.amp, "is_autocast_available", None)
    if callable(available) and not available(device.type):
        raise UserError(f"{where} {precision}: torch has no autocast on {device.type} devices; use fp32")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device.type, dtype=dtype):
                enabled = torch.is_autocast_enabled(device.type)
    except (RuntimeError, TypeError, ValueError) as error:
        raise UserError(f"{where} {precision}: not supported on {device} ({_first_line(error)}); use fp32") from None
    if not enabled:
        raise UserError(f"{where} {precision}: torch's autocast does not run {dtype} on {device}; use fp32")


def autocast(precision: str, device: torch.device) -> Callable[[], ContextManager[Any]]:
    """A factory of the context each training step's forward pass and losses run in."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = AUTOCAST_TYPES[precision]
    return lambda: torch.autocast(device.type, dtype=dtype)


class _ScaleGradient(torch.autograd.Function):
    """The identity forward; backward multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale)
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        (scale,) = ctx.saved_tensors
        # in fp32: the factor (up to 2**16 and beyond) would overflow fp16 by itself
        return (gradient.float() * scale).to(gradient.dtype), None


class LossScaling:
    """fp16's gradient scaling for one candidate's optimiser (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.scaler = torch.amp.GradScaler(device.type)
        self._one = torch.ones((), device=device)

    def backward_and_step(
        self,
        weighting: nn.Module,
        losses: dict[str, torch.Tensor],
        model: nn.Module,
        extra: torch.Tensor | None,
        optimizer: Any,
        weighting_parameters: Sequence[torch.Tensor],
        sum_gradients: Callable[[], None] | None = None,
    ) -> None:
        """``weighting.backward`` on gradient-scaled losses, then the optimiser's step unless a
        gradient overflowed, then the scale's update. ``sum_gradients`` (trained data-parallel)
        sums the network's gradients over the processes before the overflow check, so that
        every process skips the same steps."""
        scale = self.scaler.scale(self._one)  # the current factor, as a tensor: no wait for the device
        scaled = {name: _ScaleGradient.apply(loss, scale) for name, loss in losses.items()}
        weighting.backward(scaled, model, _ScaleGradient.apply(extra, scale) if extra is not None else None)
        with torch.no_grad():
            for parameter in weighting_parameters:  # they read loss values, not scaled gradients
                if parameter.grad is not None:
                    parameter.grad.mul_(scale)
        if sum_gradients is not None:
            sum_gradients()
        self.scaler.step(optimizer)
        self.scaler.update()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


__all__ = ["FP16_REFUSED_WEIGHTINGS", "PRECISIONS", "LossScaling", "autocast", "check_precision", "check_supported"]
