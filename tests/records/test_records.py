"""The typed records: each writes what it was given and reads back equal; older formats are
migrated on reading, one function per step; a newer format or a malformed record is refused
in one line."""

from __future__ import annotations

import optuna
import pytest

from mtl_search.errors import UserError
from mtl_search.records.attributes import SPACES_ATTR, STUDY_ATTR
from mtl_search.records.objective import Objective
from mtl_search.records.schema import SCHEMA_KEY, SCHEMA_VERSION, NewerFormatError, StoredRecordError
from mtl_search.records.study import STUDY_MIGRATIONS, StudyRecord, migrate_study_v0_to_v1
from mtl_search.records.trial import TRIAL_MIGRATIONS, Candidate, EpochRecord, TrialRecord, migrate_trial_v0_to_v1
from mtl_search.search.pruning import cumulative_steps

CANDIDATE = {
    "architecture": {"family": "tree", "groups": [[["a", "b"]]], "widths": [8]},
    "training": {"epochs": 2, "seed": 3, "learning_rate": 0.01},
    "loss_weighting": {"method": "static"},
}


def epoch(number: int, **extra) -> dict:
    return {
        "epoch": number,
        "train_loss": {"a": 0.5},
        "validation": {"a": {"mse": 1.0 / number}},
        "weights": {"a": 1.0},
        "seconds": 0.25,
    } | extra


def test_a_migration_for_every_earlier_format():
    assert len(TRIAL_MIGRATIONS) == len(STUDY_MIGRATIONS) == SCHEMA_VERSION


def test_trial_v0_to_v1_marks_epochs_without_step_counts_and_keeps_each_epoch_s_own_weights():
    old = {"candidate": CANDIDATE, "summary": "tree", "history": [epoch(1), epoch(2, steps=8, kept_epoch=1)]}
    new = migrate_trial_v0_to_v1(old)
    assert new[SCHEMA_KEY] == 1 and new["candidate"] == CANDIDATE and new["summary"] == "tree"
    assert new["history"][0] == epoch(1) | {"steps": None, "kept_epoch": 1}  # not counted; kept itself
    assert new["history"][1] == epoch(2, steps=8, kept_epoch=1)  # recorded: as it was
    assert "kept_epoch" not in new  # the trial's own kept epoch stays unknown
    assert "steps" not in old["history"][0]  # the stored attributes are not changed in place
    record = TrialRecord.from_attrs(old)
    assert cumulative_steps(record.history) is None  # never compared by steps
    assert [entry.kept for entry in record.history] == [1, 1]


def test_study_v0_to_v1_writes_out_what_an_older_space_left_out_and_lists_raw_unit_tasks():
    tasks = [
        {"name": "spend", "kind": "regression", "metrics": ["mse"]},
        {"name": "churn", "kind": "binary", "metrics": ["auc"]},
        {"name": "age", "kind": "regression", "metrics": ["mae"], "target_mean": 40.0, "target_std": 12.0},
    ]
    old = {"tasks": tasks, "space": {"training": {"epochs": 4}, "pruning": {"warmup_epochs": 2}}}
    new = migrate_study_v0_to_v1(old)
    assert new[SCHEMA_KEY] == 1
    # pruned by the median rule at equal epochs; kept the last epoch's weights
    assert new["space"]["pruning"] == {"rule": "median", "budget": "epochs", "warmup_epochs": 2}
    assert new["space"]["training"] == {"checkpoint": "last", "epochs": 4}
    # a regression target without statistics was learned in its own units: mean 0, std 1
    assert new["raw_unit_tasks"] == ["spend"]
    assert new["tasks"][0] == tasks[0] | {"target_mean": 0.0, "target_std": 1.0} and new["tasks"][1:] == tasks[1:]
    # what a space stored, it keeps
    stored = {"space": {"training": {"checkpoint": "best"}, "pruning": {"rule": "projected", "budget": "steps"}}}
    assert migrate_study_v0_to_v1(stored)["space"] == stored["space"]
    assert "raw_unit_tasks" not in migrate_study_v0_to_v1({"tasks": tasks[1:]})


def test_migrations_run_only_from_the_stored_format():
    space = {"pruning": {"warmup_epochs": 2}}
    assert StudyRecord.from_attrs({STUDY_ATTR: {"space": space}}).pruning["rule"] == "median"  # format 0
    assert "rule" not in StudyRecord.from_attrs({STUDY_ATTR: {SCHEMA_KEY: 1, "space": space}}).pruning


@pytest.mark.parametrize(
    "read",
    [
        lambda version: TrialRecord.from_attrs({SCHEMA_KEY: version, "summary": "tree"}, "trial 4"),
        lambda version: StudyRecord.from_attrs({STUDY_ATTR: {SCHEMA_KEY: version}}, "study 'x'"),
    ],
    ids=["trial", "study"],
)
def test_a_record_of_a_newer_format_is_refused_naming_the_format_and_the_upgrade(read):
    read(SCHEMA_VERSION)  # the current format reads
    with pytest.raises(NewerFormatError) as refused:
        read(SCHEMA_VERSION + 1)
    message = str(refused.value)
    assert isinstance(refused.value, UserError) and "\n" not in message
    assert f"record format {SCHEMA_VERSION + 1} by a newer mtl-search" in message and "upgrade mtl-search" in message
    assert message.startswith(("trial 4 ", "study 'x' "))


@pytest.mark.parametrize(
    "attrs, named",
    [
        ({"history": [{"epoch": "first"}]}, "history.0.epoch 'first'"),
        ({"candidate": ["tree"]}, "candidate ['tree']"),
        ({SCHEMA_KEY: "1"}, "schema_version '1'"),
    ],
)
def test_a_malformed_trial_record_is_refused_in_one_line_naming_the_field(attrs, named):
    with pytest.raises(StoredRecordError) as refused:
        TrialRecord.from_attrs(attrs, "trial 2")
    assert str(refused.value).startswith(f"trial 2: stored {named}") and "\n" not in str(refused.value)


def test_a_trial_record_written_in_parts_reads_back_whole():
    study = optuna.create_study(directions=["minimize"])
    trial = study.ask()
    history = [EpochRecord(**epoch(1, steps=4, kept_epoch=1)), EpochRecord(**epoch(2, steps=8, kept_epoch=2))]
    parts = [
        TrialRecord(candidate=Candidate(**CANDIDATE), summary="tree 0:{a,b} w=8"),
        TrialRecord(costs={"params": 120.0}),
        TrialRecord(
            history=history,
            validation={"a": {"mse": 0.5}},
            kept_epoch=2,
            test={"a": {"mse": 0.6}},
            n_params=120,
            wall_time=1.5,
            sharing={"tree": "0:{a,b}"},
            weighting={"method": "static"},
            population_size=1,
        ),
    ]
    for part in parts:
        part.write(trial)  # each writes only its own fields
    study.tell(trial, [0.5])
    stored = study.trials[0]
    assert stored.user_attrs[SCHEMA_KEY] == SCHEMA_VERSION
    assert set(stored.user_attrs) == {
        SCHEMA_KEY,
        "candidate",
        "summary",
        "costs",
        "history",
        "validation",
        "kept_epoch",
        "test",
        "n_params",
        "wall_time",
        "sharing",
        "weighting",
        "population_size",
    }
    assert stored.user_attrs["candidate"] == CANDIDATE  # exactly as sampled: repeats are found by it
    record = TrialRecord.read(stored)
    whole = TrialRecord(**{name: getattr(part, name) for part in parts for name in part.model_fields_set})
    assert record == whole
    assert record.candidate.to_dict() == CANDIDATE and (record.candidate.epochs, record.candidate.seed) == (2, 3)
    assert record.history == history and record.reason is None and record.repeat_of is None
    assert not record.recorded("fail_reason") and record.recorded("costs")


def test_a_trial_record_keeps_what_a_newer_minor_change_added():
    attrs = {
        SCHEMA_KEY: SCHEMA_VERSION,
        "summary": "tree",
        "energy_joules": 3.0,
        "history": [epoch(1, steps=4, kept_epoch=1, memory_mb=12.5)],
    }
    assert TrialRecord.from_attrs(attrs).to_attrs() == attrs


def test_a_failed_trial_s_reason_reads_first():
    record = TrialRecord.from_attrs({"fail_reason": "loss is nan", "prune_reason": "dominated"})
    assert record.reason == "loss is nan"
    assert TrialRecord.from_attrs({"prune_reason": "dominated"}).reason == "dominated"
    assert TrialRecord.from_attrs({}).reason is None


def test_a_study_record_writes_and_reads_back_and_reads_what_is_stored_beside_it():
    study = optuna.create_study(study_name="s", directions=["minimize", "minimize"])
    assert not StudyRecord.read(study).made_by_mtl_search
    objectives = [Objective("a", "mse", "minimize"), Objective("", "params", "minimize", kind="cost")]
    record = StudyRecord(
        version="1.0",
        data={"source": "synthetic", "options": {"rows": 50}},
        tasks=[{"name": "a", "kind": "regression", "metrics": ["mse"], "target_mean": 0.1, "target_std": 2.0}],
        input_schema={"kind": "vector", "size": 4},
        objectives=objectives,
        space={"pruning": {"rule": "projected", "budget": "steps"}},
        preprocessing={"inputs": []},
    )
    record.write(study)
    study.set_user_attr(SPACES_ATTR, [{"from_trial": 0, "space": {}}])
    study.set_user_attr("refined:3", {"seeds": [0, 1]})
    study.set_user_attr("affinity", {"tasks": ["a"], "seeded": 2})
    read = StudyRecord.read(study)
    assert read.made_by_mtl_search and read.objectives == objectives
    assert read.to_attrs() == record.to_attrs() == study.user_attrs[STUDY_ATTR]
    assert read.spaces == [{"from_trial": 0, "space": {}}] and read.refined == {3: {"seeds": [0, 1]}}
    assert read.affinity == {"tasks": ["a"], "seeded": 2} and read.hypervolume is None
    # what is stored beside the record is not written with it
    assert set(read.to_attrs()) == {
        SCHEMA_KEY,
        "version",
        "data",
        "tasks",
        "input_schema",
        "objectives",
        "space",
        "preprocessing",
    }
    assert read.space_section("pruning") == read.pruning == {"rule": "projected", "budget": "steps"}
    assert read.space_section("families") == {}


def test_a_study_attribute_that_is_no_record_is_refused_in_one_line():
    with pytest.raises(StoredRecordError, match=r"^study 'x': stored mtl_search 'made by hand': not a study record$"):
        StudyRecord.from_attrs({STUDY_ATTR: "made by hand"}, "study 'x'")
