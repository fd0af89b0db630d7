"""The MMoE paper's synthetic benchmark."""

import numpy as np
import pytest
import torch

from mtl_search.data import load_data
from mtl_search.data.synthetic import make_synthetic
from mtl_search.errors import UserError


def label_correlation(data):
    a, b = data.train.targets["task1"].numpy(), data.train.targets["task2"].numpy()
    return np.corrcoef(a, b)[0, 1]


def test_label_correlation_rises_with_p():
    correlations = [
        label_correlation(make_synthetic(dim=20, rows=3000, correlation=p, seed=3)) for p in (0.0, 0.3, 0.6, 0.9)
    ]
    assert all(lo < hi for lo, hi in zip(correlations, correlations[1:])), correlations
    assert abs(correlations[0]) < 0.1 and correlations[-1] > 0.8


def test_same_seed_same_data_and_fixed_split():
    first, second = make_synthetic(dim=10, rows=200, seed=5), make_synthetic(dim=10, rows=200, seed=5)
    for split in ("train", "validation", "test"):
        assert torch.equal(getattr(first, split).inputs["x"], getattr(second, split).inputs["x"])
        assert torch.equal(getattr(first, split).targets["task2"], getattr(second, split).targets["task2"])
    assert len(first.train) + len(first.validation) + len(first.test) == 200
    assert not torch.equal(first.train.inputs["x"], make_synthetic(dim=10, rows=200, seed=6).train.inputs["x"])


def test_more_than_two_tasks_share_a_common_direction():
    data = make_synthetic(dim=20, rows=2000, tasks=4, correlation=0.9, seed=0)
    assert data.task_names == ["task1", "task2", "task3", "task4"]
    y = np.stack([data.train.targets[n].numpy() for n in data.task_names])
    off_diagonal = np.corrcoef(y)[~np.eye(4, dtype=bool)]
    assert off_diagonal.min() > 0.6  # cosine p^2 = 0.81 between weight vectors


def test_groups_relate_tasks_within_a_group_only():
    data = load_data("synthetic", {"dim": "20", "rows": "3000", "tasks": "4", "groups": "2", "correlation": "0.9"})
    y = np.corrcoef(np.stack([data.train.targets[n].numpy() for n in data.task_names]))
    assert y[0, 1] > 0.6 and y[2, 3] > 0.6  # same group: cosine p^2 = 0.81
    assert abs(y[0, 2]) < 0.1 and abs(y[1, 3]) < 0.1 and abs(y[0, 3]) < 0.1  # different groups: orthogonal


def test_one_group_is_the_original_construction():
    grouped, plain = (
        make_synthetic(dim=12, rows=300, tasks=3, groups=1, seed=2),
        make_synthetic(dim=12, rows=300, tasks=3, seed=2),
    )
    assert torch.equal(grouped.train.targets["task3"], plain.train.targets["task3"])
    with pytest.raises(UserError, match="groups=5"):
        make_synthetic(dim=12, rows=300, tasks=3, groups=5)


def test_options_from_the_command_line_are_typed_and_checked():
    data = load_data("synthetic", {"rows": "100", "dim": "8", "correlation": "0.2"})
    assert data.input_schema == {"kind": "vector", "size": 8}
    with pytest.raises(UserError, match="unknown option"):
        load_data("synthetic", {"colour": "red"})
    with pytest.raises(UserError, match="correlation"):
        load_data("synthetic", {"correlation": "high"})
    with pytest.raises(UserError, match="correlation"):
        load_data("synthetic", {"correlation": "1.5"})


@pytest.mark.parametrize(
    "options,message",
    [
        ({"noise": "-1"}, "--data-option noise=-1: must be a finite number, at least 0"),
        ({"noise": "inf"}, "--data-option noise=inf: must be a finite number, at least 0"),
        ({"scale": "nan"}, "--data-option scale=nan: must be a finite number"),
        ({"seed": "-1"}, "--data-option seed=-1: must be between 0 and 4294967295"),
        ({"sines": "-1"}, "--data-option sines=-1: must lie between 0 and"),
        ({"alpha": "inf", "beta": "0"}, "--data-option alpha=inf: must be finite numbers"),
        # refused before hundreds of GiB are asked for
        (
            {"rows": "1000000000"},
            "--data-option rows=1000000000: rows x dim (1000000000 x 100) must be at most 1000000000 values",
        ),
        ({"dim": "100000000"}, "--data-option dim=100000000: must be at most 10000"),
    ],
)
def test_values_numpy_would_fail_on_are_named(options, message):
    with pytest.raises(UserError) as error:
        load_data("synthetic", options)
    assert str(error.value).startswith(message), str(error.value)


def test_running_out_of_memory_names_rows_and_dim(monkeypatch):
    import mtl_search.data.synthetic as synthetic

    def out_of_memory(**kwargs):
        raise MemoryError

    monkeypatch.setattr(synthetic, "_generate", out_of_memory)
    with pytest.raises(UserError, match=r"^--data-option rows=5000, dim=1000: not enough memory"):
        make_synthetic(rows=5000, dim=1000)


def test_stored_empty_alpha_and_beta_read_back_as_the_default():
    # a study's description shows "alpha: []"; typed back as --data-option it means the default
    plain = load_data("synthetic", {"rows": "100", "dim": "8"})
    again = load_data("synthetic", {"rows": "100", "dim": "8", "alpha": "[]", "beta": "[ ]"})
    assert again.description == plain.description and plain.description["options"]["alpha"] == []
    assert torch.equal(again.train.targets["task1"], plain.train.targets["task1"])
    listed = load_data("synthetic", {"rows": "100", "dim": "8", "alpha": "[0.1, 0.2]", "beta": "0.1,0.3"})
    assert listed.description["options"]["alpha"] == [0.1, 0.2]


def test_a_bad_option_is_one_line_on_the_command_line_and_stores_no_study(cli, storage_url):
    import optuna

    from tests.helpers import assert_one_line_error

    result = cli(
        "run", "--data-option", "noise=-1", "--trials", "1", "--epochs", "1", "--storage", storage_url, "--quiet"
    )
    assert_one_line_error(result, "--data-option noise=-1: must be a finite number, at least 0")
    assert optuna.get_all_study_names(storage_url) == []
