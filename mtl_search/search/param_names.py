"""Parameter names that stay valid when a study continues with another space.

Optuna keeps one distribution per parameter name and study: a categorical parameter's
choices, and whether a number is drawn on a log scale, may not change (``trial.suggest_*``
raises "CategoricalDistribution does not support dynamic value space"). A study continued
with another space (other families, other weightings, other choices) would fail every new
trial. So a run samples through :class:`RenamingTrial`: a parameter whose distribution the
study already holds under its name in an incompatible form gets a name of its own,
``<name>~<6 hex digits of the new distribution>``; the same space gives the same name on
every machine and in every run. Compatible distributions (the same choices, a number range
that merely moved) keep their name. Every trial stores its candidate, so nothing reads the
renamed parameters but the sampler, which treats them as the new dimensions they are.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)

RENAMED = "~"


def study_distributions(
    study: optuna.Study, trials: Sequence[optuna.trial.FrozenTrial] | None = None
) -> dict[str, BaseDistribution]:
    """Each parameter name of the study's trials (``trials``: read from it already) with a
    distribution stored under it."""
    known: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False) if trials is None else trials:
        for name, distribution in trial.distributions.items():
            known.setdefault(name, distribution)
    return known


def compatible(old: BaseDistribution | None, new: BaseDistribution) -> bool:
    if old is None:
        return True
    try:
        check_distribution_compatibility(old, new)
    except ValueError:
        return False
    return True


def renamed(name: str, distribution: BaseDistribution) -> str:
    digest = hashlib.sha1(distribution_to_json(distribution).encode()).hexdigest()[:6]
    return f"{name}{RENAMED}{digest}"


class RenamingTrial:
    """An Optuna trial whose ``suggest_*`` calls use a name the study can store.

    Everything else (``number``, ``study``, ``set_user_attr``, ...) is the trial's own. A value
    enqueued under the original name (``study.enqueue_trial``) is still used under the new one.
    """

    def __init__(self, trial: optuna.trial.Trial, known: dict[str, BaseDistribution]) -> None:
        self._trial = trial
        self._known = known

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._trial, attribute)

    def _name(self, name: str, distribution: BaseDistribution) -> str:
        if compatible(self._known.get(name), distribution):
            return name
        new = renamed(name, distribution)
        fixed = getattr(self._trial, "_fixed_params", None)  # Optuna's enqueued values, by name
        if isinstance(fixed, dict) and name in fixed and new not in fixed:
            fixed[new] = fixed[name]
        return new

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        name = self._name(name, FloatDistribution(low, high, log=log, step=step))
        return self._trial.suggest_float(name, low, high, step=step, log=log)

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        name = self._name(name, IntDistribution(low, high, log=log, step=step))
        return self._trial.suggest_int(name, low, high, step=step, log=log)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        name = self._name(name, CategoricalDistribution(choices))
        return self._trial.suggest_categorical(name, choices)
