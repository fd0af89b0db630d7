"""``mtl-search run`` on the bundled loss-weighting space."""

import optuna
import pytest

from mtl_search.search.bundled import SPACES_DIR
from mtl_search.weighting import method_names


@pytest.mark.slow
def test_run_searches_loss_weighting_and_records_the_weights(cli, storage_url):
    space = str(SPACES_DIR / "loss_weights.yaml")
    result = cli("run", "--space", space, "--trials", "3", "--epochs", "1", "--storage", storage_url, "--quiet")
    assert result.code == 0, result

    study = optuna.load_study(study_name="synthetic-loss_weights", storage=storage_url)
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 3
    for trial in trials:
        method = trial.user_attrs["candidate"]["loss_weighting"]["method"]
        assert method in method_names()
        assert trial.user_attrs["weighting"]["method"] == method
        [epoch] = trial.user_attrs["history"]
        assert set(epoch["weights"]) == {"task1", "task2"}
