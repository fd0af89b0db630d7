"""The stored reference models on the front figure and in the report."""

from __future__ import annotations

import optuna
import pytest

from mtl_search.records.references import ReferenceModel, ReferenceRecord
from mtl_search.search.runner import SearchSettings, run_search
from mtl_search.search.space import parse_space
from mtl_search.visualization.pareto import pareto_figure
from mtl_search.visualization.report import report_html

SPACE = {"training": {"epochs": 1, "batch_size": 64}, "families": {"tree": {"depth": 1, "width": 8}}}


def _references(task_names, n_params=100):
    """Single-task networks at mse 0.5 + i, LightGBM at 0.25 + i (validation)."""
    return ReferenceRecord(
        single_task={
            t: ReferenceModel(validation={"mse": 0.5 + i}, test={"mse": 0.6 + i}, n_params=n_params)
            for i, t in enumerate(task_names)
        },
        gbdt={
            t: ReferenceModel(validation={"mse": 0.25 + i}, test={"mse": 0.3 + i}, trees=7)
            for i, t in enumerate(task_names)
        },
        sized_like_trial=0,
        parameter_budget=n_params,
    )


def _traces(figure):
    return {trace.name: trace for trace in figure.data}


def test_two_tasks_the_references_are_points_and_the_report_shows_delta_m(tiny_synthetic, storage_url):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = run_search(
        tiny_synthetic,
        parse_space(SPACE),
        SearchSettings("figure", storage=storage_url, n_trials=1, save_artifacts=False),
    )
    assert "single-task networks" not in _traces(pareto_figure(study))
    assert "mtl-search baselines STUDY" in report_html(study)  # says how to get references
    _references(["task1", "task2"]).write(study)
    figure = pareto_figure(study)
    traces = _traces(figure)
    assert list(traces["single-task networks"].x) == [0.5] and list(traces["single-task networks"].y) == [1.5]
    assert list(traces["LightGBM per task"].x) == [0.25] and list(traces["LightGBM per task"].y) == [1.25]
    # the axes fit the front, and widen to keep every reference in view
    (x_low, x_high), (y_low, y_high) = figure.layout.xaxis.range, figure.layout.yaxis.range
    assert x_low < 0.25 and x_high > 0.5 and y_low < 1.25 and y_high > 1.5
    page = report_html(study)
    assert "Δm % (validation)" in page and "<h3>References</h3>" in page and "7 trees" in page
    # the one trial's change on task1 against 0.5, as the report prints it
    value = study.trials[0].values[0]
    assert f"task1 {(0.5 - value) / 0.5 * 100:+.2f}" in page


def test_with_a_parameter_objective_lightgbm_is_a_line_at_its_metric(storage_url):
    from mtl_search.data.table import make_table_data, targets_from_declarations
    from tests.helpers import spend_and_churn

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    data = make_table_data(spend_and_churn(rows=300), targets_from_declarations(["spend:regression"]))
    space = parse_space(SPACE | {"families": {"tree": {"depth": 1, "width": {"choices": [4, 8, 16]}}}})
    space = space.model_copy(update={"objectives": space.objectives.model_copy(update={"extra": ["params"]})})
    study = run_search(data, space, SearchSettings("params", storage=storage_url, n_trials=3, save_artifacts=False))
    record = _references(["spend"], n_params=123)
    record.write(study)
    traces = _traces(pareto_figure(study))
    # the network: a point at its metric and parameter count
    assert list(traces["single-task networks"].x) == [0.5] and list(traces["single-task networks"].y) == [123.0]
    # the trees have no parameter count: a vertical line at their metric, across the trials' parameter counts
    line = traces["LightGBM per task"]
    assert list(line.x) == [0.25, 0.25] and line.mode == "lines"
    counts = [t.values[1] for t in study.trials if t.values]
    assert list(line.y) == pytest.approx([min(counts), max(counts)])
