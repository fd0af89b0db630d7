"""Mixed precision (training.precision): bf16/fp16 autocast in the training steps, fp32 unchanged."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest
import torch

from mtl_search.errors import UserError
from mtl_search.search.objective import candidate_key
from mtl_search.search.runner import SearchSettings, check_precision_for, run_search
from mtl_search.search.space import parse_space
from mtl_search.training import train_candidate
from mtl_search.training.population import alone_reason, fusion_key, train_population
from mtl_search.training.trainer import checked_training
from tests.training.test_population import (
    ALONE_FAMILIES,
    FAMILY_SPECS,
    TWO,
    WEIGHTINGS,
    candidate,
    population_of,
    tabular_data,
)

# bf16 keeps 8 bits of mantissa: after two epochs a metric moves by up to a percent or two
BF16_REL = 5e-2
SHARED_BOTTOM = {"family": "tree", "widths": [12], "groups": [[TWO]]}  # one representation: MGDA-UB's case
SPLIT_TREE = FAMILY_SPECS["tree"][0]  # towers on different tensors: MGDA on the shared parameters


def with_precision(item: dict[str, Any], precision: str | None) -> dict[str, Any]:
    training = {k: v for k, v in item["training"].items() if k != "precision"}
    if precision is not None:
        training["precision"] = precision
    return item | {"training": training}


def losses_of(result: Any) -> list[float]:
    """Every loss the history records, train and validation, epoch after epoch."""
    values = []
    for record in result.history:
        values += list(record["train_loss"].values()) + [m["loss"] for m in record["validation"].values()]
    return values


def assert_finite_and_near(result: Any, reference: Any, rel: float = BF16_REL) -> None:
    for task, metrics in reference.validation.items():
        for metric, value in metrics.items():
            mine = result.validation[task][metric]
            assert math.isfinite(mine), (task, metric)
            assert mine == pytest.approx(value, rel=rel, abs=rel / 10), (task, metric, mine, value)


def data_for(names: list[str], request: pytest.FixtureRequest):
    if names == FAMILY_SPECS["stem"][1]:  # the stem family reads tables only
        return tabular_data()
    return request.getfixturevalue("tiny_synthetic3" if len(names) == 3 else "tiny_synthetic")


# -- one candidate alone ----------------------------------------------------------------


@pytest.mark.parametrize("family", list(FAMILY_SPECS))
def test_bf16_trains_every_family_near_fp32(family, request):
    spec, names = FAMILY_SPECS[family]
    data = data_for(names, request)
    item = candidate(spec, epochs=2)
    fp32 = train_candidate(data, item)
    bf16 = train_candidate(data, with_precision(item, "bf16"))
    assert_finite_and_near(bf16, fp32)
    assert losses_of(bf16) != losses_of(fp32)  # the autocast did run
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # weights and evaluation stay fp32


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize(
    "method",
    [
        *("static", "dwa", "uncertainty", "gradnorm", "pcgrad", "mgda"),
        *("upgrad", "dualproj", "aligned_mtl", "graddrop", "imtl", "config", "cagrad", "nash_mtl"),
        *("db_mtl", "gradvac"),
    ],
)
@pytest.mark.parametrize("spec", [SHARED_BOTTOM, SPLIT_TREE], ids=["shared-bottom", "split-tree"])
def test_every_weighting_trains_in_16_bits_near_fp32(tiny_synthetic, spec, method, precision):
    item = candidate(spec, {"method": method}, epochs=2)
    if precision == "fp16" and method in ("gradnorm", "nash_mtl", "db_mtl"):
        with pytest.raises(UserError, match=f"training.precision fp16: loss weighting {method}"):
            train_candidate(tiny_synthetic, with_precision(item, precision))
        return
    fp32 = train_candidate(tiny_synthetic, item)
    low = train_candidate(tiny_synthetic, with_precision(item, precision))
    assert_finite_and_near(low, fp32)
    for mine, theirs in zip(low.history, fp32.history):
        assert all(math.isfinite(w) for w in mine["weights"].values())
        assert mine["weights"] == pytest.approx(theirs["weights"], rel=BF16_REL)


def test_fp16_loss_scaling_is_undone_for_the_network_and_the_learned_weights(tiny_synthetic):
    # SGD, unlike Adam, is not blind to the scale of a gradient: gradients left scaled (by 2**16)
    # would blow the network up, and log-variances whose gradients were divided without having
    # been multiplied would barely move
    weighting = {"method": "uncertainty", "initial_log_variance": 2.0}  # far from where the log-variances go
    item = candidate(SHARED_BOTTOM, weighting, epochs=3, optimizer="sgd", learning_rate=0.05)
    fp32 = train_candidate(tiny_synthetic, item)
    fp16 = train_candidate(tiny_synthetic, with_precision(item, "fp16"))
    assert_finite_and_near(fp16, fp32)
    start = fp32.history[0]["weights"]
    moved = [abs(fp32.history[-1]["weights"][t] / start[t] - 1) for t in start]
    assert min(moved) > 0.1  # the learned weights do move: the comparison below can tell
    for task in start:
        assert fp16.history[-1]["weights"][task] == pytest.approx(fp32.history[-1]["weights"][task], rel=1e-2)


# -- fp32 and the default ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["uncertainty", "mgda"])
def test_fp32_written_out_trains_bit_for_bit_as_no_key(tiny_synthetic, method):
    item = with_precision(candidate(SHARED_BOTTOM, {"method": method}, epochs=2), None)
    assert "precision" not in item["training"]
    plain = train_candidate(tiny_synthetic, item)
    explicit = train_candidate(tiny_synthetic, with_precision(item, "fp32"))
    assert explicit.history == [r | {"seconds": e["seconds"]} for r, e in zip(plain.history, explicit.history)]
    assert (explicit.validation, explicit.test) == (plain.validation, plain.test)
    theirs = plain.model.state_dict()
    for name, value in explicit.model.state_dict().items():
        assert torch.equal(value, theirs[name]), name
    assert candidate_key(item) == candidate_key(with_precision(item, "fp32"))
    assert candidate_key(item) != candidate_key(with_precision(item, "bf16"))


@pytest.mark.parametrize("value", ["fp8", "FP16", "half", 16, None])
def test_checked_training_refuses_a_bad_precision(value):
    with pytest.raises(UserError) as caught:
        checked_training(candidate(SHARED_BOTTOM, precision=value))
    message = str(caught.value)
    assert message.startswith(f"training.precision {value!r}: expected one of fp32, bf16, fp16")
    assert "\n" not in message


def test_checked_training_defaults_to_fp32():
    assert checked_training(with_precision(candidate(SHARED_BOTTOM), None))["precision"] == "fp32"


# -- populations ------------------------------------------------------------------------


@pytest.mark.parametrize("family", [family for family in FAMILY_SPECS if family not in ALONE_FAMILIES])
def test_a_bf16_member_trains_as_it_does_alone_in_bf16(family, request):
    spec, names = FAMILY_SPECS[family]
    data = data_for(names, request)
    members = population_of(spec, epochs=2, precision="bf16")
    assert len({fusion_key(c, data) for c in members}) == 1
    fused = train_population(data, members)
    for mine, item in zip(fused, members):
        assert not isinstance(mine, BaseException), mine
        assert mine.population_size == len(members)
        alone = train_candidate(data, item)
        # under vmap a linear layer's bias is added in fp32 (alone: in bf16), so the two round apart
        assert_finite_and_near(mine, alone, rel=3e-2)
        assert mine.kept_epoch == alone.kept_epoch
    fused32 = train_population(data, [with_precision(c, "fp32") for c in members])
    assert losses_of(fused[0]) != losses_of(fused32[0])  # the stacked step ran under the autocast


@pytest.mark.parametrize("method", ["dwa", "uncertainty"])
def test_bf16_members_with_learned_or_adaptive_weights_match_alone(tiny_synthetic, method):
    members = population_of(SHARED_BOTTOM, WEIGHTINGS[method], epochs=2, precision="bf16")
    for mine, item in zip(train_population(tiny_synthetic, members), members):
        alone = train_candidate(tiny_synthetic, item)
        assert mine.population_size == len(members)
        assert_finite_and_near(mine, alone, rel=3e-2)
        assert mine.history[-1]["weights"] == pytest.approx(alone.history[-1]["weights"], rel=3e-2)


def test_precision_is_part_of_the_fusion_key_and_fp16_trains_alone(tiny_synthetic):
    item = candidate(SHARED_BOTTOM)
    keys = {p: fusion_key(with_precision(item, p), tiny_synthetic) for p in ("fp32", "bf16")}
    assert keys["fp32"] is not None and keys["bf16"] is not None and keys["fp32"] != keys["bf16"]
    assert fusion_key(with_precision(item, None), tiny_synthetic) == keys["fp32"]
    assert fusion_key(with_precision(item, "fp16"), tiny_synthetic) is None
    assert "fp16" in alone_reason(with_precision(item, "fp16"), tiny_synthetic)
    members = population_of(SHARED_BOTTOM, epochs=2, precision="fp16")
    for mine, item in zip(train_population(tiny_synthetic, members), members):
        alone = train_candidate(tiny_synthetic, item)
        assert mine.population_size == 1
        assert mine.validation == alone.validation


def test_a_population_mixing_precisions_fuses_each_precision_apart(tiny_synthetic):
    members = population_of(SHARED_BOTTOM, epochs=2)
    members = [with_precision(members[0], "bf16"), with_precision(members[1], "bf16"), members[2]]
    results = train_population(tiny_synthetic, members)
    assert [r.population_size for r in results] == [2, 2, 1]
    assert results[2].validation == train_candidate(tiny_synthetic, members[2]).validation


# -- searches, refine, export -----------------------------------------------------------

TINY_SPACE = {
    "training": {"epochs": 2, "batch_size": 64},
    "tower": {"depth": 1, "width": 8},
    "families": {"tree": {"depth": 1, "width": {"choices": [8, 16]}, "grouping": "partitions"}},
    "loss_weighting": {"static": {}},
}


def search(tiny_synthetic, storage_url: str, name: str, **settings: Any) -> optuna.Study:
    return run_search(
        tiny_synthetic,
        parse_space(TINY_SPACE),
        SearchSettings(study_name=name, storage=storage_url, sampler="random", n_trials=2, **settings),
    )


def test_a_search_stores_the_precision_with_each_candidate_and_none_by_default(tiny_synthetic, storage_url):
    plain = search(tiny_synthetic, storage_url, "plain", save_artifacts=False)
    for trial in plain.get_trials(deepcopy=False):
        assert "precision" not in trial.user_attrs["candidate"]["training"]
    bf16 = search(tiny_synthetic, storage_url, "bf16", precision="bf16", save_artifacts=False)
    for trial in bf16.get_trials(deepcopy=False):
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.user_attrs["candidate"]["training"]["precision"] == "bf16"


@pytest.mark.parametrize("value", ["fp8", "", None])
def test_search_settings_refuse_a_bad_precision_before_anything_is_stored(tiny_synthetic, storage_url, value):
    with pytest.raises(UserError, match=f"^precision {value!r}: expected one of fp32, bf16, fp16$"):
        search(tiny_synthetic, storage_url, "bad", precision=value)
    assert optuna.get_all_study_names(storage_url) == []


def test_fp16_refuses_a_space_offering_gradnorm_before_any_trial(tiny_synthetic, storage_url):
    space = parse_space(TINY_SPACE | {"loss_weighting": {"static": {}, "gradnorm": {}}})
    settings = SearchSettings(study_name="g", storage=storage_url, n_trials=2, precision="fp16")
    with pytest.raises(UserError, match="^precision fp16: the space offers loss weighting gradnorm"):
        run_search(tiny_synthetic, space, settings)
    assert optuna.get_all_study_names(storage_url) == []


@pytest.mark.parametrize(
    "method, reason",
    [
        ("gradnorm", "takes optimiser steps of its own"),
        ("db_mtl", "averages gradients over batches"),
        ("nash_mtl", "gives an update that does not grow with fp16's loss scale"),
    ],
)
def test_the_fp16_refusal_of_a_space_gives_the_weighting_its_own_reason(method, reason):
    if method == "nash_mtl":
        pytest.importorskip("cvxpy")  # the jd-cvxpy extra
    space = parse_space(TINY_SPACE | {"loss_weighting": {"static": {}, method: {}}})
    with pytest.raises(UserError) as refused:
        check_precision_for("fp16", torch.device("cpu"), space)
    assert str(refused.value).startswith(f"precision fp16: the space offers loss weighting {method}, which {reason}")
    assert str(refused.value).endswith(f"; use bf16, or a space without {method}")


def test_refine_and_export_retrain_a_trial_in_its_own_precision(tiny_synthetic, storage_url, tmp_path):
    from mtl_search.analysis.refine import refine_front, refine_trial
    from mtl_search.export import export_trial

    study = search(tiny_synthetic, storage_url, "bf16", precision="bf16", save_artifacts=False)
    trial = study.best_trials[0]
    item = trial.user_attrs["candidate"]
    # export retrains (no stored weights): the exported weights are those of a bf16 run
    export_trial(study, trial, tmp_path / "export", data=tiny_synthetic)
    import mtl_search

    exported = mtl_search.load(tmp_path / "export").state_dict()
    same = train_candidate(tiny_synthetic, item).model.state_dict()
    other = train_candidate(tiny_synthetic, with_precision(item, "fp32")).model.state_dict()
    assert all(torch.equal(exported[name], same[name]) for name in same)
    assert not all(torch.equal(exported[name], other[name]) for name in other)
    # refine: the extra seeds train in the trial's precision, or in the one asked for
    record = refine_trial(trial, tiny_synthetic, [5])
    assert record["precision"] == "bf16"
    seed5 = train_candidate(tiny_synthetic, item | {"training": item["training"] | {"seed": 5}})
    assert record["validation"]["task1"]["loss"]["mean"] == pytest.approx(
        (trial.user_attrs["validation"]["task1"]["loss"] + seed5.validation["task1"]["loss"]) / 2
    )
    assert "precision" not in refine_trial(trial, tiny_synthetic, [5], precision="fp32")  # fp32: the format as before
    first = refine_front(study, tiny_synthetic, 1)
    assert all(r["precision"] == "bf16" for r in first.values())
    retrained = []
    refine_front(study, tiny_synthetic, 1, precision="fp32", on_trial=lambda n, r, again: retrained.append(again))
    assert retrained and all(retrained)  # a record in another precision is not reused
    retrained.clear()
    refine_front(study, tiny_synthetic, 1, precision="fp32", on_trial=lambda n, r, again: retrained.append(again))
    assert retrained and not any(retrained)
