"""Pareto-aware pruning on constructed learning curves (real SQLite studies, no training)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import optuna
import pytest

from mtl_search.errors import UserError
from mtl_search.search.pruning import (
    DominatedTrialPruner,
    PruningSettings,
    dominates_with_margin,
    learning_curve,
    minimised_vector,
    projected_final,
    vector_at_budget,
)
from mtl_search.analysis.pruning_replay import replay
from mtl_search.records.objective import Objective

OBJECTIVES = [Objective("a", "mse", "minimize"), Objective("b", "auc", "maximize")]
EPOCHS = 10


def scores(mse: float, auc: float) -> dict:
    return {"a": {"mse": mse, "loss": mse}, "b": {"auc": auc, "loss": 1 - auc}}


def curve(final_mse: float, final_auc: float, epochs: int = EPOCHS, steps_per_epoch: int | None = None) -> list[dict]:
    """A learning curve that improves linearly to the final values (with optimiser steps when given)."""
    return [
        {"epoch": e, "validation": scores(final_mse + 0.1 * (epochs - e), final_auc - 0.02 * (epochs - e))}
        | ({"steps": e * steps_per_epoch} if steps_per_epoch else {})
        for e in range(1, epochs + 1)
    ]


def make_study(
    storage: optuna.storages.BaseStorage | None,
    finals: list[tuple[float, float]],
    constraints: list[dict] | None = None,
    steps_per_epoch: int | None = None,
) -> optuna.Study:
    study = optuna.create_study(storage=storage, directions=["minimize", "maximize"])
    for i, (mse, auc) in enumerate(finals):
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            values=[mse, auc],
            user_attrs={"history": curve(mse, auc, steps_per_epoch=steps_per_epoch)},
            system_attrs={f"constraints:{k}": v for k, v in (constraints[i] if constraints else {}).items()},
        )
        study.add_trial(trial)
    return study


def running_trial(study: optuna.Study, epochs: int = EPOCHS) -> optuna.trial.Trial:
    trial = study.ask()
    trial.set_user_attr("candidate", {"training": {"epochs": epochs}})
    return trial


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """One SQLite file for the module (creating the schema takes seconds); a study per test."""
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path_factory.mktemp('pruning') / 'studies.db'}")


# count-only settings (no fraction of the references needed) keep these constructed cases small;
# their curves count epochs (the steps budget has tests of its own below)
SETTINGS = PruningSettings(
    warmup_epochs=2, min_completed_trials=3, margin=0.02, min_dominators=1, min_dominator_fraction=0.0, budget="epochs"
)
FINALS = [(0.5, 0.90), (0.6, 0.88), (0.7, 0.85)]


def test_a_clearly_dominated_trial_is_pruned_and_says_why(storage):
    study = make_study(storage, FINALS)
    trial = running_trial(study)
    # epoch index 4 = 5th epoch; the references were at mse 0.5+0.5=1.0, auc 0.9-0.1=0.8 then
    reason = reason_when_pruned(DominatedTrialPruner(OBJECTIVES, SETTINGS), trial, 4, scores(2.0, 0.6))
    assert reason.startswith("dominated at epoch 5 by 3 of 3 completed trials (0, 1, 2;")


def reason_when_pruned(pruner: DominatedTrialPruner, trial: optuna.trial.Trial, epoch: int, epoch_scores: dict) -> str:
    with pytest.raises(optuna.TrialPruned):
        pruner(trial, epoch, epoch_scores, {})
    return trial.study.trials[trial.number].user_attrs["prune_reason"]


def test_a_trial_better_on_one_objective_is_never_pruned(storage):
    study = make_study(storage, FINALS)
    pruner = DominatedTrialPruner(OBJECTIVES, SETTINGS)
    trial = running_trial(study)
    for epoch in range(EPOCHS):
        e = epoch + 1
        best_mse = min(m + 0.1 * (EPOCHS - e) for m, _ in FINALS)
        # far worse auc, but mse better than every reference at the same epoch
        pruner(trial, epoch, scores(best_mse - 0.01, 0.1), {})


def test_within_the_margin_is_not_dominated(storage):
    study = make_study(storage, FINALS)
    pruner = DominatedTrialPruner(OBJECTIVES, SETTINGS)
    trial = running_trial(study)
    e = 5  # the best reference at epoch 5: mse 1.0, auc 0.80
    pruner(trial, e - 1, scores(1.0 * 1.01, 0.80 * 0.99), {})  # worse, but by less than 2 %
    with pytest.raises(optuna.TrialPruned):
        pruner(trial, e - 1, scores(1.0 * 1.05, 0.80 * 0.95), {})


def test_no_pruning_during_warmup_at_the_last_epoch_or_with_few_references(storage):
    hopeless = scores(9.0, 0.0)
    study = make_study(storage, FINALS)
    pruner = DominatedTrialPruner(OBJECTIVES, SETTINGS)
    trial = running_trial(study)
    for epoch in (0, 1, EPOCHS - 1):  # warm-up epochs 1-2, and the last epoch
        pruner(trial, epoch, hopeless, {})
    few = make_study(storage, FINALS[:2])
    DominatedTrialPruner(OBJECTIVES, SETTINGS)(running_trial(few), 4, hopeless, {})
    off = DominatedTrialPruner(OBJECTIVES, PruningSettings(enabled=False))
    off(running_trial(study), 4, hopeless, {})


def test_infeasible_trials_are_no_references(storage):
    study = make_study(storage, FINALS, constraints=[{"max_params": 0.5}] * 3)
    DominatedTrialPruner(OBJECTIVES, SETTINGS)(running_trial(study), 4, scores(9.0, 0.0), {})


def test_min_dominators_counts_distinct_references(storage):
    study = make_study(storage, FINALS)
    # at epoch 5 only trial 0 (mse 1.0, auc .80) beats (1.08, .77) by the margin
    one_beats = scores(1.08, 0.77)
    strict = DominatedTrialPruner(
        OBJECTIVES, PruningSettings(warmup_epochs=2, min_completed_trials=3, min_dominators=2, budget="epochs")
    )
    strict(running_trial(study), 4, one_beats, {})
    with pytest.raises(optuna.TrialPruned):
        DominatedTrialPruner(OBJECTIVES, SETTINGS)(running_trial(study), 4, one_beats, {})


@pytest.mark.parametrize(("fraction", "pruned"), [(0.5, True), (0.75, False)])
def test_the_fraction_of_references_that_must_dominate(storage, fraction, pruned):
    # at epoch 5 the references are (1.0, .80), (1.1, .78), (1.2, .75), (3.5, .20): two of
    # the four beat (1.15, .76) by the 2 % margin, so half of them do, three quarters do not
    study = make_study(storage, FINALS + [(3.0, 0.30)])
    pruner = DominatedTrialPruner(
        OBJECTIVES,
        PruningSettings(
            warmup_epochs=2,
            min_completed_trials=3,
            margin=0.02,
            min_dominators=1,
            min_dominator_fraction=fraction,
            budget="epochs",
        ),
    )
    trial = running_trial(study)
    if pruned:
        with pytest.raises(optuna.TrialPruned, match="by 2 of 4 completed trials"):
            pruner(trial, 4, scores(1.15, 0.76), {})
    else:
        pruner(trial, 4, scores(1.15, 0.76), {})


def test_pruning_only_ever_happens_to_dominated_vectors():
    rng = np.random.default_rng(0)
    finals = [(float(m), float(a)) for m, a in zip(rng.uniform(0.2, 1.0, 6), rng.uniform(0.6, 0.95, 6))]
    study = make_study(None, finals)  # in memory: 144 checks, each reads the study
    pruner = DominatedTrialPruner(OBJECTIVES, SETTINGS)
    trial = running_trial(study)
    references = [(m + 0.1 * 5, a - 0.02 * 5) for m, a in finals]  # the curves at epoch 5
    pruned = kept = 0
    for mse, auc in itertools.product(np.linspace(0.2, 2.0, 12), np.linspace(0.3, 0.95, 12)):
        reason = pruner.check(study, trial.user_attrs, 5, scores(float(mse), float(auc)))
        if reason is not None:
            assert any(rm < mse and ra > auc for rm, ra in references), (mse, auc)
            pruned += 1
        else:
            kept += 1
    assert pruned > 20 and kept > 20


def test_dominates_with_margin_edge_cases():
    assert dominates_with_margin((1.0, 1.0), (2.0, 2.0), 0.0)
    assert not dominates_with_margin((1.0, 1.0), (1.0, 1.0), 0.0)  # equal is not better
    assert not dominates_with_margin((1.0, float("nan")), (2.0, 2.0), 0.0)
    assert not dominates_with_margin((1.0, 1.99), (2.0, 2.0), 0.01)


def test_cost_objectives_protect_smaller_networks(storage):
    objectives = [Objective("a", "mse", "minimize"), Objective("", "params", "minimize", kind="cost")]
    study = optuna.create_study(storage=storage, directions=["minimize", "minimize"])
    for mse in (0.5, 0.6, 0.7):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE,
                values=[mse, 10000.0],
                user_attrs={
                    "history": [{"epoch": e, "validation": {"a": {"mse": mse}}} for e in range(1, 11)],
                    "costs": {"params": 10000.0},
                },
            )
        )
    pruner = DominatedTrialPruner(objectives, SETTINGS)
    small = running_trial(study)
    small.set_user_attr("costs", {"params": 500.0})
    pruner(small, 4, {"a": {"mse": 5.0}}, {})  # much worse, but 20x smaller: stays
    large = running_trial(study)
    large.set_user_attr("costs", {"params": 20000.0})
    with pytest.raises(optuna.TrialPruned):
        pruner(large, 4, {"a": {"mse": 5.0}}, {})


# the prune reason each rule gives here: the projected rule (the default) also names where the curve points
PERFECT_TRIAL_REASONS = {
    None: "; projected to epoch 4, still dominated by the final values of 1 (0)",
    "median": "",
}


@pytest.mark.parametrize("rule", list(PERFECT_TRIAL_REASONS))
def test_a_search_prunes_behind_a_perfect_trial_and_keeps_the_record(tiny_synthetic, storage, rule):
    from mtl_search.search.runner import SearchSettings, run_search
    from mtl_search.search.space import parse_space
    from mtl_search.search.study import pareto_trials

    space = parse_space(
        {
            "training": {"epochs": 4, "batch_size": 128},
            "families": {"tree": {"depth": 1, "width": 8}},
            "loss_weighting": {"static": {}},
            "pruning": {
                "warmup_epochs": 1,
                "min_completed_trials": 1,
                "margin": 0.02,
                "min_dominators": 1,
                "min_dominator_fraction": 0.0,
            }
            | ({"rule": rule} if rule else {}),
        }
    )
    settings = SearchSettings(f"behind-perfect-{rule}", n_trials=0, save_artifacts=False)
    study = run_search(tiny_synthetic, space, settings, storage=storage)
    # one optimiser step per epoch: by any running trial's second epoch it had all four behind it
    perfect = [
        {"epoch": e, "steps": e, "validation": {"task1": {"mse": 0.0}, "task2": {"mse": 0.0}}} for e in range(1, 5)
    ]
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[0.0, 0.0], user_attrs={"history": perfect}
        )
    )
    study = run_search(
        tiny_synthetic,
        space,
        SearchSettings(f"behind-perfect-{rule}", n_trials=2, save_artifacts=False),
        storage=storage,
    )
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned) == 2
    for trial in pruned:
        history = trial.user_attrs["history"]
        steps = history[-1]["steps"]
        assert (
            trial.user_attrs["prune_reason"]
            == f"dominated at epoch 2 ({steps} steps) by 1 of 1 completed trials (0; margin 0.02)"
            + (PERFECT_TRIAL_REASONS[rule])
        )
        assert [h["epoch"] for h in history] == [1, 2]
        # recorded like a complete trial: each epoch's own values and the epoch kept so far
        assert all({"validation", "train_loss", "kept_epoch"} <= set(h) for h in history)
        kept = trial.user_attrs["kept_epoch"]
        assert kept == history[-1]["kept_epoch"] in (1, 2)
        assert trial.user_attrs["validation"] == history[kept - 1]["validation"]
        assert trial.user_attrs["last_values"]["task1/mse"] == trial.user_attrs["validation"]["task1"]["mse"] > 0
    assert [t.number for t in pareto_trials(study)] == [0]
    # the same search without pruning trains to the end
    off = run_search(
        tiny_synthetic,
        space,
        SearchSettings(f"not-pruned-{rule}", n_trials=1, save_artifacts=False, prune=False),
        storage=storage,
    )
    assert off.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_the_margin_on_an_auc_is_relative_to_its_error(storage):
    # references at epoch 5: mse 1.0 and AUC 0.95 - 0.02 * 5 = 0.85 at best (error 0.15)
    study = make_study(storage, [(0.5, 0.95), (0.5, 0.95), (0.5, 0.95)])
    pruner = DominatedTrialPruner(
        OBJECTIVES,
        PruningSettings(warmup_epochs=2, min_completed_trials=3, margin=0.05, min_dominators=2, budget="epochs"),
    )
    # AUC 0.84 has error 0.16: 0.15 is at least 5 % less, so the trial is behind on both
    # objectives. A margin of 5 % of the AUC itself (0.042) would never have pruned it.
    with pytest.raises(optuna.TrialPruned, match="margin 0.05"):
        pruner(running_trial(study), 4, scores(1.2, 0.84), {})
    # error 0.155: less than 5 % behind on AUC, so not dominated with the margin
    pruner(running_trial(study), 4, scores(1.2, 0.845), {})


def test_storage_is_read_again_for_a_new_trial_or_after_the_refresh_time(storage):
    study = make_study(storage, FINALS[:2])  # two references: fewer than min_completed_trials
    hopeless = scores(9.0, 0.0)
    pruner = DominatedTrialPruner(OBJECTIVES, SETTINGS, refresh_seconds=3600)
    trial = running_trial(study)
    pruner(trial, 3, hopeless, {})
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[0.7, 0.85], user_attrs={"history": curve(0.7, 0.85)}
        )
    )
    pruner(trial, 4, hopeless, {})  # the same trial within the refresh time: the third reference is not read yet
    with pytest.raises(optuna.TrialPruned):
        pruner(running_trial(study), 4, hopeless, {})  # the next trial reads storage again
    always = DominatedTrialPruner(OBJECTIVES, SETTINGS, refresh_seconds=0)
    late = running_trial(make_study(storage, FINALS[:2]))
    always(late, 3, hopeless, {})
    late.study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[0.7, 0.85], user_attrs={"history": curve(0.7, 0.85)}
        )
    )
    with pytest.raises(optuna.TrialPruned):
        always(late, 4, hopeless, {})


def test_the_members_of_a_population_share_one_read_of_storage(storage):
    study = make_study(storage, FINALS[:2])  # two references: fewer than min_completed_trials
    hopeless = scores(9.0, 0.0)
    pruner = DominatedTrialPruner(OBJECTIVES, SETTINGS, refresh_seconds=3600)
    first, second, outside = running_trial(study), running_trial(study), running_trial(study)
    pruner.run_together([first.number, second.number])
    pruner(first, 3, hopeless, {})
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[0.7, 0.85], user_attrs={"history": curve(0.7, 0.85)}
        )
    )
    pruner(second, 3, hopeless, {})  # within the refresh time of the population's read: the third is not read yet
    with pytest.raises(optuna.TrialPruned):
        pruner(outside, 3, hopeless, {})  # not a member: it reads storage


def test_references_are_compared_at_the_weights_they_kept():
    # a reference that overfits after epoch 3 and kept epoch 3's weights (training.checkpoint best):
    # at later epochs it stands where it would have stopped, not where its last weights drifted
    values = [0.9, 0.6, 0.3, 0.5, 0.8]
    history = [{"epoch": e, "validation": scores(v, 0.9), "kept_epoch": min(e, 3)} for e, v in enumerate(values, 1)]
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, values=[0.3, 0.9], user_attrs={"history": history}
    )
    curve_of = learning_curve(OBJECTIVES, trial)
    assert [curve_of[e][0] for e in range(1, 6)] == pytest.approx([0.9, 0.6, 0.3, 0.3, 0.3])
    # without kept_epoch (studies from before the option) the epoch's own values are used
    plain = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE,
        values=[0.8, 0.9],
        user_attrs={"history": [{k: v for k, v in h.items() if k != "kept_epoch"} for h in history]},
    )
    assert [learning_curve(OBJECTIVES, plain)[e][0] for e in range(1, 6)] == pytest.approx(values)


def test_a_reference_counts_with_what_it_had_after_as_many_steps():
    curve_ = {1: (3.0,), 2: (2.0,), 3: (1.0,)}
    steps = {1: 10, 2: 20, 3: 30}
    assert vector_at_budget(curve_, steps, epoch=2, at_steps=25, budget="steps") == (
        2.0,
    )  # its epoch 2 ended within 25 steps
    assert vector_at_budget(curve_, steps, epoch=2, at_steps=100, budget="steps") == (
        1.0,
    )  # all of it, with fewer steps
    assert vector_at_budget(curve_, steps, epoch=2, at_steps=5, budget="steps") is None  # not one epoch within 5 steps
    assert vector_at_budget(curve_, None, epoch=2, at_steps=25, budget="steps") is None  # recorded before step counts
    assert vector_at_budget(curve_, steps, epoch=2, at_steps=25, budget="epochs") == (2.0,)
    with pytest.raises(UserError, match="budget 'seconds'"):
        PruningSettings(budget="seconds")


def test_the_steps_budget_spares_a_trial_that_is_behind_only_in_epochs(storage):
    # references: 10 steps per epoch (a small batch); the running trial: 5 (twice the batch)
    study = make_study(storage, FINALS, steps_per_epoch=10)
    by_epochs = DominatedTrialPruner(OBJECTIVES, SETTINGS)
    by_steps = DominatedTrialPruner(OBJECTIVES, dataclasses.replace(SETTINGS, budget="steps"))
    # at its 6th epoch (30 steps) it has what the references had at their 3rd (30 steps), not their 6th
    behind_in_epochs = scores(0.6 + 0.1 * 6, 0.88 - 0.02 * 6)
    trial = running_trial(study)
    with pytest.raises(optuna.TrialPruned, match="dominated at epoch 6 by"):
        by_epochs(trial, 5, behind_in_epochs, {"steps": 30})
    by_steps(running_trial(study), 5, behind_in_epochs, {"steps": 30})  # level with them at 30 steps: goes on
    with pytest.raises(optuna.TrialPruned, match=r"dominated at epoch 6 \(30 steps\) by"):
        by_steps(running_trial(study), 5, scores(3.0, 0.3), {"steps": 30})  # behind at equal steps too


def test_references_without_step_counts_do_not_count_for_the_steps_budget(storage):
    study = make_study(storage, FINALS)  # histories recorded before step counts
    by_steps = DominatedTrialPruner(OBJECTIVES, dataclasses.replace(SETTINGS, budget="steps"))
    by_steps(running_trial(study), 5, scores(3.0, 0.3), {"steps": 30})  # no references: never pruned


def test_a_continued_study_keeps_its_rule_unless_the_space_or_command_line_names_one():
    from mtl_search.search.pruning import with_pruning_options, with_study_pruning, with_study_rule
    from mtl_search.search.space import parse_space

    study = optuna.create_study()
    space = parse_space(
        {"families": {"tree": {}}, "loss_weighting": {"static": {}}}
    )  # names no rule: the default, projected
    assert with_study_rule(space, study) is space  # nothing stored: a new study
    # a study stored with the median rule (every space stored since the option names its rule) stays on it, with its defaults
    study.set_user_attr(
        "mtl_search", {"space": parse_space({"families": {"tree": {}}, "pruning": {"rule": "median"}}).to_data()}
    )
    kept = with_study_rule(space, study).pruning
    assert (kept.rule, kept.margin, kept.min_dominators, kept.min_dominator_fraction, kept.warmup_fraction) == (
        "median",
        0.05,
        2,
        0.5,
        0.0,
    )
    # what the space file sets stays; a rule named by the file or the command line wins
    tuned = parse_space({"families": {"tree": {}}, "pruning": {"margin": 0.1}})
    assert (with_study_rule(tuned, study).pruning.rule, with_study_rule(tuned, study).pruning.margin) == ("median", 0.1)
    assert with_study_rule(with_pruning_options(space, rule="projected"), study).pruning.rule == "projected"
    # a study stored before the rule and the budget existed: the median rule, at equal epochs
    study.set_user_attr("mtl_search", {"space": {"pruning": {"warmup_epochs": 2}}})
    old = with_study_pruning(space, study).pruning
    assert (old.rule, old.budget, old.min_dominator_fraction) == ("median", "epochs", 0.5)
    study.set_user_attr("mtl_search", {"space": space.to_data()})  # stored since: as the space says
    assert with_study_pruning(space, study).pruning == space.pruning


def test_a_search_continued_without_a_rule_prunes_by_the_study_s_rule(tiny_synthetic, storage):
    from mtl_search.search.runner import SearchSettings, run_search
    from mtl_search.search.space import parse_space

    section = {
        "warmup_epochs": 1,
        "min_completed_trials": 1,
        "margin": 0.0,
        "min_dominators": 1,
        "min_dominator_fraction": 0.0,
    }
    base = {
        "training": {"epochs": 4, "batch_size": 128},
        "families": {"tree": {"depth": 1, "width": 8}},
        "loss_weighting": {"static": {}},
    }
    study = run_search(
        tiny_synthetic,
        parse_space(base | {"pruning": section | {"rule": "median"}}),
        SearchSettings("kept-rule", n_trials=0, save_artifacts=False),
        storage=storage,
    )
    perfect = [
        {"epoch": e, "steps": e, "validation": {"task1": {"mse": 0.0}, "task2": {"mse": 0.0}}} for e in range(1, 5)
    ]
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=[0.0, 0.0], user_attrs={"history": perfect}
        )
    )
    # continued with a space that names no rule (the default would be projected)
    study = run_search(
        tiny_synthetic,
        parse_space(base | {"pruning": section}),
        SearchSettings("kept-rule", n_trials=1, save_artifacts=False),
        storage=storage,
    )
    reason = study.trials[-1].user_attrs["prune_reason"]
    assert reason.startswith("dominated at epoch 2") and "projected" not in reason


def test_a_study_stored_before_the_budget_option_keeps_pruning_at_equal_epochs():
    from mtl_search.search.pruning import with_study_budget
    from mtl_search.search.space import parse_space

    study = optuna.create_study()
    space = parse_space({"families": {"tree": {}}, "loss_weighting": {"static": {}}})
    study.set_user_attr("mtl_search", {"space": {"pruning": {"warmup_epochs": 2}}})  # no budget key
    assert with_study_budget(space, study).pruning.budget == "epochs"
    named = parse_space({"families": {"tree": {}}, "loss_weighting": {"static": {}}, "pruning": {"budget": "steps"}})
    assert with_study_budget(named, study).pruning.budget == "steps"  # the space file names it: as written
    study.set_user_attr("mtl_search", {"space": space.to_data()})  # stored with the option: the default
    assert with_study_budget(space, study).pruning.budget == "steps"


def test_a_power_law_curve_is_projected_to_its_last_epoch():
    curve = [(2.0 * t**-0.5, 3.0) for t in range(1, 9)]  # one objective falls, one is flat
    assert projected_final(curve, 32) == pytest.approx((2.0 * 32**-0.5, 3.0))
    # a rising curve, a value that is not positive or a single epoch projects no gain
    assert projected_final([(1.0, 0.0), (2.0, 0.0)], 10) == (2.0, 0.0)
    assert projected_final([(1.0, 1.0)], 10) == (1.0, 1.0)
    # only the later epochs count: an early plunge followed by a plateau projects the plateau
    assert projected_final([(9.0,), (9.0,), (1.0,), (1.0,), (1.0,), (1.0,)], 12) == (1.0,)
    # a negative or NaN value cannot be a power law: no projection, so the rule never prunes
    assert projected_final([(2.0, -1.0), (1.0, -2.0)], 10) is None
    assert projected_final([(2.0, 1.0), (1.0, float("nan"))], 10) is None


PROJECTED = dataclasses.replace(SETTINGS, rule="projected")


def test_the_live_pruner_and_the_replay_stop_the_same_trials_at_the_same_epoch(storage):
    """The same projected rule in both places: random falling curves, each checked live
    against the three references (after each epoch, as the objective does) and replayed."""
    study = make_study(storage, FINALS)
    references = [
        (n, [minimised_vector(OBJECTIVES, entry["validation"], {}) for entry in curve(*final)])
        for n, final in enumerate(FINALS)
    ]
    rng = np.random.default_rng(0)
    # a warm-up of 3 of the 10 epochs, in both places; no complete-share floor: each replay sees one
    # trial, while the live study piles up its pruned ones (the floor has tests of its own below)
    settings = dataclasses.replace(PROJECTED, warmup_fraction=0.3, min_complete_share=0.0)
    stopped_live = []
    for n in range(40):
        # falling to a floor, with 20 % noise from epoch to epoch, on both objectives
        start, rate, floor = rng.uniform(1.0, 3.0), rng.uniform(0.0, 1.5), rng.uniform(0.4, 1.2)
        mse = [(floor + start * t**-rate) * rng.uniform(0.8, 1.2) for t in range(1, EPOCHS + 1)]
        error = [0.1 * (floor + start * t**-rate) * rng.uniform(0.8, 1.2) for t in range(1, EPOCHS + 1)]
        values = [scores(m, 1 - e) for m, e in zip(mse, error)]
        pruner, trial, stopped = DominatedTrialPruner(OBJECTIVES, settings), running_trial(study), None
        for epoch, epoch_scores in enumerate(values):
            try:
                pruner(trial, epoch, epoch_scores, {})
            except optuna.TrialPruned:
                stopped = epoch + 1
                break
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # pruned or not, never a reference
        stopped_live.append(stopped)
        running = [minimised_vector(OBJECTIVES, epoch_scores, {}) for epoch_scores in values]
        kept, epochs = replay([*references, (99, running)], settings)
        assert (99 in kept, epochs - 3 * EPOCHS) == (stopped is None, stopped or EPOCHS), n
    # both outcomes occur, so the comparison means something
    assert None in stopped_live and any(stopped_live)


def steep(t: int) -> dict:
    """Behind a reference at epochs 3 to 5 (all three at epoch 3), but falling as (t/5)^-1.5: at epoch 10 it
    projects to MSE 0.37 and AUC error 0.074, ahead of every reference's final values."""
    fall = (t / 5) ** -1.5
    return scores(1.05 * fall, 1 - 0.21 * fall)


def test_the_projected_rule_keeps_a_trial_that_is_behind_but_falling_fast(storage):
    study = make_study(storage, FINALS)
    trial = running_trial(study)
    pruner = DominatedTrialPruner(OBJECTIVES, PROJECTED)
    for epoch in range(9):
        pruner(trial, epoch, steep(epoch + 1), {})
    # the same values stop it at epoch 5 under the median rule (here: one dominator suffices)
    with pytest.raises(optuna.TrialPruned, match="at epoch 5 by 1 of 3 completed trials"):
        DominatedTrialPruner(OBJECTIVES, SETTINGS)(running_trial(study), 4, steep(5), {})


def test_the_projected_rule_stops_a_flat_trial_and_says_why(storage):
    study = make_study(storage, FINALS)
    trial = running_trial(study)
    pruner = DominatedTrialPruner(OBJECTIVES, PROJECTED)
    for epoch in range(4):  # not yet behind the references at epochs 3 and 4
        pruner(trial, epoch, scores(1.05, 0.79), {})
    reason = reason_when_pruned(pruner, trial, 4, scores(1.05, 0.79))
    assert reason.endswith("projected to epoch 10, still dominated by the final values of 3 (0, 1, 2)")


def test_the_projected_rule_never_prunes_without_the_whole_curve(storage):
    # a pruner that did not see epochs 1 to 4 of this trial cannot project it
    study = make_study(storage, FINALS)
    DominatedTrialPruner(OBJECTIVES, PROJECTED)(running_trial(study), 4, scores(9.0, 0.0), {})


def test_the_warm_up_can_be_a_share_of_the_planned_epochs(storage):
    study = make_study(storage, FINALS)
    hopeless = scores(9.0, 0.0)
    # 40 planned epochs and a share of 1/8: nothing is pruned before epoch 6
    pruner = DominatedTrialPruner(OBJECTIVES, dataclasses.replace(SETTINGS, warmup_fraction=0.125))
    trial = running_trial(study, epochs=40)
    for epoch in range(5):
        pruner(trial, epoch, hopeless, {})
    with pytest.raises(optuna.TrialPruned, match="at epoch 6 by"):
        pruner(trial, 5, hopeless, {})
    # the epochs still count when the share is smaller
    with pytest.raises(optuna.TrialPruned, match="at epoch 3 by"):
        pruner(running_trial(study, epochs=8), 2, hopeless, {})


def test_a_space_section_and_the_settings_have_the_same_fields():
    # settings_from_section passes the section's fields through by name
    from mtl_search.search.space import PruningSpace

    assert {f.name for f in dataclasses.fields(PruningSettings)} == set(PruningSpace.model_fields)


def test_the_projected_rule_follows_each_member_of_a_population_checked_in_turn(storage):
    # a population's members report their epochs interleaved: each keeps its own learning curve
    study = make_study(storage, FINALS)
    flat, falling = running_trial(study), running_trial(study)
    pruner = DominatedTrialPruner(OBJECTIVES, PROJECTED)
    for epoch in range(4):
        pruner(flat, epoch, scores(1.05, 0.79), {})
        pruner(falling, epoch, steep(epoch + 1), {})
    reason = reason_when_pruned(pruner, flat, 4, scores(1.05, 0.79))
    assert reason.endswith("projected to epoch 10, still dominated by the final values of 3 (0, 1, 2)")
    for epoch in range(4, 9):
        pruner(falling, epoch, steep(epoch + 1), {})  # behind, but falling fast: kept


def test_pruning_pauses_while_too_few_finished_trials_trained_to_the_end(storage):
    # 3 complete references; a third of the finished trials must stay complete
    study = make_study(storage, FINALS)
    settings = dataclasses.replace(SETTINGS, min_complete_share=1 / 3)
    outcomes = []
    for _ in range(8):
        trial = running_trial(study)
        try:
            DominatedTrialPruner(OBJECTIVES, settings)(trial, 4, scores(2.0, 0.6), {})  # clearly dominated
            study.tell(trial, [2.0, 0.6])  # trained to the end: completes
            outcomes.append("complete")
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            outcomes.append("pruned")
    # 3 complete allow 6 pruned (3 >= (3 + 6) / 3), then one completes, which allows 2 more pruned
    assert outcomes == ["pruned"] * 6 + ["complete"] + ["pruned"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) / len([t for t in study.trials if t.state.is_finished()]) >= 1 / 3


def test_without_the_floor_every_dominated_trial_is_pruned(storage):
    study = make_study(storage, FINALS)
    settings = dataclasses.replace(SETTINGS, min_complete_share=0.0)
    for _ in range(8):
        trial = running_trial(study)
        reason_when_pruned(DominatedTrialPruner(OBJECTIVES, settings), trial, 4, scores(2.0, 0.6))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)


@pytest.mark.parametrize(
    ("complete", "pruned", "share", "allowed"),
    [(3, 5, 1 / 3, True), (3, 6, 1 / 3, False), (1, 0, 0.5, True), (1, 1, 0.5, False), (0, 9, 0.0, True)],
)
def test_keeps_complete_share(complete, pruned, share, allowed):
    from mtl_search.search.pruning import keeps_complete_share

    assert keeps_complete_share(complete, pruned, share) is allowed


def test_the_replay_keeps_the_floor_as_the_live_pruner_does():
    # three good trials, then eight that are far behind from the first epoch on
    good = [
        (n, [minimised_vector(OBJECTIVES, e["validation"], {}) for e in curve(*final)])
        for n, final in enumerate(FINALS)
    ]
    bad = [(10 + n, [minimised_vector(OBJECTIVES, e["validation"], {}) for e in curve(3.0, 0.5)]) for n in range(8)]
    floor = dataclasses.replace(SETTINGS, min_complete_share=1 / 3)
    kept, _ = replay([*good, *bad], floor)
    assert kept == [0, 1, 2, 16]  # the seventh bad trial trains to the end, as in the live test above
    kept, _ = replay([*good, *bad], dataclasses.replace(floor, min_complete_share=0.0))
    assert kept == [0, 1, 2]


def test_a_deep_ensemble_is_compared_with_ensembles_of_as_many_members_only(storage):
    # an ensemble's recorded epochs are its first member's: single networks are no reference for it
    study = make_study(storage, FINALS)
    pruner = DominatedTrialPruner(OBJECTIVES, SETTINGS)
    ensemble = study.ask()
    ensemble.set_user_attr("candidate", {"architecture": {"ensemble": {"members": 4}}, "training": {"epochs": EPOCHS}})
    for epoch in range(EPOCHS - 1):
        pruner(ensemble, epoch, scores(2.0, 0.6), {})  # far behind the three single networks, never pruned
    # ... and a single network is not compared with ensembles
    for mse, auc in [(0.1, 0.99)] * 3:
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE,
                values=[mse, auc],
                user_attrs={"history": curve(mse, auc), "candidate": {"architecture": {"ensemble": {"members": 4}}}},
            )
        )
    pruner = DominatedTrialPruner(OBJECTIVES, SETTINGS)
    single = running_trial(study)
    pruner(single, 4, scores(0.95, 0.81), {})  # behind the ensembles, level with the single networks
    assert reason_when_pruned(pruner, running_trial(study), 4, scores(2.0, 0.6)).startswith(
        "dominated at epoch 5 by 3 of 3 completed trials (0, 1, 2;"
    )
    later = study.ask()
    later.set_user_attr("candidate", {"architecture": {"ensemble": {"members": 4}}, "training": {"epochs": EPOCHS}})
    assert "(4, 5, 6;" in reason_when_pruned(pruner, later, 4, scores(2.0, 0.6))
