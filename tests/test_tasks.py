"""Tasks: declarations and the checks that name the field at fault."""

from __future__ import annotations

import math
import pickle

import numpy as np

import pytest
import torch

from mtl_search.errors import UserError
from mtl_search.tasks import Task, TaskError, parse_task_declaration


@pytest.mark.parametrize(
    "kwargs,field,message",
    [
        ({"name": "a b", "kind": "binary"}, "name", "task name 'a b': use letters"),
        (
            {"name": "spend", "kind": "regresion"},
            "kind",
            "task 'spend': unknown kind 'regresion' (expected one of binary, multiclass, regression)",
        ),
        (
            {"name": "segment", "kind": "multiclass", "n_classes": 1},
            "classes",
            "task 'segment': a multiclass task needs at least 2 classes, got 1",
        ),
        (
            {"name": "spend", "kind": "regression", "metrics": ("rmsee",)},
            "metrics",
            "task 'spend': unknown metric 'rmsee'",
        ),
        (
            {"name": "spend", "kind": "regression", "metrics": ("auc",)},
            "metrics",
            "task 'spend': metric 'auc' does not apply to a regression task",
        ),
        (
            {"name": "spend", "kind": "regression", "target_mean": 66.0, "target_std": 0.0},
            "target",
            "task 'spend': target_mean must be a finite number and target_std a positive one, got 66.0 and 0.0",
        ),
        (
            {"name": "spend", "kind": "regression", "target_mean": math.nan, "target_std": 1.0},
            "target",
            "task 'spend': target_mean must be a finite",
        ),
        (
            {"name": "spend", "kind": "regression", "target_mean": 66.0},
            "target",
            "task 'spend': give target_mean and target_std together",
        ),
        (
            {"name": "churn", "kind": "binary", "target_mean": 0.5, "target_std": 0.5},
            "target",
            "task 'churn': only a regression task has target_mean and target_std ('churn' is binary)",
        ),
    ],
)
def test_a_bad_task_names_its_field(kwargs, field, message):
    # a description file turns the field into its key (tasks.N.kind); the words stay the same
    with pytest.raises(TaskError) as error:
        Task(**kwargs)
    assert error.value.field == field
    assert str(error.value).startswith(message)
    assert isinstance(error.value, UserError)
    assert str(pickle.loads(pickle.dumps(error.value))) == str(error.value)  # crosses process boundaries


def test_a_declaration_keeps_its_command_line_wording():
    with pytest.raises(UserError, match=r"^task 'spend': unknown kind 'regresion'"):
        parse_task_declaration("spend:regresion")
    with pytest.raises(UserError, match=r"^--task 'spend': expected NAME:KIND"):
        parse_task_declaration("spend")
    task = parse_task_declaration("segment:multiclass:classes=4:metrics=accuracy+logloss")
    assert (task.kind, task.n_classes, task.metrics) == ("multiclass", 4, ("accuracy", "logloss"))


def test_a_task_round_trips_with_and_without_target_statistics():
    measured = Task("spend", "regression", metrics=("mae",), target_mean=66.5, target_std=25.25)
    assert Task.from_dict(measured.to_dict()) == measured
    assert measured.to_dict()["target_mean"] == 66.5 and measured.target_scale == (66.5, 25.25)
    # not measured yet (a declaration, as a table's description stores it): no keys at all
    declared = Task("spend", "regression")
    assert "target_mean" not in declared.to_dict() and declared.target_scale == (0.0, 1.0)
    churn = Task("churn", "binary")
    assert "target_std" not in churn.to_dict() and Task.from_dict(churn.to_dict()) == churn


def test_a_regression_task_stored_before_scaling_reads_as_its_raw_target():
    # a study or exported model made before 2026-12-03 stored no statistics: it learned raw values
    old = Task.from_dict({"name": "spend", "kind": "regression", "n_classes": 0, "metrics": ["mse"], "given": None})
    assert (old.target_mean, old.target_std) == (0.0, 1.0)  # carried, so the data does not measure it again
    output, target = torch.tensor([70.0, 60.0]), torch.tensor([66.0, 66.0])
    assert float(old.loss(output, target)) == pytest.approx(26.0)


def test_the_regression_loss_is_the_mse_of_the_standardised_target():
    task = Task("spend", "regression", target_mean=66.0, target_std=25.0)
    output, target = torch.tensor([91.0, 66.0, 0.0]), torch.tensor([66.0, 66.0, math.nan])
    assert float(task.loss(output, target)) == pytest.approx(((91 - 66) / 25) ** 2 / 2)
    # the metrics stay in the column's units
    assert task.evaluate(output, target)["mse"] == pytest.approx(25.0**2 / 2)


def test_target_statistics_are_of_the_labelled_rows_and_a_constant_target_gets_std_1():
    task = Task("spend", "regression").with_target_statistics(torch.tensor([1.0, math.nan, 3.0]))
    assert (task.target_mean, task.target_std) == (2.0, 1.0)  # population std of 1 and 3
    assert Task("spend", "regression").with_target_statistics(torch.tensor([5.0, 5.0])).target_scale == (5.0, 1.0)
    assert Task("spend", "regression").with_target_statistics(torch.tensor([math.nan])).target_scale == (0.0, 1.0)


def test_the_constant_prediction_loss_is_the_scale_a_trained_loss_is_read_against():
    target = torch.tensor([10.0, 30.0, math.nan])
    measured = Task("spend", "regression").with_target_statistics(target)
    assert measured.constant_loss(target) == pytest.approx(1.0)  # standardised: predicting the mean
    assert Task("spend", "regression").constant_loss(target) == pytest.approx(100.0)  # raw units: the variance
    assert Task("click", "binary").constant_loss(torch.tensor([0.0, 0.0, 0.0, 1.0])) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    )
    assert Task("segment", "multiclass", n_classes=3).constant_loss(torch.tensor([0.0, 1.0, 2.0])) == pytest.approx(
        math.log(3)
    )
    assert Task("click", "binary").constant_loss(torch.tensor([1.0, 1.0])) == 0.0
    assert Task("click", "binary").constant_loss(torch.tensor([math.nan])) == 0.0


@pytest.mark.parametrize(
    "text,message",
    [
        # classes= would be ignored, metrics= would mean the default ones: both refused, as in a description file
        (
            "churn:binary:classes=3",
            "--task 'churn:binary:classes=3': only a multiclass task has classes (task 'churn' is binary)",
        ),
        ("spend:regression:classes=3", "--task 'spend:regression:classes=3': only a multiclass task has classes"),
        ("spend:regression:metrics=", "--task 'spend:regression:metrics=': metrics= names no metric (known: auc,"),
        ("spend:regression:metrics=+", "--task 'spend:regression:metrics=+': metrics= names no metric"),
    ],
)
def test_a_declaration_option_that_would_be_ignored_is_refused(text, message):
    with pytest.raises(UserError) as error:
        parse_task_declaration(text)
    assert str(error.value).startswith(message), str(error.value)


def test_a_given_problem_names_the_task_it_is_about():
    from mtl_search.tasks import validate_conditions

    with pytest.raises(TaskError) as error:
        validate_conditions([Task("churn", "binary"), Task("spend", "binary", given="bigg")])
    assert (error.value.field, error.value.task) == ("given", "spend")
    assert str(error.value).startswith("task 'spend': given=bigg is not a task of the data")


@pytest.mark.parametrize("rows", [2, 7, 500, 4001])
@pytest.mark.parametrize("ties", [False, True])
def test_binary_auc_equals_scikit_learn(rows, ties):
    from sklearn.metrics import roc_auc_score

    from mtl_search.tasks import binary_auc

    generator = np.random.default_rng(rows)
    scores = generator.normal(size=rows).astype(np.float32)
    if ties:
        scores = np.round(scores * 2) / 2  # few distinct values: many tied positive-negative pairs
    labels = (generator.random(rows) < 0.3).astype(np.float32)
    labels[0], labels[-1] = 1.0, 0.0  # both classes
    assert binary_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_binary_auc_edge_cases():
    from mtl_search.tasks import binary_auc

    assert math.isnan(binary_auc(np.array([0.1, 0.2]), np.array([1.0, 1.0])))  # one class only
    assert binary_auc(np.array([0.5, 0.5, 0.5]), np.array([1.0, 0.0, 1.0])) == 0.5  # all tied
    assert binary_auc(np.array([0.1, 0.9]), np.array([0.0, 1.0])) == 1.0
    assert binary_auc(np.array([0.9, 0.1]), np.array([0.0, 1.0])) == 0.0
