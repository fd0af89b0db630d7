"""Reference models: single-task networks (and LightGBM) trained on the study's data and
budget, stored with the study, read back by `pareto` without training."""

from __future__ import annotations

import json
import sys

import optuna
import pytest
import torch

from mtl_search.analysis.references import transfer
from mtl_search.architectures.conditional import evaluation_targets
from mtl_search.data.synthetic import make_synthetic
from mtl_search.records.references import ReferenceRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.search.references import sizing_trial, train_references
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.study import pareto_trials, study_objectives
from mtl_search.training.references import parameter_count, single_task_view

SPACE = {
    "training": {"epochs": 2, "batch_size": 64, "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}},
    "families": {"tree": {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 16, 32]}}},
    "tower": {"depth": 1, "width": 4},
    "loss_weighting": {"static": {}},
}


def _data():
    return make_synthetic(dim=8, rows=300, seed=0)


@pytest.fixture(scope="module")
def study_with_references(tmp_path_factory):
    """A 4-trial study on tiny synthetic data, with its references trained (networks only)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{tmp_path_factory.mktemp('references') / 'studies.db'}"
    data = _data()
    settings = SearchSettings("refs", storage=url, n_trials=4, sampler="random", save_artifacts=False, prune=False)
    study = run_search(data, parse_space(SPACE), settings)
    record = train_references(study, data, gbdt=False)
    return url, study, data, record


def test_each_single_task_network_gets_the_median_front_networks_size_and_training(study_with_references):
    _, study, data, record = study_with_references
    sizes = sorted(TrialRecord.read(t).n_params for t in pareto_trials(study))
    template = TrialRecord.read(sizing_trial(study))
    assert template.n_params == sizes[(len(sizes) - 1) // 2]
    assert record.sized_like_trial == sizing_trial(study).number and record.parameter_budget == template.n_params
    assert set(record.single_task) == set(data.task_names) and record.gbdt == {} and record.gbdt_skipped
    for task, model in record.single_task.items():
        spec = model.settings["architecture"]
        # a plain stack for the one task, the template's tower, its whole training (epochs, batch, rate, seed...)
        assert (
            spec["groups"] == [[[task]]] * len(spec["widths"])
            and spec["tower"] == template.candidate.architecture["tower"]
        )
        assert model.settings["training"] == template.candidate.training
        assert model.kept_epoch <= template.candidate.training["epochs"]
        # the width whose parameter count is nearest the budget: one narrower or wider is farther off
        width = spec["widths"][0]
        gap = abs(model.n_params - template.n_params)
        assert model.n_params == parameter_count(data, task, width, spec)
        for other in (width - 1, width + 1):
            assert abs(parameter_count(data, task, other, spec) - template.n_params) >= gap
        assert set(model.validation) == {"mse", "loss"} and set(model.test) == {"mse", "loss"}
    assert ReferenceRecord.read(study) == record  # stored with the study


def test_pareto_json_reads_delta_m_from_the_stored_references(study_with_references, cli):
    url, study, _, record = study_with_references
    result = cli("pareto", "refs", "--storage", url, "--format", "json")
    assert result.code == 0, result
    entries = json.loads(result.out)
    objectives = study_objectives(study)
    assert entries and [e["number"] for e in entries] == [t.number for t in pareto_trials(study)]
    for entry in entries:
        values = {o.task: {o.metric: entry["values"][o.name]} for o in objectives}
        expected = transfer(values, record.single_task, objectives)
        assert entry["delta_m"] == pytest.approx(expected.delta_m)
        assert entry["task_change"] == pytest.approx(expected.tasks)
        assert entry["negative_transfer"] == expected.negative
        # each task's change by hand: lower mse is better, relative to the single-task network's
        for task, change in entry["task_change"].items():
            reference = record.single_task[task].validation["mse"]
            assert change == pytest.approx((reference - entry["values"][f"{task}/mse"]) / reference * 100)
        assert entry["delta_m_test"] is not None
    table = cli("pareto", "refs", "--storage", url)
    assert "Δm %" in table.out and "References (one model per task)" in table.out


def test_a_conditional_task_alone_is_labelled_where_its_condition_holds():
    from mtl_search.data.base import MultiTaskData, Split
    from mtl_search.tasks import Task

    generator = torch.Generator().manual_seed(0)

    def split(rows):
        click = (torch.rand(rows, generator=generator) > 0.5).float()
        buy = click * (torch.rand(rows, generator=generator) > 0.5).float()
        return Split(inputs={"x": torch.randn(rows, 3, generator=generator)}, targets={"click": click, "buy": buy})

    data = MultiTaskData(
        "funnel",
        [Task("click", "binary"), Task("buy", "binary", given="click")],
        split(40),
        split(20),
        split(20),
        {"kind": "vector", "size": 3},
    )
    alone = single_task_view(data, "buy")
    assert [t.name for t in alone.tasks] == ["buy"] and alone.tasks[0].given is None
    for name in ("train", "validation", "test"):
        expected = evaluation_targets(data.tasks, getattr(data, name).targets)["buy"]
        got = getattr(alone, name).targets["buy"]
        assert torch.equal(torch.isnan(got), getattr(data, name).targets["click"] == 0)
        assert torch.equal(torch.nan_to_num(got, -1.0), torch.nan_to_num(expected, -1.0))


def test_baselines_command_without_lightgbm_trains_networks_and_says_so_in_one_line(
    study_with_references, cli, monkeypatch
):
    url, *_ = study_with_references
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # as if the gbdt extra were not installed
    result = cli("baselines", "refs", "--storage", url, "--format", "json")
    assert result.code == 0, result
    notes = [line for line in result.err.splitlines() if line.strip()]
    assert notes == [
        "mtl-search baselines: note: LightGBM skipped: LightGBM is not installed (pip install 'mtl-search[gbdt]')"
    ]
    stored = json.loads(result.out)
    assert set(stored["single_task"]) == {"task1", "task2"} and not stored.get("gbdt")


def test_lightgbm_references_are_seeded_early_stopped_and_scored_like_trials():
    pytest.importorskip("lightgbm")
    from mtl_search.data.table import make_table_data, targets_from_declarations
    from mtl_search.training.references import GBDT_MAX_TREES, train_gbdt
    from tests.helpers import spend_and_churn

    data = make_table_data(
        spend_and_churn(rows=600), targets_from_declarations(["churn:binary", "spend:regression:metrics=mae+mse"])
    )
    churn = train_gbdt(data, "churn", seed=0)
    assert train_gbdt(data, "churn", seed=0)["validation"] == churn["validation"]  # deterministic
    assert 1 <= churn["trees"] < GBDT_MAX_TREES  # stopped early on the validation split
    assert set(churn["validation"]) == {"auc", "loss"} and churn["validation"]["auc"] > 0.8  # churn follows a and b
    spend = train_gbdt(data, "spend", seed=0)
    # in the target's units, as a network's outputs are: a mean error well below the target's spread (200)
    assert set(spend["test"]) == {"mae", "mse", "loss"} and spend["test"]["mae"] < 200


def test_run_with_baselines_stores_references_that_pareto_reads(cli, storage_url):
    result = cli(
        "run",
        *("--data-option", "rows=300", "--data-option", "dim=8", "--trials", "2", "--epochs", "1"),
        *("--study-name", "with-refs", "--storage", storage_url, "--quiet", "--baselines"),
    )
    assert result.code == 0, result
    assert "Δm %" in result.out
    entries = json.loads(cli("pareto", "with-refs", "--storage", storage_url, "--format", "json").out)
    assert all(isinstance(entry["delta_m"], float) for entry in entries)
    record = ReferenceRecord.read(optuna.load_study(study_name="with-refs", storage=storage_url))
    assert set(record.single_task) == {"task1", "task2"}
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        assert record.gbdt == {} and "not installed" in record.gbdt_skipped
    else:
        assert set(record.gbdt) == {"task1", "task2"} and record.gbdt_skipped is None


def test_baselines_before_any_trial_completed_is_one_line(cli, storage_url):
    from tests.helpers import assert_one_line_error

    optuna.create_study(study_name="empty", storage=storage_url)
    assert_one_line_error(cli("baselines", "empty", "--storage", storage_url), "no completed trial yet")


def test_pareto_reads_the_references_without_torch(study_with_references):
    import subprocess

    url, *_ = study_with_references
    probe = (
        "import contextlib, io, sys\n"
        "from mtl_search.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    main(['pareto', 'refs', '--storage', {url!r}])\n"
        f"    main(['pareto', 'refs', '--storage', {url!r}, '--format', 'json'])\n"
        "print('Δm %' in out.getvalue(), 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["True", "False"], result.stderr
