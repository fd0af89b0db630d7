"""Training several candidates in one call: each member alone, one after the other.

This is the interface of population training: the members come back in input order, each as
its :class:`TrainResult` or as the exception that ended it, so that one member's failure or
pruning never stops the others.
"""

from __future__ import annotations

import json
from typing import Any, Hashable, Sequence

import torch

from mtl_search.data.base import MultiTaskData
from mtl_search.training.trainer import EpochCallback, TrainResult, train_candidate


def fusion_key(candidate: dict[str, Any], data: MultiTaskData) -> Hashable | None:
    """Equal for candidates that could train as one fused computation; None: trains alone.

    The structural parts: the architecture, the batch size, epochs, optimiser, checkpoint and
    weighting method. Learning rate, weight decay, seed and the weighting's own settings may
    differ within a group.
    """
    training = candidate.get("training") or {}
    structure = {
        "architecture": candidate.get("architecture"),
        "training": {key: training.get(key) for key in ("batch_size", "epochs", "optimizer", "checkpoint")},
        "loss_weighting": (candidate.get("loss_weighting") or {}).get("method", "static"),
    }
    return json.dumps(structure, sort_keys=True, default=str)


def train_population(
    data: MultiTaskData,
    candidates: Sequence[dict[str, Any]],
    *,
    device: torch.device | str | None = None,
    on_epoch: Sequence[EpochCallback | None] | None = None,
    stem: torch.nn.Module | None = None,
) -> list[TrainResult | BaseException]:
    """Train every candidate; in input order, its result or the exception that ended it.

    ``on_epoch[i]`` is member ``i``'s epoch callback; what it raises (``optuna.TrialPruned``)
    ends that member only. A ``KeyboardInterrupt`` ends the whole call.
    """
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(candidates)
    if len(callbacks) != len(candidates):
        raise ValueError(f"on_epoch: {len(callbacks)} callbacks for {len(candidates)} candidates")
    outcomes: list[TrainResult | BaseException] = []
    for candidate, callback in zip(candidates, callbacks):
        try:
            outcomes.append(train_candidate(data, candidate, device=device, on_epoch=callback, stem=stem))
        except Exception as error:
            outcomes.append(error)
    return outcomes
