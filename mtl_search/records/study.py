"""What a study stores about itself (Optuna user attributes) and reads back, as one typed record.

:class:`StudyRecord` is what the study's ``mtl_search`` attribute holds: the data description,
the tasks, the input schema, the objectives, the search space and the preprocessing, so that
every later command knows exactly what was searched. :meth:`StudyRecord.write` is its one
writer and :meth:`StudyRecord.read` its one reader, which migrates an older format. The
reader also returns what other parts of a run store beside it under their own names (the
spaces searched before, the artifact folder, the affinity, the hypervolume, refinements);
each of those has its one writer in the module that computes it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Optional

from pydantic import Field

from mtl_search.records.attributes import (
    AFFINITY_ATTR,
    ARTIFACT_DIR_ATTR,
    HYPERVOLUME_ATTR,
    REFINED_PREFIX,
    SPACES_ATTR,
    STUDY_ATTR,
)
from mtl_search.records.objective import Objective
from mtl_search.records.schema import (
    SCHEMA_KEY,
    SCHEMA_VERSION,
    Attributes,
    Record,
    StoredRecordError,
    migrated,
    validated,
)

# how a study of schema 0 that stored no pruning rule or budget was pruned: the median rule,
# comparing trials at equal epochs (the only rule and budget there were)
SCHEMA0_PRUNING: Mapping[str, str] = MappingProxyType({"rule": "median", "budget": "epochs"})
# the weights a trial of schema 0 without training.checkpoint kept: its last epoch's
SCHEMA0_CHECKPOINT = "last"


class StudyRecord(Record):
    """The study's record; fields not stored read as their defaults."""

    schema_version: int = SCHEMA_VERSION
    version: Optional[str] = None  # the mtl-search release that created the study
    data: Optional[dict[str, Any]] = None  # the data description: source, options, file
    tasks: list[dict[str, Any]] = Field(default_factory=list)  # as mtl_search.tasks.Task.to_dict writes them
    input_schema: dict[str, Any] = Field(default_factory=dict)
    objectives: list[Objective] = Field(default_factory=list)
    space: Optional[dict[str, Any]] = None  # the search space as the study searches it now
    preprocessing: dict[str, Any] = Field(default_factory=dict)  # fitted on the train split
    # regression tasks whose trials learned the target in its own units: stored by schema 0
    # without target statistics (read as mean 0, std 1)
    raw_unit_tasks: list[str] = Field(default_factory=list)
    # the seed of the study's training, and (offset per run and worker) of its sampler: given
    # with --seed or drawn when the study was created; None for studies stored before it was kept
    seed: Optional[int] = None

    # stored beside the record by other parts of a run, each under its own attribute name
    made_by_mtl_search: bool = Field(default=False, exclude=True)  # whether the study holds a record at all
    spaces: list[dict[str, Any]] = Field(default_factory=list, exclude=True)  # [{"from_trial": N, "space": ...}]
    artifact_dir: Optional[str] = Field(default=None, exclude=True)
    affinity: Optional[dict[str, Any]] = Field(default=None, exclude=True)
    hypervolume: Optional[dict[str, Any]] = Field(default=None, exclude=True)
    refined: dict[int, dict[str, Any]] = Field(default_factory=dict, exclude=True)  # by trial number

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], where: str = "study") -> StudyRecord:
        """The record in a study's user attributes ``attrs`` (all of them), migrated to the
        current format; an empty record when the study holds none."""
        stored = attrs.get(STUDY_ATTR)
        beside = {
            "spaces": attrs.get(SPACES_ATTR) or [],
            "artifact_dir": attrs.get(ARTIFACT_DIR_ATTR),
            "affinity": attrs.get(AFFINITY_ATTR),
            "hypervolume": attrs.get(HYPERVOLUME_ATTR),
            "refined": {
                key.removeprefix(REFINED_PREFIX): value
                for key, value in attrs.items()
                if key.startswith(REFINED_PREFIX)
            },
        }
        if stored is None:
            return validated(cls, beside, where)
        if not isinstance(stored, dict):
            raise StoredRecordError(f"{where}: stored {STUDY_ATTR} {stored!r:.60}: not a study record")
        return validated(cls, migrated(stored, STUDY_MIGRATIONS, where) | beside | {"made_by_mtl_search": True}, where)

    @classmethod
    def read(cls, study: Any) -> StudyRecord:
        """The record of ``study`` (an Optuna study: anything with ``user_attrs``)."""
        name = getattr(study, "study_name", None)
        return cls.from_attrs(study.user_attrs, "study" if name is None else f"study {name!r}")

    def to_attrs(self) -> Attributes:
        """The record's fields as the study's ``mtl_search`` attribute holds them, with the format version."""
        return {SCHEMA_KEY: SCHEMA_VERSION} | self.model_dump(exclude_unset=True, exclude={SCHEMA_KEY})

    def write(self, study: Any) -> None:
        """Store this record as ``study``'s ``mtl_search`` attribute (it replaces the one there)."""
        study.set_user_attr(STUDY_ATTR, self.to_attrs())

    def space_section(self, name: str) -> dict[str, Any]:
        """A section of the stored space (``training``, ``objectives``, ``pruning``...); empty when absent."""
        return dict((self.space or {}).get(name) or {})

    @property
    def pruning(self) -> dict[str, Any]:
        """The stored space's ``pruning`` section; for a study that stored no space, how schema 0 pruned."""
        return self.space_section("pruning") if self.space is not None else dict(SCHEMA0_PRUNING)


def migrate_study_v0_to_v1(attrs: Attributes) -> Attributes:
    """Schema 0 (unversioned) to 1. What a stored space left out had the value it has now
    written out: the median rule at equal epochs (before ``pruning.rule`` and
    ``pruning.budget``) and the last epoch's weights (before ``training.checkpoint``). A
    regression task without target statistics learned its raw target: it is listed in
    ``raw_unit_tasks`` and reads as mean 0, std 1."""
    attrs = dict(attrs)
    space = attrs.get("space")
    if isinstance(space, dict):
        space = dict(space)
        pruning = space.get("pruning")
        space["pruning"] = dict(SCHEMA0_PRUNING) | (pruning if isinstance(pruning, dict) else {})
        training = space.get("training")
        space["training"] = {"checkpoint": SCHEMA0_CHECKPOINT} | (training if isinstance(training, dict) else {})
        attrs["space"] = space
    tasks = attrs.get("tasks")
    if isinstance(tasks, list):
        raw = [
            isinstance(task, dict) and task.get("kind") == "regression" and "target_mean" not in task for task in tasks
        ]
        if any(raw):
            attrs["tasks"] = [
                task | {"target_mean": 0.0, "target_std": 1.0} if unscaled else task
                for task, unscaled in zip(tasks, raw)
            ]
            attrs["raw_unit_tasks"] = [str(task.get("name")) for task, unscaled in zip(tasks, raw) if unscaled]
    return attrs | {SCHEMA_KEY: 1}


# STUDY_MIGRATIONS[v] takes a study record of schema v to v + 1
STUDY_MIGRATIONS = (migrate_study_v0_to_v1,)
