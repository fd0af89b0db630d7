"""The data interface (mtl_search/data/base.py): what every source's data must hold to."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_search.data.base import MultiTaskData, Split
from mtl_search.errors import UserError
from mtl_search.tasks import Task


def data_with(*tasks: Task) -> MultiTaskData:
    split = Split(inputs={"x": torch.zeros(4, 2)}, targets={task.name: torch.zeros(4) for task in tasks})
    return MultiTaskData("tiny", list(tasks), split, split, split, {"kind": "vector", "size": 2})


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        (
            (Task("big", "binary"), Task("small", "binary", given="bigg")),
            "task 'small': given=bigg is not a task of the data (tasks: big, small)",
        ),
        (
            (Task("amount", "regression"), Task("small", "binary", given="amount")),
            "task 'small': given=amount needs both tasks to be binary",
        ),
    ],
)
def test_a_given_that_cannot_hold_is_refused_when_the_data_is_made(tasks, message):
    # made, not first trained: a search would otherwise store its study before the first trial failed
    with pytest.raises(UserError) as error:
        data_with(*tasks)
    assert str(error.value) == message


def test_a_given_naming_a_binary_task_is_data():
    assert data_with(Task("big", "binary"), Task("small", "binary", given="big")).task("small").given == "big"


def test_regression_targets_are_measured_on_the_labelled_train_rows_only():
    train = Split(
        inputs={"x": torch.zeros(4, 2)},
        targets={"spend": torch.tensor([10.0, 30.0, math.nan, 20.0]), "churn": torch.ones(4)},
    )
    other = Split(
        inputs={"x": torch.zeros(2, 2)}, targets={"spend": torch.tensor([1000.0, -1000.0]), "churn": torch.ones(2)}
    )
    data = MultiTaskData(
        "tiny",
        [Task("spend", "regression"), Task("churn", "binary")],
        train,
        other,
        other,
        {"kind": "vector", "size": 2},
    )
    assert data.task("spend").target_mean == 20.0
    assert data.task("spend").target_std == pytest.approx(math.sqrt(200 / 3))
    assert data.task("churn").target_mean is None
    # a task that carries its statistics (a study's stored task, retrained) keeps them
    kept = MultiTaskData(
        "tiny",
        [Task("spend", "regression", target_mean=0.0, target_std=1.0), Task("churn", "binary")],
        train,
        other,
        other,
        {"kind": "vector", "size": 2},
    )
    assert kept.task("spend").target_scale == (0.0, 1.0)


@pytest.mark.parametrize("where", ["target", "input"])
def test_an_overflowing_value_made_in_python_is_refused_naming_the_tensor_and_row(where):
    # 1e308 is finite in numpy, inf once in a float32 tensor; every trial's loss would be NaN
    task = Task("amount", "regression")
    values = torch.tensor([1.0, 2.0, 1e308, 4.0], dtype=torch.float32)
    targets = {"amount": values if where == "target" else torch.zeros(4)}
    inputs = {"x": torch.stack([values, values], dim=1) if where == "input" else torch.zeros(4, 2)}
    train, other = (
        Split(inputs=inputs, targets=targets),
        Split(inputs={"x": torch.zeros(4, 2)}, targets={"amount": torch.zeros(4)}),
    )
    with pytest.raises(UserError) as error:
        MultiTaskData("tiny", [task], other, train, other, {"kind": "vector", "size": 2})
    named = "task 'amount''s target" if where == "target" else "input 'x'"
    assert str(error.value).startswith(f"tiny: {named} holds inf in row 2 of the validation split")
