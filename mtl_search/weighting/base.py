"""The loss-weighting interface.

A weighting method has one job: given this batch's per-task losses (and the model, for the
methods that look at gradients of its shared part), put gradients into the parameters'
``.grad``. The trainer then takes the optimiser step. Methods never know which family the
model belongs to: they reach shared parts only through ``model.shared_parameters()`` and
``model.representations``.
"""

from __future__ import annotations

import contextlib
import contextvars
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator, Protocol, Sequence

import torch
from pydantic import BaseModel
from torch import nn

from mtl_search.errors import UserError
from mtl_search.values import StrictSection, suggest


class NoSettings(StrictSection):
    """The space-file section of a method with nothing to search."""


class LossWeighting(nn.Module, ABC):
    """A loss-weighting method: turns one batch's per-task losses into gradients.

    To write one, subclass ``LossWeighting`` and

    - set ``name``: the method's name in a candidate (``{"method": name, ...}``) and in space
      files (``loss_weighting: {name: {...}}``); with an entry point, the entry point's name too;
    - take ``task_names`` first in ``__init__`` (call ``super().__init__(task_names)``), then
      the method's settings as keyword arguments with defaults;
    - implement :meth:`backward`, and override :meth:`weights`, :meth:`end_epoch` and
      :meth:`describe` (which must return the settings ``__init__`` takes, so that a stored
      trial rebuilds the same method) as the method needs;
    - to search settings from a space file, set ``space_model`` to a pydantic model of the
      section (forbid extra keys; ``mtl_search.values`` has the constant / range / choices
      types) whose fields are ``__init__``'s keywords: the default :meth:`sample` suggests
      each field as ``<name>.<field>``. Override :meth:`sample` for anything else.

    It is an ``nn.Module``: learned parameters (``nn.Parameter`` attributes, such as
    uncertainty weighting's log-variances) are trained by the trainer's optimiser with the
    model's, and ``.to(device)`` moves them and the buffers. State the method updates itself
    belongs in buffers (``register_buffer``), which move without being trained.
    ``needs_representations``: set it when :meth:`backward` reads ``model.representations``
    (the towers' inputs); ``needs_task_kinds``: ``__init__`` also takes ``task_kinds``
    ({task: "binary" | "multiclass" | "regression"}).

    A packaged method is registered by an entry point in the group ``mtl_search.weightings``
    pointing at the class (instantiated per trial, never at registration)::

        [project.entry-points."mtl_search.weightings"]
        halving = "my_package.halving:HalvingWeighting"

    Code that is not packaged calls ``register_method(HalvingWeighting)`` instead.
    """

    name: ClassVar[str]
    space_model: ClassVar[type[BaseModel]] = NoSettings
    needs_task_kinds: ClassVar[bool] = False
    # True when the method needs model.representations (the towers' inputs) kept by forward.
    needs_representations = False

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        self.task_names = list(task_names)

    @classmethod
    def sample(cls, trial: Any, section: Any, task_names: Sequence[str]) -> dict[str, Any]:
        """The keyword arguments of ``__init__`` for one trial, suggested through ``trial`` from
        ``section`` (the parsed space section): by default each field as ``<name>.<field>``."""
        fields = type(section).model_fields
        return {field: suggest(trial, f"{cls.name}.{field}", getattr(section, field)) for field in fields}

    @abstractmethod
    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        """Compute gradients for this batch; return the scalar total loss (detached) for logging.

        ``extra`` is a loss term the architecture adds (a regulariser); it is added with weight 1.
        """

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        """Called after every epoch with the mean training loss per task."""

    def weights(self) -> dict[str, float]:
        """The weights applied per task in the current epoch, recorded with the trial each epoch.

        The trainer reads them before :meth:`end_epoch`; methods whose weights change every
        batch report their mean over the epoch's batches.
        """
        return {}

    def describe(self) -> dict[str, Any]:
        """The method and its settings as JSON data."""
        return {"method": self.name}


class ScalarisedLoss(LossWeighting):
    """A loss-only method: one total of the batch's task losses (:meth:`total_loss`), one
    backward pass, no per-task gradients. Subclasses implement :meth:`total_loss` only."""

    @abstractmethod
    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar the network is trained on for this batch (without the architecture's term)."""

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        total = self.total_loss(losses)
        if extra is not None:
            total = total + extra
        total.backward()
        return total.detach()


class EpochMean:
    """Mean of per-batch weight vectors over one epoch, summed on the device.

    Keeping the sum as a tensor avoids a device-to-host copy every batch; the mean is read
    once per epoch.
    """

    def __init__(self, task_names: Sequence[str]) -> None:
        self.task_names = list(task_names)
        self.reset()

    def reset(self) -> None:
        self._sum: torch.Tensor | None = None
        self._count = 0

    def add(self, weights: torch.Tensor) -> None:
        weights = weights.detach()
        self._sum = weights.clone() if self._sum is None else self._sum + weights
        self._count += 1

    def mean(self) -> dict[str, float] | None:
        """The mean weight per task, or None when no batch was added since the last reset."""
        if self._sum is None:
            return None
        return dict(zip(self.task_names, (self._sum / self._count).tolist()))


class RankSum(Protocol):
    """The processes training one candidate data-parallel (training/data_parallel.py), as the
    weightings see them: how many there are, and the sum of a tensor over all of them."""

    size: int

    def sum(self, tensor: torch.Tensor) -> torch.Tensor: ...


_RANKS: contextvars.ContextVar[RankSum | None] = contextvars.ContextVar("mtl_search_ranks", default=None)


@contextlib.contextmanager
def across_ranks(ranks: RankSum | None) -> Iterator[None]:
    """Within it, each process holds a shard of the batch, its losses already scaled so that
    their gradients summed over the processes are the whole batch's (the trainer's doing):
    :func:`task_gradients` of parameters then returns the whole batch's per-task gradients,
    and :func:`add_to_grad` adds this process's share of a correction every process computes."""
    token = _RANKS.set(ranks)
    try:
        yield
    finally:
        _RANKS.reset(token)


def rank_count() -> int:
    """How many processes train the candidate data-parallel (1: this one alone)."""
    ranks = _RANKS.get()
    return 1 if ranks is None else ranks.size


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the data-parallel processes; itself when training alone."""
    ranks = _RANKS.get()
    return tensor if ranks is None or ranks.size == 1 else ranks.sum(tensor)


def task_gradients(
    losses: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor], *, sharded_inputs: bool = False
) -> torch.Tensor:
    """Row t: the gradient of ``losses[t]`` w.r.t. all of ``inputs``, flattened into one vector.

    The graph is kept for the full backward that follows. An input a loss does not reach
    gets a zero gradient (a task outside a tree group does not reach that group's block).
    Trained data-parallel, gradients of parameters (which every process holds) are summed over
    the processes, so that every process gets the whole batch's; ``sharded_inputs``: the inputs
    are this process's rows of an activation (a representation), whose gradients are its own.
    """
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, list(inputs), retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat([(g if g is not None else torch.zeros_like(x)).reshape(-1) for g, x in zip(grads, inputs)])
        )
    stacked = torch.stack(rows)
    return stacked if sharded_inputs else sum_over_ranks(stacked)


def add_to_grad(parameters: Sequence[nn.Parameter], flat: torch.Tensor) -> None:
    """Add a flat vector laid out as in :func:`task_gradients` to the parameters' ``.grad``.

    Trained data-parallel, every process computes the same ``flat`` from the whole batch's
    gradients, and the parameters' gradients are summed over the processes before the step:
    each adds its share, so that the sum holds ``flat`` once."""
    ranks = _RANKS.get()
    if ranks is not None and ranks.size > 1:
        flat = flat / ranks.size
    offset = 0
    for parameter in parameters:
        part = flat[offset : offset + parameter.numel()].view_as(parameter)
        offset += parameter.numel()
        if parameter.grad is None:
            parameter.grad = part.clone()
        else:
            parameter.grad.add_(part)


def smallest_value(param: Any) -> float:
    """The smallest value a space-file number (constant, range or choices) can take."""
    if hasattr(param, "low"):
        return param.low
    if hasattr(param, "choices"):
        return min(param.choices)
    return param


def check_smallest(param: Any, minimum: float, *, strict: bool) -> Any:
    """A space validator's check: ``param`` never goes below ``minimum`` (nor reaches it, if ``strict``)."""
    low = smallest_value(param)
    if low < minimum or (strict and low == minimum):
        raise ValueError(
            f"must be positive, got {low}" if strict and minimum == 0 else f"must be at least {minimum:g}, got {low}"
        )
    return param


def combine(
    losses: dict[str, torch.Tensor], weights: dict[str, float | torch.Tensor], extra: torch.Tensor | None
) -> torch.Tensor:
    # A weight of exactly 1 adds no multiply node: this runs every batch.
    terms = [
        loss if isinstance(weights[name], float) and weights[name] == 1.0 else weights[name] * loss
        for name, loss in losses.items()
    ]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    if extra is not None:
        total = total + extra
    return total


def shared_parameters(model: nn.Module, method: str) -> list[nn.Parameter]:
    """``model.shared_parameters()``: the parameters every task's loss reaches, which the
    gradient methods balance. A model of one's own must provide it (docs/explanation/loss-weighting.md)."""
    getter = getattr(model, "shared_parameters", None)
    if not callable(getter):
        raise UserError(
            f"loss weighting {method!r} needs model.shared_parameters(), the parameters every task's loss "
            f"reaches; {type(model).__name__} has none (see docs/how-to/weighting-own-loop.md)"
        )
    return list(getter())
