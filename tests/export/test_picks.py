"""Which trial each --pick rule chooses, on a study built by hand so the answer is known."""

from __future__ import annotations

import warnings

import optuna
import pytest

from mtl_search.errors import UserError
from mtl_search.export import find_trial, pick_trial
from mtl_search.records.attributes import STUDY_ATTR
from tests.helpers import assert_one_line_error

OBJECTIVES = [
    {"task": "ctr", "metric": "auc", "direction": "maximize"},
    {"task": "price", "metric": "mse", "direction": "minimize"},
]


def constructed_study(storage: str | None = None) -> optuna.Study:
    """Front (ctr auc up, price mse down): 0 = (0.90, 4.0), 1 = (0.80, 2.0), 2 = (0.60, 1.0);
    3 is dominated by 1, 4 failed, 5 pruned."""
    study = optuna.create_study(study_name="hand-made", storage=storage, directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["ctr/auc", "price/mse"])
    study.set_user_attr(
        STUDY_ATTR, {"objectives": OBJECTIVES, "tasks": [], "input_schema": {"kind": "vector", "size": 3}}
    )
    for values in ((0.90, 4.0), (0.80, 2.0), (0.60, 1.0), (0.70, 3.0)):
        study.add_trial(optuna.trial.create_trial(values=list(values), user_attrs={"summary": "tree"}))
    study.add_trial(
        optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "diverged"})
    )
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    return study


@pytest.mark.parametrize(
    "rule, expected",
    [
        # normalised over the front: 0 -> (1, 0), 1 -> (2/3, 2/3), 2 -> (0, 1); 1 is nearest to (1, 1)
        ("knee", 1),
        ("best:ctr", 0),
        ("best:price", 2),
        ("weights:ctr=1,price=0", 0),
        ("weights:ctr=1,price=1", 1),  # sums 1, 4/3, 1
        ("weights:ctr=1,price=3", 2),  # sums 1, 8/3, 3
        ("weights:price/mse=1", 2),  # an objective named in full
    ],
)
def test_each_rule_picks_the_expected_front_trial(rule, expected):
    assert pick_trial(constructed_study(), rule).number == expected


@pytest.mark.parametrize(
    "rule, fragment",
    [
        ("best:nope", "no task 'nope'"),
        ("weights:ctr=-1", "weight >= 0"),
        ("weights:ctr=0", "positive weight"),
        ("middle", "expected knee"),
        ("weights:ctr=1,ctr=2", "ctr/auc is weighted twice"),  # not silently the last one
    ],
)
def test_bad_rules_name_the_problem(rule, fragment):
    with pytest.raises(UserError, match=fragment):
        pick_trial(constructed_study(), rule)


def test_an_unknown_task_lists_the_tasks_and_no_cost_objective():
    from mtl_search.export.picks import primary_index
    from mtl_search.records.objective import Objective

    objectives = [Objective(**o) for o in OBJECTIVES] + [Objective("", "params", "minimize", kind="cost")]
    with pytest.raises(UserError) as error:
        primary_index(objectives, "nope", "best:nope")
    assert str(error.value).endswith("(tasks: ctr, price)")


def test_failed_and_pruned_trials_are_refused_with_their_reason():
    study = constructed_study()
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL, user_attrs={"fail_reason": "CUDA error\nat line 3"}
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, user_attrs={"prune_reason": "params 9000 > 5000"}
        )
    )
    assert find_trial(study, 3).number == 3  # dominated but complete: fine
    advice = "; export a COMPLETE trial (see mtl-search pareto hand-made)"
    for number, message in (
        (4, "trial 4 failed (diverged)"),
        (5, "trial 5 was pruned"),
        (6, "trial 6 failed (no heartbeat for the grace period: its worker died or was killed)"),
        (7, "trial 7 failed (CUDA error)"),
        (8, "trial 8 was pruned (params 9000 > 5000)"),
    ):
        with pytest.raises(UserError) as error:
            find_trial(study, number)
        assert str(error.value) == message + advice


def test_export_cli_refuses_failed_and_pruned_trials_with_one_line(cli, storage_url, tmp_path):
    constructed_study(storage_url)
    result = cli("export", "hand-made", "--trial", "4", "--storage", storage_url, "--out", str(tmp_path / "out"))
    assert_one_line_error(
        result, "trial 4 failed (diverged); export a COMPLETE trial (see mtl-search pareto hand-made)"
    )
    result = cli("export", "hand-made", "--trial", "5", "--storage", storage_url, "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "trial 5 was pruned; export a COMPLETE trial")
    assert not (tmp_path / "out").exists()


def test_export_trial_refuses_a_failed_trial_in_the_same_words(tmp_path):
    from mtl_search.export import export_trial

    study = constructed_study()
    with pytest.raises(UserError, match=r"^trial 4 failed \(diverged\); export a COMPLETE trial"):
        export_trial(study, study.trials[4], tmp_path / "out", artifact_dir=None)
    assert not (tmp_path / "out").exists()


def test_a_trial_number_given_as_text_is_refused_as_such():
    with pytest.raises(UserError, match="--trial '3': a trial number is a whole number \\(an int\\), got str"):
        find_trial(constructed_study(), "3")


def refine(study: optuna.Study, number: int, auc: tuple[float, float], mse: tuple[float, float], seeds: int = 4):
    """Store a refine record for trial ``number``: (mean, sd) over ``seeds`` seeds per metric."""
    from mtl_search.records.attributes import REFINED_PREFIX

    study.set_user_attr(
        f"{REFINED_PREFIX}{number}",
        {
            "seeds": list(range(seeds)),
            "validation": {
                "ctr": {"auc": {"mean": auc[0], "std": auc[1], "n": seeds}},
                "price": {"mse": {"mean": mse[0], "std": mse[1], "n": seeds}},
            },
            "test": {},
        },
    )


def test_without_refine_the_pick_says_it_rests_on_one_seed_and_the_noise_is_unmeasured():
    from mtl_search.export.picks import explain_pick

    study = constructed_study()
    line = explain_pick(study, pick_trial(study, "knee"), "knee")
    assert line.startswith("pick knee: trial 1 rests on one training seed")
    assert "not measured (mtl-search refine hand-made measures it)" in line


def test_with_some_trials_refined_the_gaps_of_the_front_are_put_in_seed_sds():
    from mtl_search.export.picks import explain_pick

    study = constructed_study()
    refine(study, 1, (0.80, 0.05), (2.0, 0.5))
    line = explain_pick(study, pick_trial(study, "knee"), "knee")
    # front auc 0.60, 0.80, 0.90: neighbouring gaps 0.2 and 0.1, median 0.15 = 3 sds of 0.05;
    # mse 1, 2, 4: gaps 1 and 2, median 1.5 = 3 sds of 0.5
    assert "rests on one training seed" in line
    assert "median of ctr/auc 3, price/mse 3 seed sds apart (seed noise measured by refine on 1 trial(s))" in line


def test_after_refine_the_rules_read_the_seed_means():
    study = constructed_study()
    # on seed means trial 0 has the worse auc of the front: best:ctr moves to trial 1
    for number, auc in ((0, 0.70), (1, 0.85), (2, 0.60)):
        refine(study, number, (auc, 0.01), (study.trials[number].values[1], 0.0))
    assert pick_trial(study, "best:ctr").number == 1


def test_after_refine_the_pick_says_how_often_it_holds_within_the_seed_noise():
    from mtl_search.export.picks import explain_pick

    study = constructed_study()
    # tiny noise: best:ctr is trial 0 in every redraw; huge noise on auc: it often is not
    for number in (0, 1, 2):
        refine(study, number, (study.trials[number].values[0], 0.001), (study.trials[number].values[1], 0.0))
    line = explain_pick(study, pick_trial(study, "best:ctr"), "best:ctr")
    assert line == (
        "pick best:ctr: trial 0 on the seed means of 4 training seeds (refine); "
        "it stays the pick in 100% of 1000 redraws of the front within its seed noise"
    )
    for number in (0, 1, 2):
        refine(study, number, (study.trials[number].values[0], 0.5), (study.trials[number].values[1], 0.0))
    held = explain_pick(study, pick_trial(study, "best:ctr"), "best:ctr")
    share = int(held.split("stays the pick in ")[1].split("%")[0])
    assert 20 < share < 80


def test_export_prints_how_far_the_pick_can_be_trusted(cli, trained_study, tmp_path):
    db, name, _ = trained_study
    result = cli("export", name, "--storage", db, "--pick", "knee", "--out", str(tmp_path / "model"))
    assert "pick knee: trial" in result.out and "training seed" in result.out
