"""What a candidate network costs to run: extra objectives and hard limits.

Two costs are known: ``params`` (trainable parameters) and ``latency`` (milliseconds per
forward pass of one fixed batch on the search's device: the median of several timed passes
after a few warm-up passes, so one slow pass on a busy machine does not decide it). Either
can become an objective (minimised), and either can carry a hard limit.

Costs depend only on the architecture, so they are measured on the untrained network
*before* training. A candidate over a limit is therefore never trained: the trial records
its costs, gets its constraint values (``trial.set_constraint``) and is pruned with a
``prune_reason``. Samplers read the constraints (Optuna 5 samplers use
``trial.constraints`` directly, TPE and NSGA-II alike), so they learn to avoid the region;
``study.best_trials`` ignores infeasible trials, so they never enter the front.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import optuna

from mtl_search.errors import UserError
from mtl_search.records.objective import Objective
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord

if TYPE_CHECKING:  # torch is imported where a network is measured: `studies` and `pareto` train nothing
    import torch

# cost name (as given to --objective / objectives.extra) -> objective name in the study
COST_NAMES = {"params": "params", "latency": "latency_ms"}


def cost_objective(name: str) -> Objective:
    """The study objective for a cost name (``params`` or ``latency``)."""
    if name not in COST_NAMES:
        raise UserError(f"--objective {name!r}: expected one of {', '.join(COST_NAMES)}")
    return Objective(task="", metric=COST_NAMES[name], direction="minimize", kind="cost")


def cost_flags(metrics: Sequence[str]) -> str:
    """The ``--objective`` flags that give the cost objectives ``metrics`` (``latency_ms`` ...)."""
    flag = {metric: name for name, metric in COST_NAMES.items()}
    return " ".join(f"--objective {flag[metric]}" for metric in metrics)


# hard limit (key of a space's objectives: section) -> its command-line flag, and the cost it limits
LIMIT_FLAGS = {"max_params": "--max-params", "max_latency_ms": "--max-latency-ms"}
LIMITED_COSTS = {"max_params": "params", "max_latency_ms": "latency_ms"}


def limit_flag(key: str, value: Any) -> str:
    """``--max-params 6000``, ``--max-latency-ms 2.5``, or ``no --max-params`` (value None)."""
    if value is None:
        return f"no {LIMIT_FLAGS[key]}"
    return f"{LIMIT_FLAGS[key]} {value if isinstance(value, int) else format(value, 'g')}"


def other_limits(stored: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> str | None:
    """What is wrong with continuing a study whose ``objectives:`` section was ``stored``
    with one whose section is ``now``, or None when their hard limits are the same.

    A trial's feasibility is judged once, when it runs: one over a limit is never trained,
    one under it is trained and may enter the front. A changed limit cannot judge the
    trials again, so a continued study keeps its limits (a study stored before limits
    existed had none)."""
    stored, now = stored or {}, now or {}
    changed = [key for key in LIMIT_FLAGS if stored.get(key) != now.get(key)]
    if not changed:
        return None

    def limits(section: Mapping[str, Any]) -> str:
        return " ".join(limit_flag(key, section.get(key)) for key in changed)

    kept = [limit_flag(key, stored[key]) for key in changed if stored.get(key) is not None]
    dropped = [f"{LIMIT_FLAGS[key]} (or objectives.{key})" for key in changed if stored.get(key) is None]
    fix = " and ".join(
        [*([f"pass {' '.join(kept)}"] if kept else []), *([f"run without {' or '.join(dropped)}"] if dropped else [])]
    )
    return f"judged its trials under {limits(stored)} and this run would judge them under {limits(now)}; {fix}"


@dataclasses.dataclass(frozen=True)
class CostMeter:
    """Measures a network's costs and checks them against the limits.

    ``objectives``: the cost names that are objectives; ``max_params`` and ``max_latency_ms``:
    hard limits (None: no limit). Latency is only measured when it is an objective or
    limited, as timing takes a few forward passes. ``batch_size`` rows of the validation split
    form the timed batch; ``warmup_passes`` untimed passes come first (allocator, caches) and
    the median of ``timed_passes`` is kept.
    """

    objectives: tuple[str, ...] = ()
    max_params: int | None = None
    max_latency_ms: float | None = None
    batch_size: int = 256
    warmup_passes: int = 3
    timed_passes: int = 11

    def __post_init__(self) -> None:
        for name in self.objectives:
            cost_objective(name)  # validates the name
        if self.max_params is not None and self.max_params < 1:
            raise UserError(f"--max-params {self.max_params}: must be at least 1")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise UserError(f"--max-latency-ms {self.max_latency_ms}: must be positive")

    @classmethod
    def from_space(cls, objectives: Any) -> "CostMeter":
        """The meter a space's ``objectives:`` section asks for."""
        return cls(
            objectives=tuple(objectives.extra),
            max_params=objectives.max_params,
            max_latency_ms=objectives.max_latency_ms,
        )

    @property
    def measures_latency(self) -> bool:
        return "latency" in self.objectives or self.max_latency_ms is not None

    @property
    def active(self) -> bool:
        return bool(self.objectives) or self.max_params is not None or self.max_latency_ms is not None

    def measure(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """``{"params": n, "latency_ms": x}`` (latency only when needed) for ``model`` on ``batch``."""
        costs: dict[str, float] = {"params": float(sum(p.numel() for p in model.parameters() if p.requires_grad))}
        if self.measures_latency:
            costs["latency_ms"] = forward_latency_ms(
                model, batch, warmup_passes=self.warmup_passes, timed_passes=self.timed_passes
            )
        return costs

    def constraints(self, costs: Mapping[str, float]) -> dict[str, float]:
        """Constraint values for ``trial.set_constraint``: > 0 means over the limit.

        Relative excess (``value / limit - 1``) so that violations of different limits are
        comparable when a sampler ranks infeasible trials by their summed violation.
        """
        values = {}
        if self.max_params is not None:
            values["max_params"] = costs["params"] / self.max_params - 1.0
        if self.max_latency_ms is not None:
            values["max_latency_ms"] = costs["latency_ms"] / self.max_latency_ms - 1.0
        return values

    def describe_violation(self, costs: Mapping[str, float]) -> str | None:
        """One line naming each limit the costs exceed, or None when within every limit."""
        parts = []
        if self.max_params is not None and costs["params"] > self.max_params:
            parts.append(f"{int(costs['params'])} parameters > --max-params {self.max_params}")
        if self.max_latency_ms is not None and costs["latency_ms"] > self.max_latency_ms:
            parts.append(f"latency {costs['latency_ms']:.3g} ms > --max-latency-ms {self.max_latency_ms:g}")
        return "over limit: " + "; ".join(parts) if parts else None


def with_cost_options(
    space: Any, *, objectives: Sequence[str] = (), max_params: int | None = None, max_latency_ms: float | None = None
) -> Any:
    """A copy of ``space`` with command-line cost options added to its ``objectives:`` section.

    ``objectives`` are added to the space's ``extra`` list (in order, without repeats); a
    limit given here replaces the space's.
    """
    section = space.objectives
    extra = list(section.extra) + [name for name in objectives if name not in section.extra]
    for name in extra:
        cost_objective(name)
    update: dict[str, Any] = {"extra": list(dict.fromkeys(extra))}
    if max_params is not None:
        update["max_params"] = max_params
    if max_latency_ms is not None:
        update["max_latency_ms"] = max_latency_ms
    return space.model_copy(update={"objectives": section.model_copy(update=update)})


def forward_latency_ms(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], *, warmup_passes: int = 3, timed_passes: int = 11
) -> float:
    """Median wall time in milliseconds of one forward pass of ``batch`` in eval mode."""
    import torch

    was_training = model.training
    model.eval()
    device = next(iter(batch.values())).device
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(warmup_passes):
            model(batch)
        synchronize()
        for _ in range(timed_passes):
            started = time.perf_counter()
            model(batch)
            synchronize()  # CUDA runs asynchronously: wait for the pass to end before reading the clock
            times.append((time.perf_counter() - started) * 1000.0)
    model.train(was_training)
    return statistics.median(times)


def timing_batch(split: Any, batch_size: int, device: torch.device | str) -> dict[str, torch.Tensor]:
    """The first ``batch_size`` rows of ``split`` (a fixed batch, so every trial is timed alike)."""
    return {name: tensor[:batch_size].to(device) for name, tensor in split.inputs.items()}


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """True when every constraint value is <= 0 (a trial without constraints is feasible)."""
    return all(value <= 0.0 for value in trial.constraints.values())


def count_infeasible(trials: Sequence[optuna.trial.FrozenTrial]) -> int:
    return sum(1 for trial in trials if not is_feasible(trial))


def trained_without_limits(study: optuna.Study) -> str | None:
    """A note on the complete trials trained without a limit the study stores, over that
    limit or not measured against it, or None. Only a run of an earlier release, which did
    not hold a continued study to its limits, trained such trials; the front may hold them."""
    section = StudyRecord.read(study).space_section("objectives")
    limits = {key: section[key] for key in LIMIT_FLAGS if section.get(key) is not None}
    if not limits:
        return None
    numbers = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        record = TrialRecord.read(trial, only=("n_params", "costs"))
        costs = {"params": record.n_params} | record.costs
        if any(
            key not in trial.constraints
            and (costs.get(LIMITED_COSTS[key]) is None or costs[LIMITED_COSTS[key]] > limit)
            for key, limit in limits.items()
        ):
            numbers.append(str(trial.number))
    if not numbers:
        return None
    shown = " ".join(limit_flag(key, limit) for key, limit in limits.items())
    return (
        f"trial{'s' if len(numbers) > 1 else ''} {', '.join(numbers)} {'were' if len(numbers) > 1 else 'was'} trained by a run that "
        f"left out the study's {shown} (before continued studies kept their limits); over it or not measured against it, "
        f"{'they' if len(numbers) > 1 else 'it'} may stand on its front"
    )
