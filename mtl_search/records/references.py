"""The reference models stored with a study, as one typed record.

``mtl-search baselines`` (and ``run --baselines``) train, per task, a single-task network and,
with LightGBM installed, a gradient-boosted model, on the study's data and split; their
metrics are stored in the study's ``references`` attribute, so that ``pareto``, ``report``
and the dashboard compare the front with them without training anything.
:meth:`ReferenceRecord.write` is its one writer, :meth:`ReferenceRecord.read` its one reader.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from pydantic import Field

from mtl_search.records.attributes import REFERENCES_ATTR
from mtl_search.records.schema import SCHEMA_KEY, SCHEMA_VERSION, Attributes, Record, StoredRecordError, migrated
from mtl_search.records.schema import validated


class ReferenceModel(Record):
    """One reference model of one task: its metrics (``{metric: value}``, ``loss`` among
    them) on the validation and test splits, and what it was."""

    validation: dict[str, Optional[float]] = Field(default_factory=dict)
    test: dict[str, Optional[float]] = Field(default_factory=dict)
    n_params: Optional[int] = None  # a network's trainable parameters
    kept_epoch: Optional[int] = None  # a network's kept epoch (training.checkpoint)
    trees: Optional[int] = None  # a gradient-boosted model's trees, after early stopping
    seconds: Optional[float] = None  # training time
    settings: dict[str, Any] = Field(default_factory=dict)  # spec and training, or the library's settings


class ReferenceRecord(Record):
    """The study's reference models, by task."""

    schema_version: int = SCHEMA_VERSION
    version: Optional[str] = None  # the mtl-search release that trained them
    single_task: dict[str, ReferenceModel] = Field(default_factory=dict)
    gbdt: dict[str, ReferenceModel] = Field(default_factory=dict)
    # why no gradient-boosted models were trained (LightGBM absent, inputs it does not take)
    gbdt_skipped: Optional[str] = None
    # the front trial whose parameter count each single-task network matches, and whose
    # training settings (epochs, batch size, learning rate, ...) it trains with
    sized_like_trial: Optional[int] = None
    parameter_budget: Optional[int] = None

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str = "study") -> ReferenceRecord | None:
        """The record in a study's user attributes ``attrs``; None when none was stored."""
        stored = attrs.get(REFERENCES_ATTR)
        if stored is None:
            return None
        where = f"{where} {REFERENCES_ATTR}"
        if not isinstance(stored, dict):
            raise StoredRecordError(f"{where}: stored {stored!r:.60}: not a reference record")
        return validated(cls, migrated(stored, REFERENCE_MIGRATIONS, where), where)

    @classmethod
    def read(cls, study: Any) -> ReferenceRecord | None:
        """The references of ``study`` (anything with ``user_attrs``), or None."""
        name = getattr(study, "study_name", None)
        return cls.from_attrs(study.user_attrs, "study" if name is None else f"study {name!r}")

    def to_attrs(self) -> Attributes:
        return {SCHEMA_KEY: SCHEMA_VERSION} | self.model_dump(exclude_unset=True, exclude={SCHEMA_KEY})

    def write(self, study: Any) -> None:
        """Store this record as ``study``'s ``references`` attribute (replacing the one there)."""
        study.set_user_attr(REFERENCES_ATTR, self.to_attrs())

    def models(self) -> dict[str, dict[str, ReferenceModel]]:
        """``{"single-task network": {task: model}, "LightGBM": {...}}``, the kinds that were trained."""
        kinds = {"single-task network": self.single_task, "LightGBM": self.gbdt}
        return {label: models for label, models in kinds.items() if models}


def _no_format_0(attrs: Attributes) -> Attributes:
    """References came after records were versioned: a record without a version is read as format 1."""
    return attrs | {SCHEMA_KEY: 1}


# REFERENCE_MIGRATIONS[v] takes a reference record of schema v to v + 1
REFERENCE_MIGRATIONS = (_no_format_0,)
