"""The data interface (mtl_search/data/base.py): what every source's data must hold to."""

from __future__ import annotations

import pytest
import torch

from mtl_search.data.base import MultiTaskData, Split
from mtl_search.errors import UserError
from mtl_search.tasks import Task


def data_with(*tasks: Task) -> MultiTaskData:
    split = Split(inputs={"x": torch.zeros(4, 2)}, targets={task.name: torch.zeros(4) for task in tasks})
    return MultiTaskData("tiny", list(tasks), split, split, split, {"kind": "vector", "size": 2})


@pytest.mark.parametrize(("tasks", "message"), [
    ((Task("big", "binary"), Task("small", "binary", given="bigg")), "task 'small': given=bigg is not a task of the data (tasks: big, small)"),
    ((Task("amount", "regression"), Task("small", "binary", given="amount")), "task 'small': given=amount needs both tasks to be binary"),
])
def test_a_given_that_cannot_hold_is_refused_when_the_data_is_made(tasks, message):
    # made, not first trained: a search would otherwise store its study before the first trial failed
    with pytest.raises(UserError) as error:
        data_with(*tasks)
    assert str(error.value) == message


def test_a_given_naming_a_binary_task_is_data():
    assert data_with(Task("big", "binary"), Task("small", "binary", given="big")).task("small").given == "big"
