"""Entire-space modelling of conditional tasks (ESMM, Ma et al., SIGIR 2018).

A task declared ``given`` another (``--task conversion:binary:given=click``) is a binary
event that can only happen when its condition did. Its tower's output stays the logit of
its *conditional* probability, p(conversion | click); what changes is how it is trained
and scored, the same for every family:

- loss: binary cross-entropy of the *joint* probability p(click & conversion) =
  p(click) * p(conversion | click) against the joint label, on **all** rows. Training on
  the whole space avoids the selection bias of learning p(conversion | click) only from
  clicked rows, and the many click rows help the sparse conversion task.
- metrics: on p(conversion | click), on the rows where the condition holds (click = 1),
  which is what the conditional task predicts.

Data: the target of a conditional task is its own label on the rows where the condition
holds; elsewhere it may be NaN or 0 (both read the same, since the joint label is 0
wherever the condition is 0). Conditions may chain (c given b given a): the joint
probability of a task multiplies the probabilities down its chain.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from mtl_search.tasks import Task


def _chain(task: Task, by_name: dict[str, Task]) -> list[Task]:
    """The task and its conditions, the task first."""
    chain = [task]
    while chain[-1].given is not None:
        chain.append(by_name[chain[-1].given])
    return chain


def joint_log_probability(task: Task, tasks: Sequence[Task], outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(task and all its conditions) = sum of log sigmoid of the logits down the chain."""
    by_name = {t.name: t for t in tasks}
    return sum(F.logsigmoid(outputs[t.name].reshape(-1)) for t in _chain(task, by_name))


def joint_probabilities(tasks: Sequence[Task], outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """p(task and its conditions) for every conditional task."""
    return {task.name: joint_log_probability(task, tasks, outputs).exp() for task in tasks if task.given is not None}


def joint_target(task: Task, tasks: Sequence[Task], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """1 where the task and all its conditions hold, 0 where any of them fails, NaN where unknown."""
    by_name = {t.name: t for t in tasks}
    chain = _chain(task, by_name)
    joint = targets[chain[-1].name].clone()
    for link in reversed(chain[:-1]):
        own = targets[link.name]
        # a failed condition settles the joint label at 0, whatever the task's own label says
        joint = torch.where(joint == 0, joint, own)
    return joint


def condition_holds(task: Task, tasks: Sequence[Task], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Rows where the task's condition (with its own conditions) is known to hold."""
    by_name = {t.name: t for t in tasks}
    return joint_target(by_name[task.given], tasks, targets) == 1


def log1mexp(log_p: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(log_p)) for log_p <= 0, accurate at both ends (Maechler's split at -log 2)."""
    return torch.where(log_p > -math.log(2.0), torch.log(-torch.expm1(log_p)), torch.log1p(-torch.exp(log_p)))


def joint_loss(
    task: Task, tasks: Sequence[Task], outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Mean binary cross-entropy of the joint probability against the joint label, all labelled rows."""
    log_p = joint_log_probability(task, tasks, outputs)
    label = joint_target(task, tasks, targets)
    known = ~torch.isnan(label)
    if not bool(known.any()):
        return log_p.sum() * 0.0
    log_p, label = log_p[known], label[known]
    # clamp keeps log(1 - p) finite when p rounds to 1
    log_q = log1mexp(log_p.clamp(max=-1e-7))
    return -(label * log_p + (1 - label) * log_q).mean()


def joint_losses(
    tasks: Sequence[Task], outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The training loss of every conditional task: its joint loss (ordinary tasks keep Task.loss)."""
    return {task.name: joint_loss(task, tasks, outputs, targets) for task in tasks if task.given is not None}


def evaluation_targets(tasks: Sequence[Task], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Targets to score against: a conditional task's label only where its condition holds (NaN elsewhere)."""
    scored = dict(targets)
    for task in tasks:
        if task.given is not None:
            holds = condition_holds(task, tasks, targets)
            scored[task.name] = torch.where(holds, targets[task.name], torch.full_like(targets[task.name], math.nan))
    return scored
