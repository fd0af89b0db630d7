"""Deep ensembles: several networks of one spec, trained apart, predicting together.

``ensemble: {members: K}`` in an architecture spec builds K networks of the spec. Training
(training/population.py, ``train_ensemble``) builds and trains each member from its own seed,
the first from the candidate's, so member 1 is the candidate trained alone; predicting averages
what they say:

- binary task: the mean of the members' probabilities, returned as its logit; a conditional
  task (``given``) gets the members' mean joint probability divided by their mean probability
  of its condition, so that the joint the outputs imply (the product down the chain, as for
  one network) is the members' mean joint;
- multiclass task: the mean of the class probabilities, returned as log-probabilities;
- regression task: the mean value.

The output of each task therefore keeps the meaning a single network's has (a logit, logits up
to a constant, a value), so metrics, export and serving read an ensemble as one network.
An ensemble of independently trained networks is the simplest reliable gain in accuracy and
calibration for small tabular networks (Lakshminarayanan et al., NeurIPS 2017; TabM, ICLR
2025), at K times the training and inference cost.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from mtl_search.architectures.conditional import joint_log_probability, log1mexp
from mtl_search.errors import UserError, is_whole
from mtl_search.tasks import Task

# above this, training costs grow with no gain worth it on the data sizes a search trains
MAX_MEMBERS = 64


def ensemble_members(spec: Any) -> int:
    """How many networks ``spec`` builds (1: a plain network; also for a spec that is not
    valid, which :func:`validate_ensemble` refuses where it is built or trained)."""
    ensemble = spec.get("ensemble") if isinstance(spec, dict) else None
    members = ensemble.get("members", 1) if isinstance(ensemble, dict) else 1
    return int(members) if is_whole(members) and not isinstance(members, bool) and members >= 1 else 1


def validate_ensemble(ensemble: Any, where: str) -> None:
    if not isinstance(ensemble, dict):
        raise UserError(f"{where}: ensemble: expected an object such as {{members: 4}}, got {ensemble!r}")
    unknown = sorted(set(ensemble) - {"members"})
    if unknown:
        raise UserError(f"{where}: ensemble.{unknown[0]}: unknown key (known: members)")
    members = ensemble.get("members", 1)
    if isinstance(members, bool) or not is_whole(members) or not 1 <= members <= MAX_MEMBERS:
        raise UserError(f"{where}: ensemble.members: expected a whole number from 1 to {MAX_MEMBERS}, got {members!r}")


def without_ensemble(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec of one member."""
    return {key: value for key, value in spec.items() if key != "ensemble"}


class EnsembleModel(nn.Module):
    """Networks of one spec whose predictions are averaged (see the module docstring)."""

    def __init__(self, networks: Sequence[nn.Module], tasks: Sequence[Task], spec: dict[str, Any]) -> None:
        super().__init__()
        if len(networks) < 2:
            raise ValueError("an ensemble needs at least two networks")
        self.networks = nn.ModuleList(networks)
        self.tasks = list(tasks)
        self.task_names = [task.name for task in tasks]
        self.spec = spec

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = [network(inputs) for network in self.networks]
        combined = {}
        for task in self.tasks:
            if task.given is None:
                combined[task.name] = self._combine(task, [output[task.name] for output in outputs])
            else:
                combined[task.name] = self._conditional(task, outputs)
        return combined

    def _conditional(self, task: Task, outputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        by_name = {t.name: t for t in self.tasks}
        joint = torch.stack([joint_log_probability(task, self.tasks, output) for output in outputs])
        condition = torch.stack([joint_log_probability(by_name[task.given], self.tasks, output) for output in outputs])
        # log p(task | its conditions) = log mean joint - log mean p(conditions); at most 0
        log_p = (torch.logsumexp(joint, 0) - torch.logsumexp(condition, 0)).clamp(max=-1e-7)
        return (log_p - log1mexp(log_p)).reshape(outputs[0][task.name].shape)

    def _combine(self, task: Task, outputs: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(outputs)
        if task.kind == "binary":
            # logit(mean p) = log(mean p) - log(mean (1 - p)), each mean taken in log space
            return torch.logsumexp(nn.functional.logsigmoid(stacked), 0) - torch.logsumexp(
                nn.functional.logsigmoid(-stacked), 0
            )
        if task.kind == "multiclass":
            return torch.logsumexp(torch.log_softmax(stacked, dim=-1), 0) - math.log(len(outputs))
        return stacked.mean(0)

    def sharing_report(self) -> dict[str, Any]:
        # the first member's: members of families that learn their sharing (ltb's tree, gates)
        # may each learn another, and reports and figures draw one network
        return dict(self.networks[0].sharing_report())
