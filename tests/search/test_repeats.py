"""A candidate the study already trained is not trained again (search/objective.py)."""

from __future__ import annotations

import optuna
import pytest

from mtl_search.errors import UserError
from mtl_search.export.picks import find_trial
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.study import pareto_trials

# exactly two candidates: everything fixed but the learning rate
TWO_CANDIDATES = {
    "training": {"epochs": 2, "learning_rate": {"choices": [1.0e-3, 3.0e-3]}, "batch_size": 64},
    "families": {"tree": {"depth": 1, "width": 8, "grouping": "shared"}},
    "loss_weighting": {"static": {}},
    "pruning": {"enabled": False},
}


def search(data, storage_url, name, n_trials):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = SearchSettings(study_name=name, storage=storage_url, sampler="random", seed=0, n_trials=n_trials, save_artifacts=False)
    return run_search(data, parse_space(TWO_CANDIDATES), settings)


def test_a_repeated_candidate_takes_the_earlier_outcome_without_training(tiny_synthetic, storage_url):
    study = search(tiny_synthetic, storage_url, "repeats", 6)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    trained = [t for t in trials if "repeat_of" not in t.user_attrs]
    assert len(trained) == 2  # one per distinct candidate
    assert all(t.user_attrs["history"] for t in trained)
    first_by_rate = {t.params["training.learning_rate"]: t for t in trained}
    for trial in trials:
        if trial in trained:
            continue
        original = first_by_rate[trial.params["training.learning_rate"]]
        assert trial.user_attrs["repeat_of"] == original.number
        assert trial.values == original.values
        assert trial.user_attrs["test"] == original.user_attrs["test"]
        assert "history" not in trial.user_attrs  # never a second pruning reference
    # the front lists each candidate once, and exporting a repeat exports what was trained
    front = pareto_trials(study)
    assert all("repeat_of" not in t.user_attrs for t in front)
    repeat = next(t for t in trials if "repeat_of" in t.user_attrs)
    assert find_trial(study, repeat.number).number == repeat.user_attrs["repeat_of"]


def test_a_candidate_that_was_pruned_is_pruned_again_with_the_reason(tiny_synthetic, storage_url):
    candidate = search(tiny_synthetic, storage_url, "first", 1).trials[0].user_attrs["candidate"]
    study = search(tiny_synthetic, storage_url, "second", 0)
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED,
        params={"training.learning_rate": candidate["training"]["learning_rate"]},
        distributions={"training.learning_rate": optuna.distributions.CategoricalDistribution([1.0e-3, 3.0e-3])},
        user_attrs={"candidate": candidate, "prune_reason": "dominated at epoch 1 by trial(s) 7, 8 (margin 0.05)"},
    ))
    # the same seed and sampler propose the same first candidate again
    study = search(tiny_synthetic, storage_url, "second", 1)
    repeat = study.trials[1]
    assert repeat.state == optuna.trial.TrialState.PRUNED
    assert repeat.user_attrs["repeat_of"] == 0
    assert "same candidate as trial 0" in repeat.user_attrs["prune_reason"] and "epoch 1" in repeat.user_attrs["prune_reason"]
    assert "history" not in repeat.user_attrs
    with pytest.raises(UserError, match="pruned"):
        find_trial(study, 1)
