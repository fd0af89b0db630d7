"""How a study spent its trials: the counts add up, and every trial off the front says why."""

from __future__ import annotations

import optuna

from mtl_search.analysis.outcomes import outcome_line, stopped_lines, trial_outcomes

States = optuna.trial.TrialState


def spent_study() -> optuna.Study:
    """2 complete (one a repeat), 3 pruned (dominated, over a limit, without reason), 2 failed
    (diverged; lost with its worker and retried), 1 running."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[1.0, 2.0]))
    study.add_trial(optuna.trial.create_trial(values=[1.0, 2.0], user_attrs={"repeat_of": 0}))
    study.add_trial(
        optuna.trial.create_trial(state=States.PRUNED, user_attrs={"prune_reason": "dominated at epoch 2 by 2 of 3"})
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=States.PRUNED,
            system_attrs={"constraints:max_params": 0.4},
            user_attrs={"prune_reason": "over limit: 1400 parameters > --max-params 1000"},
        )
    )
    study.add_trial(optuna.trial.create_trial(state=States.PRUNED))
    study.add_trial(
        optuna.trial.create_trial(state=States.FAIL, user_attrs={"fail_reason": "non-finite training loss in epoch 5"})
    )
    study.add_trial(optuna.trial.create_trial(state=States.FAIL))
    study.add_trial(optuna.trial.create_trial(values=[3.0, 1.0], system_attrs={"failed_trial": 6}))
    study.enqueue_trial({})
    study.ask()  # running
    return study


def test_the_counts_add_up_to_the_trials_and_each_stop_is_explained():
    study = spent_study()
    outcomes = trial_outcomes(study.trials)
    assert outcomes.complete + outcomes.pruned + outcomes.failed + outcomes.running == len(study.trials) == 9
    assert outcome_line(outcomes) == (
        "3 complete (1 repeated an earlier candidate and was not trained again), 3 pruned (1 dominated early, "
        "1 over a hard limit, 1 other), 2 failed (1 lost with their worker: no heartbeat), "
        "1 running (not in the front yet; see docs/tutorials/many-machines.md)"
    )
    assert stopped_lines(outcomes) == [
        "trial 5 failed: non-finite training loss in epoch 5",
        "trial 6 failed: no heartbeat for the grace period: its worker died or was killed; retried as trial 7",
        "trial 3 pruned: over limit: 1400 parameters > --max-params 1000",
        "trial 4 pruned: no reason recorded",
    ]
    assert stopped_lines(outcomes, limit=1)[-1] == "... and 3 more (the report lists them all)"


def test_the_report_lists_every_trial_off_the_front_with_its_reason():
    from mtl_search.visualization.report import _stopped_table

    table = _stopped_table(trial_outcomes(spent_study().trials))
    assert "1 trial(s) were stopped early by the Pareto-aware pruner" in table
    assert table.count("<tr>") == 1 + 4
    assert (
        "over limit: 1400 parameters &gt; --max-params 1000" in table and "non-finite training loss in epoch 5" in table
    )
