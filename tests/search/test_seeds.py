"""Every study has a recorded seed; a continued study samples new candidates (search/study.py)."""

from __future__ import annotations

import optuna
import pytest

from mtl_search.errors import UserError
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.study import sampler_seed

# one structure, a learning rate drawn from a range: every candidate differs, none repeats
ONE_STRUCTURE = {
    "training": {"epochs": 1, "learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True}, "batch_size": 64},
    "families": {"tree": {"depth": 1, "width": 8, "grouping": "shared"}},
    "loss_weighting": {"static": {}},
    "pruning": {"enabled": False},
}


def search(data, storage_url, name, n_trials, seed=None):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = SearchSettings(
        study_name=name, storage=storage_url, sampler="random", seed=seed, n_trials=n_trials, save_artifacts=False
    )
    return run_search(data, parse_space(ONE_STRUCTURE), settings)


def training_seeds(study) -> set[int]:
    return {TrialRecord.read(t, only=("candidate",)).candidate.seed for t in study.trials}


def test_a_new_study_draws_a_seed_records_it_and_trains_with_it(tiny_synthetic, storage_url, monkeypatch):
    monkeypatch.delenv("MTL_SEARCH_SEED")  # the test session seeds new studies 0
    first = search(tiny_synthetic, storage_url, "first", 1)
    second = search(tiny_synthetic, storage_url, "second", 1)
    seeds = [StudyRecord.read(study).seed for study in (first, second)]
    assert all(isinstance(seed, int) for seed in seeds)
    assert seeds[0] != seeds[1]  # drawn at random (a clash has odds of 1 in 2**32)
    assert training_seeds(first) == {seeds[0]}


def test_a_given_seed_is_recorded_and_a_continuation_keeps_training_with_it(tiny_synthetic, storage_url):
    study = search(tiny_synthetic, storage_url, "given", 1, seed=7)
    assert StudyRecord.read(study).seed == 7
    study = search(tiny_synthetic, storage_url, "given", 1)  # no --seed: the study's own
    assert training_seeds(study) == {7}


def test_a_continued_study_does_not_propose_its_first_candidates_again(tiny_synthetic, storage_url):
    first = search(tiny_synthetic, storage_url, "continued", 3, seed=0)
    proposed_first = [t.params for t in first.trials]
    study = search(tiny_synthetic, storage_url, "continued", 3, seed=0)
    proposed_then = [t.params for t in study.trials[3:]]
    assert len(proposed_then) == 3
    assert not any(params in proposed_first for params in proposed_then)
    assert all("repeat_of" not in t.user_attrs for t in study.trials)
    # a fresh study with the same seed proposes what the first run did: the seed still reproduces
    again = search(tiny_synthetic, storage_url, "fresh", 3, seed=0)
    assert [t.params for t in again.trials] == proposed_first


def test_sampler_seeds_differ_by_worker_and_by_run():
    seeds = {sampler_seed(5, before, worker) for before in (0, 3, 20) for worker in range(4)}
    assert len(seeds) == 12
    assert sampler_seed(5, 0, 1) == 6  # a study's first run: its seed plus the worker's index
    assert all(0 <= sampler_seed(2**32 - 1, before, 3) < 2**32 for before in (0, 10**6))


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_a_seed_out_of_range_is_refused_in_one_line(tiny_synthetic, storage_url, seed):
    with pytest.raises(UserError, match="seed"):
        search(tiny_synthetic, storage_url, "bad", 1, seed=seed)


def test_the_environment_can_seed_new_studies_and_a_bad_value_is_one_line(tiny_synthetic, storage_url, monkeypatch):
    monkeypatch.setenv("MTL_SEARCH_SEED", "11")
    assert StudyRecord.read(search(tiny_synthetic, storage_url, "from-env", 1)).seed == 11
    monkeypatch.setenv("MTL_SEARCH_SEED", "eleven")
    with pytest.raises(UserError, match=r"\$MTL_SEARCH_SEED 'eleven': must be a whole number"):
        search(tiny_synthetic, storage_url, "bad-env", 1)
    assert "bad-env" not in optuna.get_all_study_names(storage_url)  # refused before anything was stored
