"""Figure axes that show what the figure is for: the front, and the differences between families."""

from __future__ import annotations

import json
import warnings

import optuna

from mtl_search.records.attributes import STUDY_ATTR
from mtl_search.search.study import pareto_trials
from mtl_search.visualization.families import family_figure
from mtl_search.visualization.pareto import axis_ranges, pareto_figure

TASKS = ["income", "never_married"]
COMPLETED = [
    ("mmoe", 0.9425, 0.9921),
    ("mmoe", 0.9401, 0.9937),
    ("tree", 0.9412, 0.9930),
    ("ple", 0.9389, 0.9935),
    ("tree", 0.9380, 0.9918),
    ("cross_stitch", 0.9398, 0.9915),
    ("tree", 0.9340, 0.9902),
]
NEAR_PRUNED = (0.9330, 0.9890)
FAR_PRUNED = (0.6120, 0.7805)  # pruned after its first epoch


def two_auc_study(pruned=(NEAR_PRUNED, FAR_PRUNED), completed=COMPLETED) -> optuna.Study:
    study = optuna.create_study(directions=["maximize"] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"{t}/auc" for t in TASKS])
    study.set_user_attr(
        STUDY_ATTR,
        {
            "data": {"source": "census", "options": {}},
            "tasks": [{"name": t, "kind": "binary", "n_classes": 2, "metrics": ["auc"], "given": None} for t in TASKS],
            "input_schema": {"kind": "vector", "size": 4},
            "objectives": [{"task": t, "metric": "auc", "direction": "maximize"} for t in TASKS],
            "space": {"families": {}},
            "preprocessing": {},
        },
    )
    for family, income, married in completed:
        attrs = {"candidate": {"architecture": {"family": family}}, "summary": family}
        study.add_trial(optuna.trial.create_trial(values=[income, married], user_attrs=attrs))
    for income, married in pruned:
        validation = {"income": {"auc": income}, "never_married": {"auc": married}}
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.PRUNED, user_attrs={"validation": validation, "summary": "tree"}
            )
        )
    return study


def plotted(figure) -> dict:
    return json.loads(figure.to_json())


def test_the_front_figure_fits_the_front_not_a_far_off_pruned_trial():
    study = two_auc_study()
    figure = plotted(pareto_figure(study))
    x_low, x_high = figure["layout"]["xaxis"]["range"]
    y_low, y_high = figure["layout"]["yaxis"]["range"]
    for trial in pareto_trials(study):
        assert x_low < trial.values[0] < x_high and y_low < trial.values[1] < y_high
    for _, income, married in COMPLETED:  # the dominated trials near the front are inside too
        assert x_low < income < x_high and y_low < married < y_high
    assert x_low < NEAR_PRUNED[0] and y_low < NEAR_PRUNED[1]
    assert FAR_PRUNED[0] < x_low and FAR_PRUNED[1] < y_low
    # the front fills the axes: its width is a fair share of the range, not a corner
    front_width = max(t.values[0] for t in pareto_trials(study)) - min(t.values[0] for t in pareto_trials(study))
    assert front_width > 0.1 * (x_high - x_low)
    # the far-off trial is still drawn, on the edge, pointing its way, with its own values to hover
    pruned = next(trace for trace in figure["data"] if trace["name"].startswith("pruned"))
    assert list(zip(pruned["x"], pruned["y"])) == [NEAR_PRUNED]
    far = next(trace for trace in figure["data"] if trace["name"] == "far off, drawn at the edge")
    assert (far["x"], far["y"], far["customdata"]) == ([x_low], [y_low], [list(FAR_PRUNED)])
    assert far["marker"]["symbol"] == ["triangle-left"]
    assert far["text"][0].startswith(f"trial {len(COMPLETED) + 1} (pruned)")


def test_without_far_off_trials_every_point_is_inside_and_nothing_is_moved():
    study = two_auc_study(pruned=[NEAR_PRUNED])
    figure = plotted(pareto_figure(study))
    x_low, x_high = figure["layout"]["xaxis"]["range"]
    y_low, y_high = figure["layout"]["yaxis"]["range"]
    for trace in figure["data"]:
        assert all(x_low < x < x_high for x in trace["x"]) and all(y_low < y < y_high for y in trace["y"])
    assert [trace["name"] for trace in figure["data"]] == ["pruned (last validation)", "dominated", "Pareto front"]


def test_a_front_of_one_point_still_shows_the_trials_around_it():
    front = [[0.94, 0.99]]
    others = [[0.93, 0.985], [0.935, 0.98], [0.92, 0.975], [0.3, 0.2]]
    (x_low, x_high), (y_low, y_high) = axis_ranges(front, others)
    assert x_low < 0.92 and 0.94 < x_high and y_low < 0.975 and 0.99 < y_high
    assert x_low > 0.3 and y_low > 0.2
    assert axis_ranges([], others) is None
    (low, high), _ = axis_ranges(front, [])
    assert low < 0.94 < high


def test_the_families_chart_shows_the_differences_between_close_values():
    figure = plotted(family_figure(two_auc_study()))
    for axis, index in (("yaxis", 1), ("yaxis2", 2)):
        low, high = figure["layout"][axis]["range"]
        best = {family: max(row[index] for row in COMPLETED if row[0] == family) for family, *_ in COMPLETED}
        assert 0 < low < min(best.values()) and max(best.values()) < high
        assert max(best.values()) - min(best.values()) > 0.3 * (high - low)  # differences visible


def test_the_families_chart_starts_at_zero_when_values_are_far_apart():
    completed = [("mmoe", 0.9, 0.95), ("tree", 0.3, 0.5)]
    figure = plotted(family_figure(two_auc_study(pruned=[], completed=completed)))
    assert "range" not in figure["layout"]["yaxis"] and "range" not in figure["layout"]["yaxis2"]


def test_a_trial_far_off_on_one_axis_does_not_stretch_the_other():
    front = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]
    others = [[3.5, 3.5], [3.2, 3.2], [3.8, 3.1], [40.0, 3.9]]
    (x_low, x_high), (y_low, y_high) = axis_ranges(front, others)
    assert x_low < 1.0 and 3.8 < x_high < 40.0
    assert y_low < 1.0 and 3.5 < y_high < 3.9


def test_a_cloud_of_trials_reaching_away_from_the_front_is_shown_whole():
    # pruned trials spread evenly from the front to far away: no gap, so no outlier
    front = [[0.0, 1.0], [1.0, 0.0]]
    others = [[1.0 + 0.5 * k, 1.0 + 0.5 * k] for k in range(1, 40)]
    (_, x_high), (_, y_high) = axis_ranges(front, others)
    assert x_high > 20.5 and y_high > 20.5
