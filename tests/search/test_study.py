"""Samplers and study set-up (mtl_search/search/study.py)."""

import optuna
import pytest

from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.storage import is_database_server, open_storage
from mtl_search.search.study import make_sampler, startup_trials
from mtl_search.search.workers import LocalBudget, TrialBudget


@pytest.mark.parametrize(("n_trials", "expected"), [(1, 3), (7, 3), (12, 3), (13, 4), (20, 5), (40, 10), (500, 10), (None, 10)])
def test_random_start_up_is_a_quarter_of_a_small_budget(n_trials, expected):
    assert startup_trials(n_trials) == expected


def test_tpe_models_results_after_the_scaled_start_up_unless_told():
    # Optuna keeps the count private; it is the one thing this setting changes
    assert make_sampler("tpe", 0, n_trials=7)._n_startup_trials == 3
    assert make_sampler("tpe", 0, n_trials=7, n_startup_trials=6)._n_startup_trials == 6
    assert make_sampler("tpe", 0)._n_startup_trials == 10



def test_tpe_uses_the_constant_liar_only_when_others_may_run_trials_meanwhile():
    assert make_sampler("tpe", 0)._constant_liar is True
    assert make_sampler("tpe", 0, shared=False)._constant_liar is False


SMALL_SPACE = {
    "training": {"epochs": 1, "batch_size": 128, "learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True}},
    "families": {"tree": {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 16]}}, "mmoe": {"experts": {"low": 2, "high": 3}, "expert_width": 8}},
    "loss_weighting": {"static": {}, "uncertainty": {}},
}


def run_small_search(data, storage, name, budget, n_trials):
    settings = SearchSettings(study_name=name, storage=storage, sampler="tpe", seed=0,
                              n_trials=n_trials, epochs=1, startup_trials=3, save_artifacts=False)
    return run_search(data, parse_space(SMALL_SPACE), settings, budget=budget)


def test_a_process_alone_samples_without_the_constant_liar_and_workers_with_it(tiny_synthetic, tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    alone = run_small_search(tiny_synthetic, storage, "alone", LocalBudget(8), 8)
    shared = run_small_search(tiny_synthetic, storage, "shared", TrialBudget(8), 8)  # the budget of --workers
    assert alone.sampler._constant_liar is False and shared.sampler._constant_liar is True
    # alone, the only running trial is the one being sampled, which the liar leaves out:
    # going without it saves storage reads and changes no candidate
    proposed = [[trial.params for trial in study.get_trials(deepcopy=False)] for study in (alone, shared)]
    assert len(proposed[0]) == 8 and proposed[0] == proposed[1]


def test_only_a_database_server_is_shared_by_other_machines(tmp_path):
    assert not is_database_server(open_storage(f"sqlite:///{tmp_path / 'one.db'}", heartbeat=False))
    assert not is_database_server(optuna.storages.InMemoryStorage())


def test_an_unknown_study_lists_the_first_ten_and_says_there_are_more(tmp_path):
    from mtl_search.errors import UserError
    from mtl_search.search.study import load_existing

    url = f"sqlite:///{tmp_path / 'many.db'}"
    for index in range(12):
        optuna.create_study(study_name=f"s{index:02d}", storage=url)
    with pytest.raises(UserError) as error:
        load_existing("nope", url)
    message = str(error.value)
    assert "s00, s01" in message and "s09" in message and "s10" not in message
    assert message.endswith("... (12 in all; mtl-search studies lists them))")
