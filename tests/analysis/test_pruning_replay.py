"""Replaying pruning settings on recorded learning curves (mtl_search.analysis.pruning_replay)."""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest

from mtl_search.analysis.pruning_replay import replay, replay_settings, settings_grid, stored_settings
from mtl_search.errors import UserError
from mtl_search.search.pruning import PruningSettings

EPOCHS = 6


def flat(value: tuple[float, float]) -> list[tuple[float, float]]:
    return [value] * EPOCHS


# Two fast starters that plateau at (1, 1), four that plateau at (2, 0.5), and a late bloomer
# that is behind the fast two for most of its training and ends best on both objectives.
LATE_BLOOMER = [(3.0, 3.0), (2.0, 2.0), (1.5, 1.5), (1.5, 1.5), (1.5, 1.5), (0.5, 0.5)]
CURVES = [
    (0, flat((1.0, 1.0))),
    (1, flat((1.0, 1.0))),
    *[(n, flat((2.0, 0.5))) for n in range(2, 6)],
    (6, LATE_BLOOMER),
]


def test_a_count_only_rule_stops_the_late_bloomer_and_the_replay_says_what_it_cost():
    count_only = PruningSettings(min_dominators=2, min_dominator_fraction=0.0, budget="epochs")  # CURVES count epochs
    kept, epochs = replay(CURVES, count_only)
    assert kept == [0, 1, 2, 3, 4, 5] and epochs == 6 * EPOCHS + 3  # stopped after epoch 3
    result = replay_settings(CURVES, count_only)
    assert result.front_stopped == 1  # the bloomer alone is the true front
    assert result.epoch_share == pytest.approx(39 / 42)
    # the closest kept point, (1, 1), is twice the bloomer's (0.5, 0.5)
    assert result.epsilon == pytest.approx(1.0)


def test_the_steps_budget_replays_references_at_equal_steps():
    # six references improve by 0.5 per epoch at 2 optimiser steps per epoch (a small batch);
    # the last trial improves by 0.3 per epoch at 1 step per epoch (twice the batch)
    references = [
        (n, [(4 - 0.5 * e,) * 2 for e in range(1, EPOCHS + 1)], [2 * e for e in range(1, EPOCHS + 1)]) for n in range(6)
    ]
    large_batch = (6, [(4 - 0.3 * e,) * 2 for e in range(1, EPOCHS + 1)], list(range(1, EPOCHS + 1)))
    count_only = PruningSettings(min_dominators=2, min_dominator_fraction=0.0, budget="epochs")
    # at equal epochs it is behind from epoch 3 (3.1 against 2.5) and is stopped there
    assert replay(references + [large_batch], count_only) == (list(range(6)), 6 * EPOCHS + 3)
    # at equal steps it is ahead: at its epoch 3 (3 steps) the references had 1 epoch (3.5)
    by_steps = dataclasses.replace(count_only, budget="steps")
    assert replay(references + [large_batch], by_steps) == (list(range(7)), 7 * EPOCHS)


def test_half_of_the_references_keeps_it():
    # two of six references dominate it: fewer than half, so the median rule at its defaults lets it finish
    result = replay_settings(CURVES, PruningSettings(budget="epochs"))
    assert (result.front_stopped, result.epoch_share, result.epsilon) == (0, 1.0, 0.0)


def test_the_grid_starts_with_the_given_settings_and_has_no_duplicates():
    base = PruningSettings(warmup_epochs=3, margin=0.1)
    grid = settings_grid(base)
    assert grid[0] == base and len(grid) == len(set(grid)) == 11
    assert all(s.margin == 0.1 for s in grid if s.rule == "median")
    # the projected rule with its own defaults, and with a fixed warm-up
    assert [
        (s.warmup_epochs, s.warmup_fraction, s.margin, s.min_dominators, s.min_dominator_fraction)
        for s in grid
        if s.rule == "projected"
    ] == [(2, 0.125, 0.0, 1, 0.0), (2, 0.0, 0.0, 1, 0.0)]


def test_the_projected_rule_keeps_a_steady_late_bloomer_and_stops_a_flat_trial():
    # behind the two (1, 1) references at epochs 3 and 4, but falling along a power law
    # (4 t^-0.9) that ends at (0.8, 0.8), ahead of every reference
    bloomer = (6, [(4.0 * t**-0.9,) * 2 for t in range(1, EPOCHS + 1)])
    stuck = (7, flat((1.5, 1.5)))  # behind (1, 1) and going nowhere
    curves = [*CURVES[:6], bloomer, stuck]
    count_only = PruningSettings(min_dominators=2, min_dominator_fraction=0.0, budget="epochs")
    assert replay(curves, count_only) == ([0, 1, 2, 3, 4, 5], 6 * EPOCHS + 3 + 3)
    projected = PruningSettings.projected(budget="epochs")
    assert replay(curves, projected) == ([0, 1, 2, 3, 4, 5, 6], 7 * EPOCHS + 3)
    result = replay_settings(curves, projected)
    assert (result.front_stopped, result.epsilon) == (0, 0.0)


def test_stored_settings_come_from_the_study_or_default_and_are_switched_on():
    study = optuna.create_study(directions=["minimize"])
    # a space stored before pruning.budget existed was pruned at equal epochs
    assert stored_settings(study) == PruningSettings(budget="epochs")
    study.set_user_attr("mtl_search", {"space": {"pruning": {"enabled": False, "warmup_epochs": 1, "margin": 0.02}}})
    assert stored_settings(study) == PruningSettings(warmup_epochs=1, margin=0.02, budget="epochs")
    study.set_user_attr("mtl_search", {"space": {"pruning": {"warmup_epochs": 1, "budget": "steps"}}})
    assert stored_settings(study) == PruningSettings(warmup_epochs=1)
    # a projected rule stored with the space replays with the rule's own defaults
    study.set_user_attr("mtl_search", {"space": {"pruning": {"rule": "projected"}}})
    assert stored_settings(study) == PruningSettings.projected(budget="epochs")
    # a space stored before pruning.rule existed was pruned by the median rule; one stored now names
    # every field, the default rule (projected) included
    study.set_user_attr("mtl_search", {"space": {"pruning": {"budget": "steps"}}})
    assert stored_settings(study) == PruningSettings()
    from mtl_search.search.space import parse_space

    study.set_user_attr("mtl_search", {"space": parse_space({"families": {"tree": {}}}).to_data()})
    assert stored_settings(study) == PruningSettings.projected()


def test_non_positive_values_give_no_epsilon():
    curves = [(n, [(0.0, 1.0 + n)] * 3) for n in range(3)]
    assert math.isnan(replay_settings(curves, PruningSettings(budget="epochs")).epsilon)


def test_replaying_the_steps_budget_needs_step_counts():
    with pytest.raises(UserError, match="pruning budget steps: some trials have no step counts"):
        replay(CURVES, PruningSettings())


def test_curves_can_be_rebuilt_as_if_each_trial_had_kept_its_best_epoch(tmp_path):
    from mtl_search.analysis.pruning_replay import study_curves, with_best_kept
    import dataclasses

    from mtl_search.records.objective import Objective
    from mtl_search.records.trial import EpochRecord

    # a trial run with checkpoint: last that overfits after epoch 2
    losses = [0.9, 0.4, 0.6, 0.8]
    history = [{"epoch": e, "validation": {"a": {"mse": v, "loss": v}}} for e, v in enumerate(losses, 1)]
    assert [h.kept_epoch for h in with_best_kept([EpochRecord(**h) for h in history])] == [1, 2, 2, 2]
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["minimize"])
    study.set_user_attr("mtl_search", {"objectives": [dataclasses.asdict(Objective("a", "mse", "minimize"))]})
    study.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[0.8], user_attrs={"history": history})
    )
    assert [v[0] for v in study_curves(study)[0][1]] == losses  # as recorded
    assert [v[0] for v in study_curves(study, rebuild_best=True)[0][1]] == [0.9, 0.4, 0.4, 0.4]


def test_the_foresight_floor_trains_in_full_only_the_trials_no_earlier_trial_ends_ahead_of():
    from mtl_search.analysis.pruning_replay import foresight_epochs, foresight_floor

    curves = [
        (0, flat((1.0, 1.0))),
        (1, flat((1.04, 1.04))),  # ends dominated by trial 0
        (2, flat((0.98, 1.03))),  # not dominated: ahead of trial 0 on the first objective
        (3, flat((0.9, 1.2))),  # dominated only by trial 4, which comes later: it must finish
        (4, flat((0.8, 1.1))),
    ]
    warmup_two = PruningSettings(budget="epochs")  # stops at epoch 3, the first it may
    assert foresight_epochs(curves, warmup_two) == {0: 6, 1: 3, 2: 6, 3: 6, 4: 6}
    exact = foresight_floor(curves, warmup_two)
    assert (exact.epoch_share, exact.front_stopped, exact.epsilon) == (pytest.approx(27 / 30), 0, 0.0)
    # losing at most 5 %: trial 2 is within 5 % of trial 0 on both objectives, and is stopped too
    assert foresight_epochs(curves, warmup_two, tolerance=0.05) == {0: 6, 1: 3, 2: 3, 3: 6, 4: 6}
    loose = foresight_floor(curves, warmup_two, tolerance=0.05)
    assert (loose.epoch_share, loose.front_stopped) == (pytest.approx(24 / 30), 1)
    assert loose.epsilon == pytest.approx(1 / 0.98 - 1)  # trial 2's (0.98, 1.03) is matched by (1, 1)
    # a longer warm-up stops later
    assert foresight_epochs(curves, dataclasses.replace(warmup_two, warmup_fraction=0.5))[1] == 4


def test_the_floor_keeps_exactly_the_trials_undominated_by_every_earlier_trial_on_random_curves():
    import random

    from mtl_search.analysis.pruning_replay import foresight_epochs
    from mtl_search.search.pruning import dominates_with_margin

    rng = random.Random(3)
    curves = [
        (n, [(rng.uniform(0.1, 1), rng.uniform(0.1, 1), rng.uniform(0.1, 1)) for _ in range(EPOCHS)]) for n in range(60)
    ]
    trained = foresight_epochs(curves, PruningSettings(warmup_epochs=1, budget="epochs"))
    finals = [curve[-1] for _, curve in curves]
    records = {n for n in range(60) if not any(dominates_with_margin(finals[m], finals[n], 0.0) for m in range(n))}
    assert {n for n, epochs in trained.items() if epochs == EPOCHS} == records
    assert all(trained[n] == 2 for n in set(range(60)) - records)
    assert 5 < len(records) < 55  # the check means something on these curves


def test_time_left_takes_off_only_the_untrained_epochs_seconds():
    from mtl_search.analysis.pruning_replay import StudyTiming

    timing = StudyTiming(total_seconds=10.0, epoch_seconds={0: [1.0, 1.0, 1.0], 1: [2.0, 2.0, 2.0]})
    # trial 1 stopped after its first epoch saves 4 s; sampling and storage (the other 1 s) stay
    assert timing.share_after({0: 3, 1: 1}) == pytest.approx(0.6)
    assert timing.share_after({0: 3, 1: 3}) == 1.0
    assert math.isnan(timing.share_after({2: 1}))  # a trial without epoch times
    # replayed: trial 1, behind trial 0 throughout, is stopped after epoch 2 (the first after a
    # warm-up of 1), saving its last epoch's 2 s
    curves = [(n, flat((1.0 + n, 1.0 + n))[:3]) for n in range(2)]
    result = replay_settings(
        curves, PruningSettings(warmup_epochs=1, min_completed_trials=1, min_dominators=1, budget="epochs"), timing
    )
    assert (result.epoch_share, result.time_share) == (pytest.approx(5 / 6), pytest.approx(0.8))
    assert math.isnan(replay_settings(curves, PruningSettings(budget="epochs")).time_share)  # no timings given


def timed_trial(
    number: int, state: optuna.trial.TrialState, seconds: float, history: list[dict]
) -> optuna.trial.FrozenTrial:
    import datetime

    start = datetime.datetime(2026, 12, 2, 12, 0, 0) + datetime.timedelta(hours=number)  # hours apart: gaps never count
    return optuna.trial.FrozenTrial(
        number=number,
        trial_id=number,
        state=state,
        value=None,
        values=[1.0] if state == optuna.trial.TrialState.COMPLETE else None,
        datetime_start=start,
        datetime_complete=start + datetime.timedelta(seconds=seconds),
        params={},
        distributions={},
        user_attrs={"history": history},
        system_attrs={},
        intermediate_values={},
    )


def test_study_timing_sums_the_trials_durations_and_keeps_each_epochs_seconds_in_order():
    from mtl_search.analysis.pruning_replay import study_timing

    study = optuna.create_study(directions=["minimize"])
    assert study_timing(study) is None  # nothing finished
    complete, pruned = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    study.add_trial(
        timed_trial(
            0,
            complete,
            10.0,
            [{"epoch": 2, "seconds": 3.0}, {"epoch": 1, "seconds": 1.0}, {"epoch": 3, "seconds": 2.0}],
        )
    )
    study.add_trial(timed_trial(1, pruned, 4.0, [{"epoch": 1, "seconds": 1.5}]))
    study.add_trial(timed_trial(2, complete, 5.0, [{"epoch": 1}]))  # recorded without times
    study.add_trial(timed_trial(3, complete, 1.0, [{"epoch": 1, "seconds": None}]))  # a bad value: no times, no error
    timing = study_timing(study)
    # the four durations, not the span from the first start to the last end (hours)
    assert timing.total_seconds == pytest.approx(20.0) and timing.trials == 4
    assert timing.epoch_seconds == {0: [1.0, 3.0, 2.0], 1: [1.5]}
    # what a trial costs besides its epochs: (20 - 7.5) / 4
    assert timing.fixed_seconds_per_trial == pytest.approx(12.5 / 4) and timing.seconds_per_epoch == pytest.approx(
        7.5 / 4
    )
    # trial 0 stopped after its first epoch saves its last two (3 + 2 s)
    assert timing.share_after({0: 1}) == pytest.approx(0.75)
    # ... or only the second when the replay had two of its epochs
    assert timing.share_after({0: 1}, {0: 2}) == pytest.approx(1 - 3 / 20)
    assert math.isnan(timing.share_after({2: 1}))


def test_the_floor_never_stops_a_trial_whose_warm_up_reaches_its_end_and_its_tolerance_covers_equal_values():
    from mtl_search.analysis.pruning_replay import ahead_of, foresight_epochs

    curves = [(0, flat((1.0, 1.0))), (1, flat((2.0, 2.0))[:3]), (2, flat((1.0, 1.0))), (3, flat((0.99, 0.99)))]
    warmup_two = PruningSettings(budget="epochs")
    # trial 1 is dominated, but 3 epochs leave nothing past a warm-up of 2 to save
    assert foresight_epochs(curves, warmup_two) == {0: 6, 1: 3, 2: 6, 3: 6}
    # within 5 %: a trial equal to a finished one, or 1 % better, is matched and stopped
    assert foresight_epochs(curves, warmup_two, tolerance=0.05) == {0: 6, 1: 3, 2: 3, 3: 3}
    assert ahead_of((1.0, 1.0), (0.96, 1.0), 0.05) and not ahead_of((1.0, 1.0), (0.9, 1.0), 0.05)
    assert not ahead_of((1.0, 1.0), (1.0, 1.0), 0.0)  # the exact floor asks for dominance, as the rules do
