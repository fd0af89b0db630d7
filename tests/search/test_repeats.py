"""A candidate the study already trained is not trained again (search/objective.py)."""

from __future__ import annotations

import optuna
import pytest

from mtl_search.errors import StudyWarning
from mtl_search.export.picks import find_trial
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.study import pareto_trials
from mtl_search.search.workers import MAX_FREE_REPEATS_IN_A_ROW, LocalBudget, optimize_study

# exactly two candidates: everything fixed but the learning rate
TWO_CANDIDATES = {
    "training": {"epochs": 2, "learning_rate": {"choices": [1.0e-3, 3.0e-3]}, "batch_size": 64},
    "families": {"tree": {"depth": 1, "width": 8, "grouping": "shared"}},
    "loss_weighting": {"static": {}},
    "pruning": {"enabled": False},
}


def search(data, storage_url, name, n_trials):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = SearchSettings(
        study_name=name, storage=storage_url, sampler="random", seed=0, n_trials=n_trials, save_artifacts=False
    )
    return run_search(data, parse_space(TWO_CANDIDATES), settings)


def test_a_repeated_candidate_takes_the_earlier_outcome_without_training(tiny_synthetic, storage_url):
    # two candidates for a budget of 6: repeats do not use up the budget, until so many in a row
    # say that the sampler has nothing new to propose
    with pytest.warns(StudyWarning, match="space looks exhausted"):
        study = search(tiny_synthetic, storage_url, "repeats", 6)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 + MAX_FREE_REPEATS_IN_A_ROW
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
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


def test_a_candidate_pruned_before_is_trained_again(tiny_synthetic, storage_url):
    # the pruning settings may have changed since; the pruner stops it again if they did not
    candidate = search(tiny_synthetic, storage_url, "first", 1).trials[0].user_attrs["candidate"]
    study = search(tiny_synthetic, storage_url, "second", 0)
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED,
            params={"training.learning_rate": candidate["training"]["learning_rate"]},
            distributions={"training.learning_rate": optuna.distributions.CategoricalDistribution([1.0e-3, 3.0e-3])},
            user_attrs={
                "candidate": candidate,
                "prune_reason": "dominated at epoch 1 by 2 of 3 completed trials (7, 8; margin 0.05)",
            },
        )
    )
    # the sampler proposes the same candidate again (a continuation samples from a new seed: enqueued)
    study.enqueue_trial({"training.learning_rate": candidate["training"]["learning_rate"]})
    study = search(tiny_synthetic, storage_url, "second", 1)
    again = study.trials[1]
    assert again.user_attrs["candidate"] == candidate
    assert again.state == optuna.trial.TrialState.COMPLETE
    assert "repeat_of" not in again.user_attrs and len(again.user_attrs["history"]) == 2


def test_a_repeat_is_held_to_the_limits_of_its_own_run(tiny_synthetic, storage_url):
    study = search(tiny_synthetic, storage_url, "limits", 1)
    n_params = study.trials[0].user_attrs["n_params"]
    limited = parse_space(TWO_CANDIDATES | {"objectives": {"max_params": n_params - 1}})
    # a continued study keeps its limits, so only a study stored with the limit whose trial
    # 0 a run from before that rule trained without it has such a repeat
    meta = study.user_attrs["mtl_search"]
    meta["space"]["objectives"] = limited.to_data()["objectives"]
    study.set_user_attr("mtl_search", meta)
    settings = SearchSettings(
        study_name="limits", storage=storage_url, sampler="random", seed=0, n_trials=1, save_artifacts=False
    )
    study.enqueue_trial(study.trials[0].params)  # the sampler proposes trial 0's candidate again
    study = run_search(tiny_synthetic, limited, settings)
    repeat = study.trials[1]
    assert repeat.user_attrs["repeat_of"] == 0
    assert repeat.state == optuna.trial.TrialState.PRUNED and "params" in repeat.user_attrs["prune_reason"]
    assert repeat.constraints and max(repeat.constraints.values()) > 0


def test_a_candidate_from_before_training_checkpoint_equals_it_with_last_written_out():
    from mtl_search.search.objective import candidate_key

    old = {"architecture": {"family": "tree"}, "training": {"epochs": 2, "seed": 0}}
    assert candidate_key(old) == candidate_key(old | {"training": old["training"] | {"checkpoint": "last"}})
    assert candidate_key(old) != candidate_key(old | {"training": old["training"] | {"checkpoint": "best"}})


def _objective_repeating(numbers):
    """A stand-in objective: the trials numbered in ``numbers`` only repeat trial 0."""
    from mtl_search.records.trial import TrialRecord

    def objective(trial):
        if trial.number in numbers:
            TrialRecord(repeat_of=0).write(trial)
        return trial.suggest_float("x", 0, 1)

    return objective


def test_a_repeat_gives_its_trial_back_to_the_budget():
    study = optuna.create_study()
    optimize_study(study, _objective_repeating({1, 2, 4}), LocalBudget(4))
    trained = [t for t in study.trials if "repeat_of" not in t.user_attrs]
    assert len(trained) == 4 and len(study.trials) == 7


def test_repeats_count_again_once_too_many_come_in_a_row():
    study = optuna.create_study()
    with pytest.warns(StudyWarning, match="in a row"):
        optimize_study(study, _objective_repeating(set(range(1, 100))), LocalBudget(3))
    # trial 0 trains, the next MAX repeats are free, then the two trials left go to repeats
    assert len(study.trials) == 3 + MAX_FREE_REPEATS_IN_A_ROW
