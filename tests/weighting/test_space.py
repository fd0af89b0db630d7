"""The weighting sections of space files: bundled files load, samples build, bad values are named."""

import optuna
import pytest

from mtl_search.errors import UserError
from mtl_search.search.space import load_space, parse_space
from mtl_search.weighting import make_weighting, method_names


# the methods built on torchjd, which the jd extras bring
JACOBIAN_METHODS = ["aligned_mtl", "cagrad", "config", "dualproj", "graddrop", "imtl", "nash_mtl", "upgrad"]


def test_loss_weights_space_searches_every_method_a_plain_install_has():
    assert sorted(load_space("loss_weights").loss_weighting) == sorted(set(method_names()) - set(JACOBIAN_METHODS))


def test_all_weightings_space_searches_every_method():
    assert sorted(load_space("all_weightings").loss_weighting) == method_names()


def test_default_space_searches_the_cheap_methods():
    # gradient-based methods cost 1.3-2.3x per epoch (docs/explanation/loss-weighting.md); the default keeps run time short
    assert sorted(load_space("default").loss_weighting) == ["dwa", "static", "uncertainty"]


def test_all_weightings_space_samples_every_method_with_its_hyperparameters():
    space = load_space("all_weightings")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(250):  # enough random draws to reach every method
        trial = study.ask()
        weighting = space.sample(trial, ["task1", "task2"])["loss_weighting"]
        seen.setdefault(weighting["method"], weighting)
        make_weighting(weighting, ["task1", "task2"])  # every sample builds
        study.tell(trial, 0.0)
    assert sorted(seen) == method_names()
    assert 0.0 <= seen["gradnorm"]["alpha"] <= 3.0
    assert 0.5 <= seen["dwa"]["temperature"] <= 5.0
    assert seen["mgda"]["normalization"] in ("none", "l2", "loss")
    assert -1.0 <= seen["uncertainty"]["initial_log_variance"] <= 1.0
    assert 5e-3 <= seen["famo"]["lr"] <= 0.1 and seen["famo"]["weight_decay"] == 1e-3
    assert seen["rlw"]["distribution"] in ("normal", "uniform", "dirichlet")
    assert 0.1 <= seen["stch"]["mu"] <= 2.0 and seen["stch"]["warmup_epochs"] == 1
    assert seen["gls"] == {"method": "gls"}
    assert 0.0 <= seen["graddrop"]["leak"] <= 0.5
    assert seen["aligned_mtl"]["scale_mode"] in ("min", "median", "rmse")
    assert seen["imtl"]["loss_scaling"] in (True, False)
    assert 0.1 <= seen["cagrad"]["c"] <= 0.9
    assert 0.5 <= seen["db_mtl"]["beta"] <= 0.99 and 0.0 <= seen["db_mtl"]["beta_decay"] <= 1.0
    assert 1e-3 <= seen["gradvac"]["beta"] <= 0.5


def test_an_empty_section_searches_the_documented_defaults():
    space = parse_space({"families": {"tree": {}}, "loss_weighting": {"db_mtl": {}, "gradvac": {}}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {}
    for _ in range(20):
        weighting = space.sample(study.ask(), ["task1", "task2"])["loss_weighting"]
        seen[weighting["method"]] = weighting
    assert seen == {
        "db_mtl": {"method": "db_mtl", "beta": 0.9, "beta_decay": 0.5},
        "gradvac": {"method": "gradvac", "beta": 0.01},
    }


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"dwa": {"temperature": {"low": 0.0, "high": 2.0}}}, "loss_weighting.dwa.temperature"),
        ({"gradnorm": {"alpha": -1.0}}, "loss_weighting.gradnorm.alpha"),
        ({"mgda": {"normalization": {"choices": ["l2", "max"]}}}, "loss_weighting.mgda.normalization"),
        ({"pcgrad": {"seed": 3}}, "loss_weighting.pcgrad.seed"),
        # a negative static weight trains that task by gradient ascent
        (
            {"static": {"weights": {"low": -2.0, "high": -1.0}}},
            "loss_weighting.static.weights: must be more than 0, got -2",
        ),
        (
            {"static": {"weights": {"low": 0.0, "high": 1.0}}},
            "loss_weighting.static.weights: must be more than 0, got 0",
        ),
        ({"softmax": {}}, "loss_weighting.softmax"),
    ],
)
def test_a_bad_weighting_value_names_its_key(section, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")) as error:
        parse_space({"families": {"tree": {}}, "loss_weighting": section})
    assert "\n" not in str(error.value)
