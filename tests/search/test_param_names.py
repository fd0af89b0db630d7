"""A study continued with another space: parameters whose distribution changed get names the
study can store, enqueued values still apply, and unchanged ones keep their names."""

import optuna
import pytest

from mtl_search.search.param_names import RenamingTrial, renamed, study_distributions


def study_with(names_and_choices):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    for name, choices in names_and_choices:
        trial.suggest_categorical(name, choices)
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)
    study.tell(trial, 1.0)
    return study


def test_a_changed_distribution_gets_its_own_name_and_an_unchanged_one_keeps_its_name():
    study = study_with([("family", ["tree", "mmoe"]), ("weighting", ["static"])])
    plain = study.ask()
    with pytest.raises(ValueError, match="dynamic value space"):  # what Optuna does without the renaming
        plain.suggest_categorical("family", ["ple", "mmoe"])
    trial = RenamingTrial(study.ask(), study_distributions(study))
    assert trial.suggest_categorical("family", ["ple", "mmoe"]) in ("ple", "mmoe")
    trial.suggest_categorical("weighting", ["static"])  # same choices: same name
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)  # a range that moved: same name
    trial.suggest_float("dropout", 0.0, 0.5)  # new: its own name
    with pytest.raises(ValueError):
        RenamingTrial(study.ask(), {}).suggest_float("lr", 1e-4, 1e-1)  # unknown to the map: Optuna's own check stays
    name = renamed("family", optuna.distributions.CategoricalDistribution(["ple", "mmoe"]))
    assert set(trial.params) == {name, "weighting", "lr", "dropout"}
    assert trial.number == 2 and trial.study is study  # everything else is the trial's own
    # the same space gets the same name again, and a third space another one
    again = RenamingTrial(study.ask(), study_distributions(study))
    again.suggest_categorical("family", ["ple", "mmoe"])
    third = RenamingTrial(study.ask(), study_distributions(study))
    third.suggest_categorical("family", ["sluice"])
    assert name in again.params and len({name, *third.params}) == 2


def test_a_value_enqueued_under_the_original_name_is_used_under_the_new_one():
    study = study_with([("family", ["tree", "mmoe"])])
    study.enqueue_trial({"family": "ple"})
    trial = RenamingTrial(study.ask(), study_distributions(study))
    assert trial.suggest_categorical("family", ["ple", "cross_stitch", "sluice"]) == "ple"
