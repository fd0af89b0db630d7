"""Fixed loss weights: sum_t w_t * L_t, given or searched."""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence, Union

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from mtl_search.errors import UserError, is_number
from mtl_search.values import PositiveFloatRange
from mtl_search.weighting.base import LossWeighting, combine


class StaticSpace(BaseModel):
    """``weights``: "equal" (all 1); "simplex" (searched, spread evenly over the simplex,
    scaled so that they average 1); or a range ``{low, high, log}`` each task's weight is drawn from."""

    model_config = ConfigDict(extra="forbid")
    weights: Union[Literal["equal", "simplex"], PositiveFloatRange] = "equal"


class StaticWeighting(LossWeighting):
    name = "static"
    space_model = StaticSpace

    def __init__(self, task_names: Sequence[str], weights: dict[str, float] | Literal["equal"] | None = None) -> None:
        super().__init__(task_names)
        if weights is None or weights == "equal":
            weights = {}
        if not isinstance(weights, dict):
            # "simplex" and ranges are search-space settings: a candidate holds the drawn numbers
            raise UserError(
                f"loss weighting 'static': weights {weights!r}: expected 'equal' or a weight per task "
                f"({', '.join(self.task_names)}); 'simplex' and ranges belong in a space file"
            )
        unknown = [name for name in weights if name not in self.task_names]
        if unknown:
            raise UserError(
                f"loss weighting 'static': weight for unknown task {unknown[0]!r} (tasks: {', '.join(self.task_names)})"
            )
        for name, value in weights.items():
            if not is_number(value) or not math.isfinite(value) or value < 0:
                raise UserError(
                    f"loss weighting 'static': weight of {name}: expected a finite number >= 0, got {value!r}"
                )
        self._weights = {name: float(weights.get(name, 1.0)) for name in self.task_names}

    def backward(self, losses: dict[str, torch.Tensor], model: nn.Module, extra: torch.Tensor | None) -> torch.Tensor:
        total = combine(losses, self._weights, extra)
        total.backward()
        return total.detach()

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "weights": self.weights()}

    @classmethod
    def sample(cls, trial: Any, section: StaticSpace, task_names: Sequence[str]) -> dict[str, Any]:
        if section.weights == "equal":
            return {"weights": {name: 1.0 for name in task_names}}
        if section.weights == "simplex":
            # -log(u) of independent uniforms, normalised, is uniform on the simplex (Dirichlet(1)),
            # so a sampler exploring u evenly explores every weight ratio evenly.
            draws = {
                name: -math.log(max(trial.suggest_float(f"static.u_{name}", 0.0, 1.0), 1e-12)) for name in task_names
            }
            total = sum(draws.values()) or 1.0
            return {"weights": {name: len(task_names) * value / total for name, value in draws.items()}}
        rng = section.weights
        return {
            "weights": {
                name: trial.suggest_float(f"static.w_{name}", rng.low, rng.high, log=rng.log) for name in task_names
            }
        }
