"""The bundled space files for the sharing-structure families: they load, sample and run."""

import optuna
import pytest

from mtl_search.architectures import build_model
from mtl_search.search.bundled import SPACES_DIR
from mtl_search.search.space import load_space
from mtl_search.tasks import Task

FAMILY_FILES = {
    "branching": {"tree", "ltb"},
    "experts": {"mmoe", "ple", "dselect_k", "adatt"},
    "soft_sharing": {"cross_stitch", "sluice", "mtan"},
}


def test_default_space_offers_every_sharing_family():
    assert {"tree", "mmoe", "ple", "cross_stitch", "sluice"} <= set(load_space("default").families)


@pytest.mark.parametrize("name", ["default", *FAMILY_FILES])
def test_sampled_candidates_build_and_run(name):
    import torch

    space = load_space(name)
    tasks = [Task(name=f"task{i + 1}", kind="regression") for i in range(3)]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        spec = space.sample(trial, [t.name for t in tasks])["architecture"]
        model = build_model(spec, {"kind": "vector", "size": 10}, tasks)
        assert set(model({"x": torch.randn(4, 10)})) == {t.name for t in tasks}
        seen.add(spec["family"])
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    if name in FAMILY_FILES:
        assert seen == FAMILY_FILES[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILY_FILES))
def test_cli_run_completes_with_each_family_file(cli, storage_url, name):
    result = cli(
        "run",
        "--space",
        str(SPACES_DIR / f"{name}.yaml"),
        "--trials",
        "3",
        "--epochs",
        "2",
        "--storage",
        storage_url,
        "--data-option",
        "rows=600",
        "--quiet",
    )
    assert result.code == 0, result
    study = optuna.load_study(study_name=f"synthetic-{name}", storage=storage_url)
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 3
    for trial in trials:
        assert trial.user_attrs["summary"].split()[0] in FAMILY_FILES[name]
        assert len(trial.user_attrs["history"]) == 2


def test_all_methods_offers_every_family_and_every_weighting():
    from mtl_search.architectures import family_names
    from mtl_search.weighting import method_names

    space = load_space("all_methods")
    assert sorted(space.families) == family_names()
    assert sorted(space.loss_weighting) == sorted(method_names())


def test_a_family_the_data_cannot_feed_is_left_out_of_a_space_with_others_with_a_warning():
    space = load_space("all_methods")
    with pytest.warns(UserWarning, match=r"family stem cannot read vector inputs; left out of this search"):
        space.check_stem({"kind": "vector", "size": 10}, "synthetic")
    assert "stem" not in space.families and "tree" in space.families
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    families = {space.sample(study.ask(), ["task1", "task2"])["architecture"]["family"] for _ in range(60)}
    assert "stem" not in families and len(families) > 5


def test_a_space_of_only_families_the_data_cannot_feed_is_refused():
    from mtl_search.errors import UserError
    from mtl_search.search.space import parse_space

    space = parse_space({"families": {"stem": {}}})
    with pytest.raises(UserError, match=r"family stem reads tabular inputs only, but the data has vector inputs"):
        space.check_stem({"kind": "vector", "size": 10}, "synthetic")


@pytest.mark.slow
def test_cli_run_of_all_methods_on_the_default_data(cli, storage_url):
    result = cli(
        "run", "--space", "all_methods", "--trials", "4", "--epochs", "1", "--storage", storage_url,
        "--data-option", "rows=400", "--quiet",
    )  # fmt: skip
    assert result.code == 0, result
    assert "family stem cannot read vector inputs; left out of this search" in result.err
    assert "Traceback" not in result.err
