"""What a trial stores (Optuna user attributes) and reads back: the candidate, the per-epoch
history and the outcome, as typed records.

:meth:`TrialRecord.write` is the one writer: it stores the fields it was given (a run stores
a trial's record in parts: the candidate first, its costs, then its training), each under its
field name, with the record format's version. :meth:`TrialRecord.read` is the one reader: it
migrates an older format and returns every field, at its default when it was not stored.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping, Optional

from pydantic import Field

from mtl_search.records.schema import SCHEMA_KEY, SCHEMA_VERSION, Attributes, Record, migrated, validated

# {task: {metric: value}}
Metrics = dict[str, dict[str, Optional[float]]]


class Candidate(Record):
    """One point of the search space: the architecture spec (checked by the family that
    builds it), the training settings and the loss weighting, as the space sampled them."""

    architecture: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    loss_weighting: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The candidate as the trainer and the stored record take it: only what it holds, so
        that a candidate read back equals the one sampled."""
        return self.model_dump(exclude_unset=True)

    @property
    def family(self) -> str | None:
        return self.architecture.get("family")

    @property
    def epochs(self) -> int | None:
        epochs = self.training.get("epochs")
        return None if epochs is None else int(epochs)

    @property
    def seed(self) -> int:
        return int(self.training.get("seed", 0))


class EpochRecord(Record):
    """One epoch of a trial's training, as the trainer recorded it."""

    epoch: int  # counted from 1
    train_loss: dict[str, Optional[float]] = Field(default_factory=dict)  # mean training loss per task
    validation: Metrics = Field(default_factory=dict)  # the epoch's own validation metrics
    weights: dict[str, Any] = Field(default_factory=dict)  # the loss weights the epoch trained with
    seconds: Optional[float] = None
    # optimiser steps since the start of training; None: not counted (records of schema 0)
    steps: Optional[int] = None
    # the epoch whose weights the trial would return if it stopped here (training.checkpoint)
    kept_epoch: Optional[int] = None

    @property
    def kept(self) -> int:
        return self.epoch if self.kept_epoch is None else self.kept_epoch


class TrialRecord(Record):
    """Everything mtl-search stores on a trial. Fields not stored read as their defaults;
    :meth:`recorded` tells the two apart."""

    schema_version: int = SCHEMA_VERSION
    candidate: Candidate = Field(default_factory=Candidate)
    summary: str = ""  # the candidate in one line
    history: list[EpochRecord] = Field(default_factory=list)
    validation: Metrics = Field(default_factory=dict)  # of the kept epoch
    kept_epoch: Optional[int] = None  # the epoch whose weights the trial returns
    test: Metrics = Field(default_factory=dict)
    n_params: Optional[int] = None
    wall_time: Optional[float] = None  # seconds of training
    sharing: dict[str, Any] = Field(default_factory=dict)  # what the network learned about sharing
    weighting: dict[str, Any] = Field(default_factory=dict)  # the loss weighting's state after training
    costs: dict[str, Optional[float]] = Field(default_factory=dict)  # measured before training
    # a pruned trial's objective values at the epoch it was stopped, by objective name
    last_values: dict[str, Optional[float]] = Field(default_factory=dict)
    fail_reason: Optional[str] = None
    prune_reason: Optional[str] = None
    repeat_of: Optional[int] = None  # the earlier trial whose candidate this one repeated (not trained again)
    # how many candidates trained as one stacked network with this one (1: alone); not
    # stored by trials trained before population training
    population_size: Optional[int] = None

    @classmethod
    def from_attrs(
        cls, attrs: Mapping[str, Any], where: str = "trial", only: Collection[str] | None = None
    ) -> TrialRecord:
        """The record of stored user attributes ``attrs``, migrated to the current format.
        ``only``: read just these fields, the others at their defaults (a scan of every trial
        of a large study need not check each history)."""
        data = migrated(attrs, TRIAL_MIGRATIONS, where)
        if only is not None:
            data = {key: value for key, value in data.items() if key in only or key == SCHEMA_KEY}
        return validated(cls, data, where)

    @classmethod
    def read(cls, trial: Any, only: Collection[str] | None = None) -> TrialRecord:
        """The record of ``trial`` (an Optuna trial, frozen or running: anything with
        ``user_attrs``); ``only``: as :meth:`from_attrs`."""
        number = getattr(trial, "number", None)
        return cls.from_attrs(trial.user_attrs, "trial" if number is None else f"trial {number}", only)

    def to_attrs(self) -> Attributes:
        """The fields this record was given, as stored user attributes, with the format version."""
        return {SCHEMA_KEY: SCHEMA_VERSION} | self.model_dump(exclude_unset=True, exclude={SCHEMA_KEY})

    def write(self, trial: Any) -> None:
        """Store the fields this record was given on ``trial`` (``set_user_attr``)."""
        for key, value in self.to_attrs().items():
            trial.set_user_attr(key, value)

    @property
    def reason(self) -> str | None:
        """Why the trial did not complete, as stored (failure first)."""
        return self.fail_reason or self.prune_reason


def migrate_trial_v0_to_v1(attrs: Attributes) -> Attributes:
    """Schema 0 (unversioned) to 1. Epochs recorded before step counts get ``steps: None``
    (not counted: such a trial is never compared by steps); before ``training.checkpoint``
    a trial kept its last epoch's weights, so each epoch recorded without ``kept_epoch``
    keeps its own. (The trial's own ``kept_epoch`` stays absent: shown as unknown.)"""
    attrs = dict(attrs)
    history = attrs.get("history")
    if isinstance(history, list):
        attrs["history"] = [_epoch_v0_to_v1(entry) for entry in history]
    return attrs | {SCHEMA_KEY: 1}


def _epoch_v0_to_v1(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry  # left for the record's check to name
    return {"steps": None} | ({"kept_epoch": entry["epoch"]} if "epoch" in entry else {}) | entry


# TRIAL_MIGRATIONS[v] takes a trial record of schema v to v + 1
TRIAL_MIGRATIONS = (migrate_trial_v0_to_v1,)
