"""Hypervolume: exact values on hand-computed fronts, and the history over a study."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from mtl_search.search.hypervolume import (
    epsilon_indicator,
    front_bounds,
    front_hypervolume,
    hypervolume,
    hypervolume_history,
    objective_bounds,
    store_hypervolume,
)

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED


def test_two_dimensional_front_by_hand():
    # strips: (1.1-0)*(1.1-1) + (1.1-0.5)*(1-0.5) + (1.1-1)*(0.5-0) = 0.11 + 0.30 + 0.05
    assert hypervolume([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], [1.1, 1.1]) == pytest.approx(0.46)
    # a dominated point, a duplicate and a point beyond the reference change nothing
    assert hypervolume(
        [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.6, 0.6], [0.5, 0.5], [2.0, -1.0]], [1.1, 1.1]
    ) == pytest.approx(0.46)
    assert hypervolume(np.empty((0, 2)), [1.1, 1.1]) == 0.0


def test_three_dimensional_by_hand():
    assert hypervolume([[0.0, 0.0, 0.0]], [1.1, 1.1, 1.1]) == pytest.approx(1.331)
    # two boxes 1x1x2 and 2x1x1 (reference 2,2,2) overlap in a 1x1x1 cube: 2 + 2 - 1
    assert hypervolume([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], [2.0, 2.0, 2.0]) == pytest.approx(3.0)


def test_agrees_with_optunas_exact_algorithm_on_random_fronts():
    from optuna._hypervolume import compute_hypervolume  # private: used only as a cross-check here

    rng = np.random.default_rng(0)
    for m in (2, 3, 4):
        points = rng.random((25, m))
        points /= np.linalg.norm(points, axis=1, keepdims=True)  # many non-dominated points
        reference = np.full(m, 1.1)
        assert hypervolume(points, reference) == pytest.approx(compute_hypervolume(points, reference))


def test_history_of_a_study_normalised_by_hand(storage_url):
    study = optuna.create_study(storage=storage_url, directions=["maximize", "minimize"])

    def add(values, state=COMPLETE, **kw):
        study.add_trial(optuna.trial.create_trial(state=state, values=values if state == COMPLETE else None, **kw))

    add([0.5, 10.0])  # 0 -> normalised (1, 0)
    add(None, state=PRUNED)  # 1: pruned, adds nothing
    add([1.0, 20.0])  # 2 -> (0, 1)
    add([0.99, 1.0], system_attrs={"constraints:max_params": 0.5})  # 3: infeasible, would dominate, ignored
    add([0.75, 15.0])  # 4 -> (0.5, 0.5)
    history = hypervolume_history(study)
    assert [h["trial"] for h in history] == [0, 1, 2, 3, 4]
    assert [h["hypervolume"] for h in history] == pytest.approx([0.11, 0.11, 0.21, 0.21, 0.46])
    assert front_hypervolume(study) == pytest.approx(0.46)
    # given bounds (several studies on one scale): the first objective's range doubles, so the
    # points become (0.5, 0), (0, 1), (0.25, 0.5): 1.1*0.1 + 0.85*0.5 + 0.6*0.5
    assert front_hypervolume(study, bounds=([-1.0, 10.0], [0.0, 20.0])) == pytest.approx(0.835)
    stored = store_hypervolume(study)
    assert study.user_attrs["hypervolume"]["history"][-1]["hypervolume"] == pytest.approx(0.46)
    assert stored["reference"] == 1.1


def test_no_complete_trial_no_history():
    study = optuna.create_study(directions=["minimize", "minimize"])
    assert hypervolume_history(study) == []
    assert front_hypervolume(study) == 0.0


def test_front_bounds_ignore_dominated_outliers():
    study = optuna.create_study(directions=["minimize", "maximize"])
    for values in ([1.0, 0.5], [2.0, 0.9], [50.0, 0.1]):  # the last is a dominated, very bad trial
        study.add_trial(optuna.trial.create_trial(state=COMPLETE, values=values))
    assert objective_bounds([study]) == ([1.0, -0.9], [50.0, -0.1])
    assert front_bounds([study]) == ([1.0, -0.9], [2.0, -0.5])


def test_epsilon_indicator_by_hand():
    front = [(1.0, 4.0), (2.0, 2.0), (4.0, 1.0), (5.0, 5.0)]  # (5, 5) is dominated: ignored
    # (1, 4) is covered by (1.1, 4) within 10 %, (2, 2) by (2.5, 2) within 25 %, (4, 1) exactly
    approximation = [(1.1, 4.0), (2.5, 2.0), (4.0, 1.0)]
    assert epsilon_indicator(front, approximation) == pytest.approx(0.25)
    assert epsilon_indicator(front, front) == 0.0
    # a strictly better approximation gives a negative value; an empty one covers nothing
    assert epsilon_indicator(front, [(0.5, 0.5)]) == pytest.approx(-0.5)
    assert epsilon_indicator(front, []) == float("inf")
    with pytest.raises(ValueError, match="positive"):
        epsilon_indicator([(-1.0, 1.0)], [(1.0, 1.0)])
