"""Samplers and study set-up (mtl_search/search/study.py)."""

import pytest

from mtl_search.search.study import make_sampler, startup_trials


@pytest.mark.parametrize(("n_trials", "expected"), [(1, 3), (7, 3), (12, 3), (13, 4), (20, 5), (40, 10), (500, 10), (None, 10)])
def test_random_start_up_is_a_quarter_of_a_small_budget(n_trials, expected):
    assert startup_trials(n_trials) == expected


def test_tpe_models_results_after_the_scaled_start_up_unless_told():
    # Optuna keeps the count private; it is the one thing this setting changes
    assert make_sampler("tpe", 0, n_trials=7)._n_startup_trials == 3
    assert make_sampler("tpe", 0, n_trials=7, n_startup_trials=6)._n_startup_trials == 6
    assert make_sampler("tpe", 0)._n_startup_trials == 10

