"""Refining the front with more seeds: the same candidate retrained, mean and spread recorded."""

from __future__ import annotations

import pytest

from mtl_search.analysis.front import front_rows
from mtl_search.analysis.refine import refine_front, refine_trial, refined_record, summarise_runs
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.search.study import pareto_trials


def test_summary_is_mean_sample_std_and_count():
    runs = [{"a": {"mse": 1.0}}, {"a": {"mse": 2.0}}, {"a": {"mse": 3.0}}]
    assert summarise_runs(runs) == {"a": {"mse": {"mean": 2.0, "std": 1.0, "n": 3}}}


def test_refine_retrains_the_front_and_pareto_rows_carry_it(tiny_synthetic, storage_url):
    space = parse_space(
        {
            "training": {"epochs": 2, "batch_size": 128},
            "families": {"tree": {"depth": 1, "width": {"choices": [8, 16]}}},
            "loss_weighting": {"static": {}},
        }
    )
    study = run_search(
        tiny_synthetic, space, SearchSettings("refine", storage=storage_url, n_trials=2, save_artifacts=False)
    )
    front = pareto_trials(study)
    trial = front[0]
    # retraining with the trial's own seed reproduces its validation metrics: the exact candidate is used
    again = refine_trial(trial, tiny_synthetic, [trial.user_attrs["candidate"]["training"]["seed"]])
    for task, metrics in trial.user_attrs["validation"].items():
        assert again["validation"][task]["mse"]["mean"] == pytest.approx(metrics["mse"], rel=1e-5)
        assert again["validation"][task]["mse"]["std"] == pytest.approx(0.0, abs=1e-6)

    records = refine_front(study, tiny_synthetic, seeds=2)
    assert set(records) == {t.number for t in front}
    record = refined_record(study, trial.number)
    assert record["seeds"] == [0, 1, 2]
    # fewer seeds afterwards keep the larger record and train nothing
    calls = []
    assert refine_front(study, tiny_synthetic, seeds=1, on_trial=lambda *call: calls.append(call)) == records
    assert calls and all(retrained is False for _, _, retrained in calls)
    assert refined_record(study, trial.number) == record
    stats = record["validation"]["task1"]["mse"]
    assert stats["n"] == 3 and stats["std"] > 0
    assert record["test"]["task2"]["mse"]["n"] == 3
    # the front is still the search's own (validation) front; rows show the refinement
    assert [t.number for t in pareto_trials(study)] == [t.number for t in front]
    assert all(row["refined"] == refined_record(study, row["number"]) for row in front_rows(study))
    # the CSV carries them too, beside the search's own run
    import csv
    import io

    from mtl_search.cli.pareto import front_csv

    rows = {int(r["number"]): r for r in csv.DictReader(io.StringIO(front_csv(study)))}
    assert float(rows[trial.number]["task1/mse mean"]) == pytest.approx(stats["mean"])
    assert rows[trial.number]["task1/mse n"] == "3" and float(rows[trial.number]["task1/mse"]) == trial.values[0]


def test_a_seed_that_diverges_is_recorded_and_the_others_are_summarised(tiny_synthetic, storage_url):
    # plain SGD at a learning rate on the edge of stability: some seeds diverge, others train
    space = parse_space(
        {
            "training": {"epochs": 2, "batch_size": 64, "learning_rate": 0.7, "optimizer": "sgd"},
            "families": {"tree": {"depth": 1, "width": 16}},
            "tower": {"depth": 0},
            "loss_weighting": {"static": {}},
        }
    )
    study = run_search(
        tiny_synthetic, space, SearchSettings("edge", storage=storage_url, n_trials=1, save_artifacts=False, seed=0)
    )
    (trial,) = pareto_trials(study)
    record = refine_front(study, tiny_synthetic, seeds=5)[trial.number]
    diverged = record.get("diverged", [])
    assert diverged and len(record["seeds"]) > 1  # both kinds, or the test shows nothing
    assert sorted(record["seeds"][1:] + [d["seed"] for d in diverged]) == [1, 2, 3, 4, 5]
    assert all("non-finite" in d["reason"] or "blew up" in d["reason"] for d in diverged)
    assert record["validation"]["task1"]["mse"]["n"] == len(record["seeds"])
    # asked again for as many seeds, nothing is retrained: a diverged seed counts as tried
    calls = []
    refine_front(study, tiny_synthetic, seeds=5, on_trial=lambda *call: calls.append(call))
    assert calls == [(trial.number, record, False)]
