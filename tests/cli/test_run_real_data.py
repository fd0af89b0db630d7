"""End to end: `mtl-search run` on census-income and on two-digit images."""

from __future__ import annotations

import optuna
import pytest

from tests.conftest import SHARED_DATA

CENSUS_FILE = SHARED_DATA / "census-income.test.gz"


def completed_trials(storage_url: str, study_name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.mark.slow
@pytest.mark.skipif(not CENSUS_FILE.exists(), reason="the census file is not at hand")
def test_run_on_census(cli, storage_url):
    result = cli(
        "run",
        "--data",
        "census",
        "--data-file",
        str(CENSUS_FILE),
        "--data-option",
        "rows=3000",
        "--trials",
        "3",
        "--epochs",
        "1",
        "--storage",
        storage_url,
        "--quiet",
    )
    assert result.code == 0, result
    trials = completed_trials(storage_url, "census-default")
    assert len(trials) == 3
    assert all(0.5 < t.user_attrs["validation"]["never_married"]["auc"] <= 1.0 for t in trials)
    study = optuna.load_study(study_name="census-default", storage=storage_url)
    assert study.user_attrs["mtl_search"]["preprocessing"]["numeric"][0]["column"] == "age"


@pytest.mark.slow
def test_run_on_multidigits(cli, storage_url):
    result = cli(
        "run",
        "--data",
        "multidigits",
        "--data-option",
        "rows=600",
        "--trials",
        "3",
        "--epochs",
        "1",
        "--storage",
        storage_url,
        "--quiet",
    )
    assert result.code == 0, result
    trials = completed_trials(storage_url, "multidigits-default")
    assert len(trials) == 3
    assert all(set(t.user_attrs["validation"]) == {"left", "right"} for t in trials)
