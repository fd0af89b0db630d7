"""Tasks: declarations and the checks that name the field at fault."""

from __future__ import annotations

import pickle

import pytest

from mtl_search.errors import UserError
from mtl_search.tasks import Task, TaskError, parse_task_declaration


@pytest.mark.parametrize("kwargs,field,message", [
    ({"name": "a b", "kind": "binary"}, "name", "task name 'a b': use letters"),
    ({"name": "spend", "kind": "regresion"}, "kind", "task 'spend': unknown kind 'regresion' (expected one of binary, multiclass, regression)"),
    ({"name": "segment", "kind": "multiclass", "n_classes": 1}, "classes", "task 'segment': a multiclass task needs at least 2 classes, got 1"),
    ({"name": "spend", "kind": "regression", "metrics": ("rmsee",)}, "metrics", "task 'spend': unknown metric 'rmsee'"),
    ({"name": "spend", "kind": "regression", "metrics": ("auc",)}, "metrics", "task 'spend': metric 'auc' does not apply to a regression task"),
])
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
