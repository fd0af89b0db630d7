"""Delta-m against single-task networks, on a case computed by hand."""

from __future__ import annotations

import math

import pytest

from mtl_search.analysis.references import reference_points, relative_change, row_transfer, transfer
from mtl_search.records.objective import Objective
from mtl_search.records.references import ReferenceModel, ReferenceRecord

OBJECTIVES = [
    Objective("a", "auc", "maximize"),
    Objective("b", "mse", "minimize"),
    Objective("c", "accuracy", "maximize"),
    Objective("c", "logloss", "minimize"),
    Objective("", "params", "minimize", kind="cost"),
]
SINGLE_TASK = {
    "a": ReferenceModel(validation={"auc": 0.80}, test={"auc": 0.78}, n_params=100),
    "b": ReferenceModel(validation={"mse": 2.0}, test={"mse": 2.0}, n_params=100),
    "c": ReferenceModel(
        validation={"accuracy": 0.5, "logloss": 0.4}, test={"accuracy": 0.5, "logloss": 0.4}, n_params=50
    ),
}


def test_relative_change_is_positive_when_better_in_either_direction():
    assert relative_change(0.84, 0.80, "maximize") == pytest.approx(5.0)
    assert relative_change(0.76, 0.80, "maximize") == pytest.approx(-5.0)
    assert relative_change(1.5, 2.0, "minimize") == pytest.approx(25.0)
    assert relative_change(2.5, 2.0, "minimize") == pytest.approx(-25.0)
    # unknown, not a number: a missing value, a non-finite one, a reference of 0
    assert relative_change(None, 1.0, "minimize") is None
    assert relative_change(math.nan, 1.0, "minimize") is None
    assert relative_change(1.0, 0.0, "minimize") is None


def test_delta_m_is_the_mean_over_tasks_of_the_mean_over_their_metrics():
    values = {"a": {"auc": 0.84}, "b": {"mse": 2.5}, "c": {"accuracy": 0.55, "logloss": 0.3}}
    result = transfer(values, SINGLE_TASK, OBJECTIVES)
    # a: +5 %; b: 2.5 against 2.0, lower is better: -25 %; c: accuracy +10 %, logloss 0.3 against 0.4: +25 %
    assert result.tasks == pytest.approx({"a": 5.0, "b": -25.0, "c": 17.5})
    assert result.delta_m == pytest.approx((5.0 - 25.0 + 17.5) / 3)
    assert result.negative == ["b"]  # worse than its single-task network: negative transfer


def test_a_task_without_a_reference_is_left_out_of_delta_m():
    references = {name: model for name, model in SINGLE_TASK.items() if name != "c"}
    values = {"a": {"auc": 0.84}, "b": {"mse": 1.5}, "c": {"accuracy": 0.55, "logloss": 0.3}}
    result = transfer(values, references, OBJECTIVES)
    assert result.tasks["c"] is None
    assert result.delta_m == pytest.approx((5.0 + 25.0) / 2)
    assert result.negative == []


def test_front_row_keys_on_validation_and_test():
    record = ReferenceRecord(single_task=SINGLE_TASK)
    row = {
        "values": {"a/auc": 0.84, "b/mse": 2.5, "c/accuracy": 0.55, "c/logloss": 0.3, "params": 1000.0},
        "test": {"a": {"auc": 0.741}, "b": {"mse": 2.0}, "c": {"accuracy": 0.5, "logloss": 0.4}},
    }
    keys = row_transfer(row, record, OBJECTIVES)
    assert keys["delta_m"] == pytest.approx(-2.5 / 3)
    assert keys["negative_transfer"] == ["b"]
    # test: a 0.741 against 0.78 is -5 %, b and c equal their references
    assert keys["task_change_test"] == pytest.approx({"a": -5.0, "b": 0.0, "c": 0.0})
    assert keys["delta_m_test"] == pytest.approx(-5.0 / 3)
    assert keys["negative_transfer_test"] == ["a"]
    # without references: the keys are there, empty
    assert row_transfer(row, None, OBJECTIVES) == {
        "delta_m": None,
        "task_change": {},
        "negative_transfer": [],
        "delta_m_test": None,
        "task_change_test": {},
        "negative_transfer_test": [],
    }


def test_reference_points_sum_the_networks_parameters_and_leave_unknowns_empty():
    record = ReferenceRecord(
        single_task=SINGLE_TASK,
        gbdt={
            name: ReferenceModel(validation=dict(model.validation), test=dict(model.test), trees=10)
            for name, model in SINGLE_TASK.items()
        },
    )
    points = reference_points(record, OBJECTIVES)
    assert points["single-task network"] == [0.80, 2.0, 0.5, 0.4, 250.0]
    assert points["LightGBM"] == [0.80, 2.0, 0.5, 0.4, None]  # trees have no parameter count
    assert reference_points(None, OBJECTIVES) == {}


def test_the_record_round_trips_through_study_attributes():
    import optuna

    record = ReferenceRecord(single_task=SINGLE_TASK, gbdt_skipped="LightGBM is not installed", sized_like_trial=3)
    study = optuna.create_study()
    assert ReferenceRecord.read(study) is None
    record.write(study)
    assert study.user_attrs["references"]["schema_version"] == 1
    again = ReferenceRecord.read(study)
    assert again == record and again.models() == {"single-task network": SINGLE_TASK}
