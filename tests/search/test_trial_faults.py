"""A candidate that cannot be trained fails alone, with its reason, and the search goes on."""

from __future__ import annotations

import optuna

from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space


def test_a_diverging_candidate_fails_with_its_reason_and_the_search_goes_on(tiny_synthetic, storage_url):
    # learning rate 1e6 blows the loss up in the first epoch; 1e-3 trains fine
    space = parse_space(
        {
            "training": {"epochs": 2, "learning_rate": {"choices": [1.0e-3, 1.0e6]}, "batch_size": 64},
            "families": {"tree": {"depth": 1, "width": 8}},
            "loss_weighting": {"static": {}},
        }
    )
    settings = SearchSettings(
        study_name="diverge", storage=storage_url, sampler="random", seed=0, n_trials=6, save_artifacts=False
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = run_search(tiny_synthetic, space, settings)

    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6  # no failure stopped the search early
    by_rate = {rate: [t for t in trials if t.params["training.learning_rate"] == rate] for rate in (1.0e-3, 1.0e6)}
    assert by_rate[1.0e6] and by_rate[1.0e-3]
    for trial in by_rate[1.0e6]:
        assert trial.state == optuna.trial.TrialState.FAIL
        assert "non-finite training loss" in trial.user_attrs["fail_reason"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in by_rate[1.0e-3])
    assert study.best_trials  # the front holds the good ones


def test_an_error_that_stops_the_run_is_the_failed_trials_reason_not_a_lost_worker(storage_url):
    # two multiclass tasks of 3 and 4 classes, a relationship prior and no tower layer: the prior
    # has no layer of one shape in every tower, which only building the model finds out
    import numpy as np
    import pandas as pd
    import pytest

    from mtl_search.analysis.outcomes import trial_outcomes
    from mtl_search.data.table import make_table_data, targets_from_declarations
    from mtl_search.errors import UserError

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.standard_normal(300),
            "y": rng.standard_normal(300),
            "three": rng.integers(0, 3, 300),
            "four": rng.integers(0, 4, 300),
        }
    )
    data = make_table_data(frame, targets_from_declarations(["three:multiclass", "four:multiclass"]))
    space = parse_space(
        {
            "training": {"epochs": 1},
            "relationship": {"weight": 0.01},
            "tower": {"depth": 0},
            "families": {"tree": {"depth": 1, "width": 8, "grouping": "shared"}},
            "loss_weighting": {"static": {}},
        }
    )
    settings = SearchSettings(study_name="stops", storage=storage_url, n_trials=2, save_artifacts=False)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with pytest.raises(UserError, match="relationship") as error:
        run_search(data, space, settings)
    (trial,) = optuna.load_study(study_name="stops", storage=storage_url).trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == f"{error.value} (the run stopped here)"
    assert trial_outcomes([trial]).lost == 0
