"""Gradient weightings that aggregate the Jacobian of the task losses, computed by torchjd.

Each batch, every task's gradient g_t on the shared parameters (``model.shared_parameters()``)
is taken separately; the rows g_t form the Jacobian J (tasks x shared parameters), and a torchjd
aggregator turns J into the one update the shared parameters receive. Every other parameter
(towers, task-specific blocks, a method's own learned parameters) receives the plain gradient
of the summed losses, since one task reaches it and there is nothing to aggregate. This is
torchjd's ``mtl_backward`` convention, and PCGrad's here. With no shared parameter (fully
separate networks) or a single task, every method is the plain sum.

Scale: each update is scaled as the sum of the task gradients is for identical gradients (not
their mean), like static weights of 1, so that one learning-rate range suits every method:
UPGrad, DualProj and Aligned-MTL get a preference vector of ones, IMTL-G's weights (summing to 1)
are multiplied by K, CAGrad's by K / (1 + c), GradDrop and ConFIG sum already. Nash-MTL keeps the
paper's weights and clipping.

torchjd is an optional dependency (the ``jd`` extra; CAGrad and Nash-MTL solve convex programmes
with cvxpy, the ``jd-cvxpy`` extra): a space or candidate naming one of these methods without
them is refused in one line naming the extra.
"""

from __future__ import annotations

import importlib
import warnings
from abc import abstractmethod
from typing import Annotated, Any, ClassVar, Sequence

import torch
from pydantic import model_validator
from torch import nn

from mtl_search.errors import UserError
from mtl_search.values import BoolParam, Count, NonNegativeFloat, Share, StrictSection, StrParam, one_of
from mtl_search.weighting.base import EpochMean, LossWeighting, add_to_grad, combine, shared_parameters, task_gradients

EXTRA = "jd"
CVXPY_EXTRA = "jd-cvxpy"
# UPGrad's and DualProj's projection onto the dual cone is a quadratic programme torchjd solves with quadprog
QUADPROG_MODULES = ("quadprog", "qpsolvers")
ALIGNED_SCALE_MODES = ("min", "median", "rmse")


def torchjd_aggregation(method: str, modules: Sequence[str] = (), extra: str = EXTRA) -> Any:
    """``torchjd.aggregation``, or a one-line UserError naming the extra that installs it."""
    for module in ("torchjd", *modules):
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError(
                f"loss weighting {method!r} needs the optional package {module!r}: pip install 'mtl-search[{extra}]'"
            ) from None
    return importlib.import_module("torchjd.aggregation")


class JacobianSpace(StrictSection):
    """A space section of a torchjd method: loading it checks that torchjd is installed."""

    method_name: ClassVar[str]
    required_modules: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = EXTRA

    @model_validator(mode="after")
    def _installed(self) -> "JacobianSpace":
        try:
            torchjd_aggregation(self.method_name, self.required_modules, self.extra)
        except UserError as error:
            raise ValueError(str(error)) from None
        return self


class JacobianWeighting(LossWeighting):
    """Shared-parameter gradients aggregated by a torchjd aggregator (see the module's docstring).

    Subclasses build the aggregator in :meth:`make_aggregator`; for one that weighs the rows
    (a torchjd ``WeightedAggregator``) the weights are recorded, scaled by ``weight_scale``, and
    ``weights()`` is their mean over the epoch's batches.
    """

    space_model: ClassVar[type[JacobianSpace]]

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
        space = self.space_model
        self.aggregation = torchjd_aggregation(self.name, space.required_modules, space.extra)
        # one aggregator per device and dtype: torchjd keeps preference vectors and leaks as plain
        # tensors, which .to(device) does not move
        self._aggregators: dict[tuple[torch.device, torch.dtype], Any] = {}
        self._applied = EpochMean(self.task_names)

    @abstractmethod
    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        """The torchjd aggregator applied to each batch's Jacobian, its tensors made with ``like``
        (the Jacobian's device and dtype)."""

    def aggregator(self, jacobian: torch.Tensor) -> Any:
        key = (jacobian.device, jacobian.dtype)
        if key not in self._aggregators:
            like = {"device": jacobian.device, "dtype": jacobian.dtype}
            self._aggregators[key] = self.make_aggregator(len(self.task_names), like)
        return self._aggregators[key]

    @property
    def weight_scale(self) -> float:
        return 1.0

    def task_losses(self, losses: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The losses whose gradients form the Jacobian's rows (and are summed for the rest of the network)."""
        return [losses[name] for name in self.task_names]

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        task_losses = self.task_losses(losses)
        total = combine(dict(zip(self.task_names, task_losses)), {name: 1.0 for name in self.task_names}, extra)
        shared = shared_parameters(model, self.name)
        if not shared or len(self.task_names) < 2:
            total.backward()
            return total.detach()
        jacobian = task_gradients(task_losses, shared).detach()
        total.backward()
        # in fp32: under autocast the gradients may be 16-bit
        update = self.aggregate(jacobian.float())
        if update is not None:
            # the full backward put sum_t g_t (plus the regulariser's gradient) on the shared
            # parameters; swapping sum_t g_t for the aggregate leaves the regulariser untouched
            add_to_grad(shared, update.to(jacobian.dtype) - jacobian.sum(dim=0))
        return total.detach()

    def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor | None:
        """The update for the shared parameters from the Jacobian (tasks x parameters); None
        keeps the plain sum (a Jacobian that is not finite, as an overflowed fp16 step)."""
        if not bool(torch.isfinite(jacobian).all()):
            return None
        aggregator = self.aggregator(jacobian)
        if not isinstance(aggregator, self.aggregation.WeightedAggregator):
            return aggregator(jacobian)
        # the aggregator's own two steps, kept apart to record the weights: w from J, then w @ J
        weights = self.weight_scale * aggregator.weighting(jacobian)
        self._applied.add(self.recorded_weights(weights))
        return weights @ jacobian

    def recorded_weights(self, weights: torch.Tensor) -> torch.Tensor:
        """The weight each task's raw gradient received, as ``weights()`` reports it."""
        return weights

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        return self._applied.mean() or {name: 1.0 for name in self.task_names}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name}


class UPGradSpace(JacobianSpace):
    """UPGrad has no setting to search."""

    method_name = "upgrad"
    required_modules = QUADPROG_MODULES


class UPGrad(JacobianWeighting):
    """UPGrad, unconflicting projection of gradients (Quinton and Rey, Jacobian descent, 2024):
    each g_t is projected onto the dual cone of all the rows (the directions that conflict with
    none of them) and the projections are summed, so the update never increases a task's loss
    to first order."""

    name = "upgrad"
    space_model = UPGradSpace

    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        return self.aggregation.UPGrad(pref_vector=torch.ones(n_tasks, **like))


class DualProjSpace(JacobianSpace):
    """DualProj has no setting to search."""

    method_name = "dualproj"
    required_modules = QUADPROG_MODULES


class DualProj(JacobianWeighting):
    """DualProj (Quinton and Rey, 2024): the sum of the task gradients, projected onto the dual cone of the rows."""

    name = "dualproj"
    space_model = DualProjSpace

    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        return self.aggregation.DualProj(pref_vector=torch.ones(n_tasks, **like))


class AlignedMTLSpace(JacobianSpace):
    """``scale_mode``: the eigenvalue the balanced gradients are scaled to (min, median, rmse), or ``{choices: [...]}``."""

    method_name = "aligned_mtl"
    scale_mode: Annotated[StrParam, one_of(ALIGNED_SCALE_MODES, "a scale mode")] = "min"


class AlignedMTL(JacobianWeighting):
    """Aligned-MTL (Senushkin et al., CVPR 2023): the Jacobian's rows are made orthogonal and of equal
    norm (its condition number brought to 1), the norm set by ``scale_mode`` (the Gramian's smallest
    eigenvalue, their median, or their root mean square), then summed."""

    name = "aligned_mtl"
    space_model = AlignedMTLSpace

    def __init__(self, task_names: Sequence[str], scale_mode: str = "min") -> None:
        if scale_mode not in ALIGNED_SCALE_MODES:
            raise UserError(
                f"loss_weighting.aligned_mtl.scale_mode: {scale_mode!r} is not one of {', '.join(ALIGNED_SCALE_MODES)}"
            )
        self.scale_mode = scale_mode
        super().__init__(task_names)

    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        return self.aggregation.AlignedMTL(pref_vector=torch.ones(n_tasks, **like), scale_mode=self.scale_mode)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "scale_mode": self.scale_mode}


class GradDropSpace(JacobianSpace):
    """``leak``: the share of every task's gradient that passes unmasked, in [0, 1] (default 0)."""

    method_name = "graddrop"
    leak: Share = 0.0


class GradDrop(JacobianWeighting):
    """GradDrop, gradient sign dropout (Chen et al., NeurIPS 2020): per shared parameter, the sign
    purity P = (1 + sum_t g_t / sum_t |g_t|) / 2 is compared with a uniform draw U; where P > U only
    the positive components of the task gradients are kept, elsewhere only the negative ones, and
    the kept components are summed. ``leak`` lets that share of each gradient through unmasked.

    The paper applies the masking to the gradients at a shared activation layer; here it is
    applied to the shared parameters' gradients, as torchjd's aggregator is. The draws come from
    torch's global generator, which the trainer seeds with the candidate's seed.
    """

    name = "graddrop"
    space_model = GradDropSpace

    def __init__(self, task_names: Sequence[str], leak: float = 0.0) -> None:
        leak = float(leak)
        if not 0.0 <= leak <= 1.0:
            raise UserError(f"loss_weighting.graddrop.leak: {leak} is not in [0, 1]")
        self.leak = leak
        super().__init__(task_names)

    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        return self.aggregation.GradDrop(leak=torch.full((n_tasks,), self.leak, **like) if self.leak else None)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "leak": self.leak}


class IMTLSpace(JacobianSpace):
    """``loss_scaling``: true (IMTL, the hybrid: learned loss scales and IMTL-G), false (IMTL-G alone), or
    ``{choices: [true, false]}``."""

    method_name = "imtl"
    loss_scaling: BoolParam = True


class IMTL(JacobianWeighting):
    """IMTL, impartial multi-task learning (Liu et al., ICLR 2021).

    IMTL-G: the weights of the gradients are those whose combination has an equal projection on
    every task's unit gradient (torchjd's IMTLG, weights summing to 1, times K here). With
    ``loss_scaling`` (IMTL-L, the paper's hybrid) each task's loss is first scaled by a learned
    ``exp(s_t)``, trained on ``exp(s_t) L_t - s_t`` with the network, which makes the scaled losses
    equal; the Jacobian is then that of the scaled losses. Recorded weights are those applied to
    each raw task gradient on the shared parameters.
    """

    name = "imtl"
    space_model = IMTLSpace

    def __init__(self, task_names: Sequence[str], loss_scaling: bool = True) -> None:
        if not isinstance(loss_scaling, bool):
            raise UserError(f"loss_weighting.imtl.loss_scaling: {loss_scaling!r} is not true or false")
        super().__init__(task_names)
        self.loss_scaling = loss_scaling
        if loss_scaling:
            self.log_scales = nn.Parameter(torch.zeros(len(self.task_names)))
        else:  # a buffer: moves with the method, never trained
            self.register_buffer("log_scales", torch.zeros(len(self.task_names)))

    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        return self.aggregation.IMTLG()

    @property
    def weight_scale(self) -> float:
        return float(len(self.task_names))

    def task_losses(self, losses: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        plain = super().task_losses(losses)
        if not self.loss_scaling:
            return plain
        scales = self.log_scales.to(plain[0].dtype)
        return [torch.exp(scales[t]) * loss - scales[t] for t, loss in enumerate(plain)]

    def recorded_weights(self, weights: torch.Tensor) -> torch.Tensor:
        return weights * torch.exp(self.log_scales.detach()).to(weights.device, weights.dtype)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "loss_scaling": self.loss_scaling}


class ConFIGSpace(JacobianSpace):
    """ConFIG has no setting to search."""

    method_name = "config"


class ConFIG(JacobianWeighting):
    """ConFIG, conflict-free gradients (Liu et al., ICLR 2025): the update's direction makes an equal
    angle with every task's gradient (the pseudo-inverse of the unit gradients applied to a vector of
    ones), and its length is the sum of the gradients' projections on that direction."""

    name = "config"
    space_model = ConFIGSpace

    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        return self.aggregation.ConFIG()


class CAGradSpace(JacobianSpace):
    """``c``: the radius of the ball around the mean gradient the update is sought in, relative to
    the mean gradient's norm (at least 0; default 0.5)."""

    method_name = "cagrad"
    required_modules = ("cvxpy", "clarabel")
    extra = CVXPY_EXTRA
    c: NonNegativeFloat = 0.5


class CAGrad(JacobianWeighting):
    """CAGrad, conflict-averse gradient descent (Liu et al., NeurIPS 2021): within a ball of radius
    ``c`` times the mean gradient's norm around the mean gradient, the update that maximises the
    smallest improvement of any task (a convex programme torchjd solves with cvxpy). ``c`` 0 is
    the plain sum. torchjd's update on identical gradients is (1 + c) times their mean, so its
    weights are multiplied by K / (1 + c) (the paper's code offers the same division by 1 + c)."""

    name = "cagrad"
    space_model = CAGradSpace

    def __init__(self, task_names: Sequence[str], c: float = 0.5) -> None:
        c = float(c)
        if c < 0:
            raise UserError(f"loss_weighting.cagrad.c: {c} is below 0")
        self.c = c
        super().__init__(task_names)

    @property
    def weight_scale(self) -> float:
        return len(self.task_names) / (1.0 + self.c)

    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        return self.aggregation.CAGrad(c=self.c)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "c": self.c}


class NashMTLSpace(JacobianSpace):
    """``max_norm``: the update's norm is clipped to it (0: no clipping; default 1, as in the paper);
    ``update_weights_every``: batches between two solves, the weights kept in between (default 1)."""

    method_name = "nash_mtl"
    required_modules = ("cvxpy", "ecos")
    extra = CVXPY_EXTRA
    max_norm: NonNegativeFloat = 1.0
    update_weights_every: Count = 1


class NashMTL(JacobianWeighting):
    """Nash-MTL, multi-task learning as a bargaining game (Navon et al., ICML 2022): the weights
    alpha solve alpha_t (G alpha)_t = 1 for the Gramian G, the Nash bargaining solution, so that
    every task improves, by ``1 / alpha_t`` to first order. torchjd solves it with a sequence of
    convex programmes (cvxpy, ECOS, 20 iterations); the weights are used as they are, as in the
    paper, and the update's norm is clipped to ``max_norm``."""

    name = "nash_mtl"
    space_model = NashMTLSpace

    def __init__(self, task_names: Sequence[str], max_norm: float = 1.0, update_weights_every: int = 1) -> None:
        max_norm, update_weights_every = float(max_norm), int(update_weights_every)
        if max_norm < 0:
            raise UserError(f"loss_weighting.nash_mtl.max_norm: {max_norm} is below 0")
        if update_weights_every < 1:
            raise UserError(f"loss_weighting.nash_mtl.update_weights_every: {update_weights_every} is below 1")
        self.max_norm, self.update_weights_every = max_norm, update_weights_every
        super().__init__(task_names)
        # torchjd's programme changes its parameters every solve; cvxpy warns once that such a
        # programme is not faster on repeated solves, which says nothing to a user here
        warnings.filterwarnings(
            "ignore", message="You are solving a parameterized problem that is not DPP", module="torchjd"
        )

    def make_aggregator(self, n_tasks: int, like: dict[str, Any]) -> Any:
        return self.aggregation.NashMTL(
            n_tasks=n_tasks, max_norm=self.max_norm, update_weights_every=self.update_weights_every
        )

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "max_norm": self.max_norm, "update_weights_every": self.update_weights_every}
