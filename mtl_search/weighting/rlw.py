"""Random loss weighting (Lin, Ye, Xu, Shi and Zhang, TMLR 2022).

Every batch draws fresh task weights and trains on sum_t w_t * L_t. The paper draws raw
values from a distribution and normalises them; here:

    normal     w = softmax(z),  z_t ~ N(0, 1)      (the paper's main choice)
    uniform    w = u / sum(u),  u_t ~ U(0, 1)
    dirichlet  w = e / sum(e),  e_t ~ Exp(1)        (Dirichlet(1): uniform on the simplex)

The normalised weights sum to 1; they are multiplied by the number of tasks T so that they
average 1 like equal static weights, and the training learning rate keeps its meaning across
methods. The draws come from a generator of the method's own, seeded from ``seed`` or, when
none is given, from the seed torch's global generator was last seeded with (the trainer seeds
it with the candidate's seed before building the method), so a trial reproduces; nothing is
drawn from the global generator, so building the method changes no other random stream.
"""

from __future__ import annotations

from typing import Annotated, Any, Sequence

import torch
from pydantic import BaseModel, ConfigDict

from mtl_search.errors import UserError
from mtl_search.values import StrParam, one_of
from mtl_search.weighting.base import EpochMean, ScalarisedLoss

DISTRIBUTIONS = ("normal", "uniform", "dirichlet")
# mixed into the global seed, so that the weights are not drawn from the very stream that
# initialised the network
SEED_MIXER = 0x9E3779B97F4A7C15


class RLWSpace(BaseModel):
    """``distribution`` the raw weights are drawn from: normal (the default), uniform or dirichlet."""

    model_config = ConfigDict(extra="forbid")
    distribution: Annotated[StrParam, one_of(DISTRIBUTIONS, "a distribution")] = "normal"


def random_weights(distribution: str, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` weights drawn from ``distribution``, normalised to sum to ``count``."""
    if distribution == "normal":
        normalised = torch.softmax(torch.randn(count, generator=generator, dtype=torch.float64), dim=0)
    elif distribution == "uniform":
        raw = torch.rand(count, generator=generator, dtype=torch.float64)
        normalised = raw / raw.sum()
    else:
        raw = torch.empty(count, dtype=torch.float64).exponential_(generator=generator)
        normalised = raw / raw.sum()
    return (count * normalised).float()


class RandomLossWeighting(ScalarisedLoss):
    """Fresh random weights every batch; ``weights()`` reports their mean over the epoch."""

    name = "rlw"
    space_model = RLWSpace

    def __init__(self, task_names: Sequence[str], distribution: str = "normal", seed: int | None = None) -> None:
        super().__init__(task_names)
        if distribution not in DISTRIBUTIONS:
            raise UserError(
                f"loss_weighting.rlw.distribution: {distribution!r} is not one of {', '.join(DISTRIBUTIONS)}"
            )
        self.distribution = distribution
        self.seed = seed
        # drawn on the CPU: the same weights on every device, whatever its random number generator
        own_seed = int(seed) if seed is not None else (torch.initial_seed() ^ SEED_MIXER) % 2**63
        self._generator = torch.Generator().manual_seed(own_seed)
        self._applied = EpochMean(self.task_names)

    def draw(self) -> torch.Tensor:
        """The next batch's weights (a tensor of T values that sum to T)."""
        return random_weights(self.distribution, len(self.task_names), self._generator)

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The task losses weighted by a fresh draw."""
        stacked = torch.stack([losses[name] for name in self.task_names])
        weights = self.draw().to(stacked.device)
        self._applied.add(weights)
        return (weights * stacked).sum()

    def end_epoch(self, epoch_losses: dict[str, float]) -> None:
        self._applied.reset()

    def weights(self) -> dict[str, float]:
        applied = self._applied.mean()
        return applied if applied is not None else {name: 1.0 for name in self.task_names}

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"method": self.name, "distribution": self.distribution}
        if self.seed is not None:
            described["seed"] = self.seed
        return described
