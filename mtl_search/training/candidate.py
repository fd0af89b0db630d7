"""Training one candidate: a network, or every member of a deep ensemble."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_search.architectures import ensemble_members
from mtl_search.architectures.ensemble import validate_ensemble
from mtl_search.data.base import MultiTaskData, Split
from mtl_search.training.data_parallel import DataParallel
from mtl_search.training.population import train_ensemble
from mtl_search.training.trainer import EpochCallback, TrainResult, resolve_device, train_network


def train_candidate(
    data: MultiTaskData,
    candidate: dict[str, Any],
    *,
    device: torch.device | str | None = None,
    on_epoch: EpochCallback | None = None,
    stem: nn.Module | None = None,
    train_split: Split | None = None,
    data_parallel: DataParallel | None = None,
) -> TrainResult:
    """Train ``candidate`` on ``data``: its network (:func:`~mtl_search.training.trainer.train_network`,
    which documents the arguments), or with ``architecture.ensemble.members`` above 1 each
    member of the ensemble (:func:`~mtl_search.training.population.train_ensemble`)."""
    spec = candidate.get("architecture") if isinstance(candidate, dict) else None
    if isinstance(spec, dict) and spec.get("ensemble") is not None:
        validate_ensemble(spec["ensemble"], "architecture spec")
        if ensemble_members(spec) > 1:
            return train_ensemble(
                data,
                candidate,
                device=resolve_device(device) if not isinstance(device, torch.device) else device,
                on_epoch=on_epoch,
                stem=stem,
                train_split=train_split,
                data_parallel=data_parallel,
            )
    return train_network(
        data,
        candidate,
        device=device,
        on_epoch=on_epoch,
        stem=stem,
        train_split=train_split,
        data_parallel=data_parallel,
    )
