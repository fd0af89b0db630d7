"""A candidate that cannot be trained fails alone, with its reason, and the search goes on."""

from __future__ import annotations

import optuna

from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space


def test_a_diverging_candidate_fails_with_its_reason_and_the_search_goes_on(tiny_synthetic, storage_url):
    # learning rate 1e6 blows the loss up in the first epoch; 1e-3 trains fine
    space = parse_space({
        "training": {"epochs": 2, "learning_rate": {"choices": [1.0e-3, 1.0e6]}, "batch_size": 64},
        "families": {"tree": {"depth": 1, "width": 8}},
        "loss_weighting": {"static": {}},
    })
    settings = SearchSettings(study_name="diverge", storage=storage_url, sampler="random", seed=0, n_trials=6, save_artifacts=False)
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
