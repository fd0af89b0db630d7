"""Cost objectives and hard limits: measured before training, infeasible trials off the front."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch

from mtl_search.analysis.front import front_rows
from mtl_search.architectures import build_model
from mtl_search.errors import UserError
from mtl_search.search.costs import CostMeter, count_infeasible, is_feasible, with_cost_options
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.study import objectives_for, pareto_trials
from mtl_search.training import count_parameters


def space(**objectives):
    return parse_space(
        {
            "training": {"epochs": 1, "batch_size": 128},
            "families": {"tree": {"depth": {"low": 1, "high": 2}, "width": {"choices": [8, 64]}}},
            "loss_weighting": {"static": {}},
            "objectives": objectives,
        }
    )


SPEC = {
    "family": "tree",
    "widths": [16],
    "groups": [[["task1", "task2"]]],
    "block": {},
    "tower": {"widths": []},
    "stem": {},
}


def test_meter_counts_parameters_and_times_a_batch(tiny_synthetic):
    model = build_model(SPEC, tiny_synthetic.input_schema, tiny_synthetic.tasks)
    batch = {"x": tiny_synthetic.validation.inputs["x"][:32]}
    costs = CostMeter(objectives=("params", "latency"), timed_passes=3).measure(model, batch)
    assert costs["params"] == count_parameters(model)
    assert costs["latency_ms"] > 0
    assert "latency_ms" not in CostMeter(objectives=("params",)).measure(model, batch)  # not timed unless asked


def test_constraints_are_relative_excess():
    meter = CostMeter(max_params=1000, max_latency_ms=2.0)
    assert meter.constraints({"params": 1500, "latency_ms": 1.0}) == pytest.approx(
        {"max_params": 0.5, "max_latency_ms": -0.5}
    )
    assert (
        meter.describe_violation({"params": 1500, "latency_ms": 1.0})
        == "over limit: 1500 parameters > --max-params 1000"
    )
    assert meter.describe_violation({"params": 999, "latency_ms": 1.0}) is None


def test_cost_objectives_enter_the_study_after_the_tasks(tiny_synthetic):
    objectives = objectives_for(tiny_synthetic.tasks, "primary", ["params", "latency"])
    assert [o.name for o in objectives] == ["task1/mse", "task2/mse", "params", "latency_ms"]
    assert {o.direction for o in objectives[2:]} == {"minimize"}
    with pytest.raises(UserError, match="--objective 'flops'"):
        objectives_for(tiny_synthetic.tasks, "primary", ["flops"])


def test_cli_options_merge_into_the_space():
    merged = with_cost_options(space(extra=["params"]), objectives=["latency", "params"], max_params=500)
    assert merged.objectives.extra == ["params", "latency"]
    assert merged.objectives.max_params == 500


def test_a_limit_keeps_big_candidates_untrained_and_off_the_front(tiny_synthetic, storage_url):
    torch.manual_seed(0)
    # width 8 trees have ~300 parameters, width 64 ones several thousand
    study = run_search(
        tiny_synthetic,
        space(extra=["params"], max_params=1500),
        SearchSettings("limited", storage=storage_url, sampler="random", n_trials=8, save_artifacts=False),
    )
    trials = study.trials
    assert study.metric_names == ["task1/mse", "task2/mse", "params"]
    over = [t for t in trials if not is_feasible(t)]
    assert over and count_infeasible(trials) == len(over)
    for trial in over:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert trial.constraints["max_params"] > 0
        assert trial.user_attrs["prune_reason"].startswith("over limit:")
        assert "history" not in trial.user_attrs  # never trained
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(t.values[2] <= 1500 and t.values[2] == t.user_attrs["n_params"] for t in complete)
    # a complete but infeasible trial that beats everything still stays off the front
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE,
            values=[0.0, 0.0, 1.0],
            system_attrs={"constraints:max_params": 0.2},
            user_attrs={"candidate": {}, "summary": "too big"},
        )
    )
    front = {t.number for t in pareto_trials(study)}
    assert front and front <= {t.number for t in complete}
    assert all(row["summary"] != "too big" for row in front_rows(study))


def test_a_continued_study_keeps_its_limits_or_says_which_flag_to_pass(tiny_synthetic, storage_url):
    def continue_with(**objectives):
        run_search(
            tiny_synthetic,
            space(extra=["params"], **objectives),
            SearchSettings("kept", storage=storage_url, n_trials=0, save_artifacts=False),
        )

    continue_with(max_params=1500)
    # left out, changed or added: trials judged under one limit must not share a front with others
    for objectives, fault in [
        (
            {},
            "judged its trials under --max-params 1500 and this run would judge them under no --max-params; pass --max-params 1500",
        ),
        (
            {"max_params": 6000},
            "under --max-params 1500 and this run would judge them under --max-params 6000; pass --max-params 1500",
        ),
        (
            {"max_params": 1500, "max_latency_ms": 2.5},
            "under no --max-latency-ms and this run would judge them under --max-latency-ms 2.5; "
            "run without --max-latency-ms (or objectives.max_latency_ms)",
        ),
        (
            {"max_latency_ms": 2.5},
            "under --max-params 1500 no --max-latency-ms and this run would judge them under no --max-params "
            "--max-latency-ms 2.5; pass --max-params 1500 and run without --max-latency-ms",
        ),
    ]:
        with pytest.raises(UserError) as error:
            continue_with(**objectives)
        assert str(error.value).startswith("study 'kept' ") and fault in str(error.value), error.value
        assert str(error.value).endswith(", or use another --study-name")
    continue_with(max_params=1500)


def test_trials_trained_without_a_limit_the_study_stores_are_named(tiny_synthetic, storage_url):
    from mtl_search.search.costs import trained_without_limits

    settings = SearchSettings("judged", storage=storage_url, sampler="random", n_trials=2, save_artifacts=False)
    study = run_search(tiny_synthetic, space(extra=["params"], max_params=100_000), settings)
    assert trained_without_limits(study) is None  # each trial was judged under the limit
    # what a run from before continued studies kept their limits left: trials without the
    # study's limit, over it (params counted) or never timed against it (latency)
    unjudged = run_search(tiny_synthetic, space(extra=["params"]), dataclasses.replace(settings, study_name="unjudged"))
    meta = unjudged.user_attrs["mtl_search"]
    meta["space"]["objectives"] |= {"max_params": 100_000, "max_latency_ms": 2.5}
    unjudged.set_user_attr("mtl_search", meta)
    assert trained_without_limits(unjudged) == (
        "trials 0, 1 were trained by a run that left out the study's --max-params 100000 --max-latency-ms 2.5 (before continued "
        "studies kept their limits); over it or not measured against it, they may stand on its front"
    )
    meta["space"]["objectives"] |= {"max_latency_ms": None}
    unjudged.set_user_attr("mtl_search", meta)
    assert trained_without_limits(unjudged) is None  # within the parameter limit
