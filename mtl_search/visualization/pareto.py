"""The Pareto front figure: a scatter for two objectives, a scatter matrix and parallel
coordinates for more. Dominated and pruned trials are drawn faded behind the front.

The scatter's axes fit the front (:func:`axis_ranges`): a trial pruned after one epoch, or
one that never learned, would otherwise squeeze the front into a corner. Such trials are
drawn at the axes' edge as triangles pointing their way, and their hover text gives their
values.
"""

from __future__ import annotations

import math
import statistics

import optuna
import plotly.graph_objects as go

from mtl_search.records.objective import Objective
from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import pareto_trials, study_objectives

FRONT_COLOUR = "#d62728"
OTHER_COLOUR = "rgba(120,120,120,0.35)"
PRUNED_COLOUR = "rgba(120,120,200,0.25)"
# A gap of more than this many times the front's width on an axis (or the other trials' median
# distance from it, when larger) between the front and a trial leaves the trial off the axis.
OUTLIER_REACH = 3.0
AXIS_MARGIN = 0.06  # of the axis's span, on each side, so that edge markers are not cut


def trial_point(trial: optuna.trial.FrozenTrial, objectives: list[Objective]) -> list[float] | None:
    """The trial's objective values; for a pruned trial, its last validation scores (or None)."""
    if trial.state == optuna.trial.TrialState.COMPLETE and trial.values:
        return list(trial.values)
    last = TrialRecord.read(trial, only=("validation",)).validation
    point = [last.get(o.task, {}).get(o.metric, math.nan) for o in objectives]
    return point if all(isinstance(v, (int, float)) and math.isfinite(v) for v in point) else None


def _hover(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    summaries = [TrialRecord.read(t, only=("summary",)).summary for t in trials]
    return [f"trial {t.number} ({t.state.name.lower()})<br>{summary}" for t, summary in zip(trials, summaries)]


def _axis_label(objective: Objective) -> str:
    return f"{objective.name} ({'higher' if objective.direction == 'maximize' else 'lower'} is better)"


def _groups(
    study: optuna.Study,
) -> tuple[list[Objective], list[tuple[str, str, list[optuna.trial.FrozenTrial], list[list[float]]]]]:
    """(objectives, [(label, colour, trials, points)]) for pruned, dominated and front trials."""
    objectives = study_objectives(study)
    front = pareto_trials(study)
    front_numbers = {t.number for t in front}
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    groups = []
    for label, colour, keep in (
        ("pruned (last validation)", PRUNED_COLOUR, lambda t: t.state == optuna.trial.TrialState.PRUNED),
        # a repeat (search/objective.py) sits exactly on its original's point
        (
            "dominated",
            OTHER_COLOUR,
            lambda t: (
                t.state == optuna.trial.TrialState.COMPLETE
                and t.number not in front_numbers
                and TrialRecord.read(t, only=("repeat_of",)).repeat_of is None
            ),
        ),
        ("Pareto front", FRONT_COLOUR, lambda t: t.number in front_numbers),
    ):
        chosen, points = [], []
        for trial in study.get_trials(deepcopy=False, states=states):
            point = trial_point(trial, objectives) if keep(trial) else None
            if point is not None:
                chosen.append(trial)
                points.append(point)
        groups.append((label, colour, chosen, points))
    return objectives, groups


def pareto_figure(study: optuna.Study) -> go.Figure:
    objectives, groups = _groups(study)
    n_front = len(groups[-1][2])
    if len(objectives) == 2:
        figure = go.Figure()
        for label, colour, trials, points in groups:
            is_front = label == "Pareto front"
            if is_front:  # sorted so that the staircase line runs along the front
                order = sorted(range(len(points)), key=lambda i: points[i][0])
                trials, points = [trials[i] for i in order], [points[i] for i in order]
            figure.add_trace(
                go.Scatter(
                    x=[p[0] for p in points],
                    y=[p[1] for p in points],
                    mode="markers+lines" if is_front else "markers",
                    line={"shape": "hv", "dash": "dot"} if is_front else None,
                    marker={"color": colour, "size": 10 if is_front else 7},
                    name=label,
                    text=_hover(trials),
                    hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>",
                )
            )
        figure.update_layout(xaxis_title=_axis_label(objectives[0]), yaxis_title=_axis_label(objectives[1]))
        fit_axes(figure, axis_ranges(groups[-1][3], groups[0][3] + groups[1][3]))
    else:
        figure = go.Figure()
        for label, colour, trials, points in groups:
            figure.add_trace(
                go.Splom(
                    dimensions=[{"label": o.name, "values": [p[i] for p in points]} for i, o in enumerate(objectives)],
                    marker={"color": colour, "size": 8 if label == "Pareto front" else 6},
                    name=label,
                    text=_hover(trials),
                    diagonal_visible=False,
                    showupperhalf=False,
                )
            )
    figure.update_layout(title=f"Study {study.study_name}: Pareto front ({n_front} trials)", template="plotly_white")
    return figure


def axis_ranges(front: list[list[float]], others: list[list[float]]) -> list[tuple[float, float]] | None:
    """Per objective, the (low, high) its axis shows: every front point, and the other trials
    (dominated or pruned) near the front on that axis, with a margin. None without a front.

    Near: taken in order of distance from the front's extent, each trial is within a step of
    the front or of a nearer trial, the step being ``OUTLIER_REACH`` times the front's width on
    the axis or the others' median distance, whichever is larger (so that a front of one point
    still shows the trials around it). A gap wider than a step leaves the rest off the axis.
    """
    if not front:
        return None
    ranges = []
    for axis in range(len(front[0])):
        low = min(point[axis] for point in front)
        high = max(point[axis] for point in front)
        distances = sorted((max(low - point[axis], point[axis] - high, 0.0), point[axis]) for point in others)
        outside = [distance for distance, _ in distances if distance > 0]
        step = OUTLIER_REACH * max(high - low, statistics.median(outside) if outside else 0.0)
        reached = 0.0
        for distance, value in distances:
            if distance > reached + step:
                break
            reached = distance
            low, high = min(low, value), max(high, value)
        margin = AXIS_MARGIN * (high - low) if high > low else 0.05 * abs(high) or 0.05
        ranges.append((low - margin, high + margin))
    return ranges


def fit_axes(figure: go.Figure, ranges: list[tuple[float, float]] | None) -> None:
    """Set the scatter's axis ranges; a point outside them is drawn on the edge as a triangle
    pointing its way. Hover texts read the values from ``customdata``, so they stay the trial's."""
    if ranges is None:
        return
    (x_low, x_high), (y_low, y_high) = ranges
    outside = 0
    for trace in figure.data:
        if not isinstance(trace, go.Scatter) or trace.x is None:
            continue
        xs, ys = list(trace.x), list(trace.y)
        symbols = []
        for index, (x, y) in enumerate(zip(xs, ys)):
            symbol = (
                "triangle-left"
                if x < x_low
                else "triangle-right"
                if x > x_high
                else "triangle-down"
                if y < y_low
                else "triangle-up"
                if y > y_high
                else "circle"
            )
            outside += symbol != "circle"
            symbols.append(symbol)
            xs[index], ys[index] = min(max(x, x_low), x_high), min(max(y, y_low), y_high)
        if all(symbol == "circle" for symbol in symbols):
            continue
        template = trace.hovertemplate or "%{x}, %{y}<extra></extra>"
        size = trace.marker.size if isinstance(trace.marker.size, (int, float)) else 7
        edge = [symbol != "circle" for symbol in symbols]
        trace.update(
            customdata=[[x, y] for x, y in zip(trace.x, trace.y)],
            hovertemplate=template.replace("%{x", "%{customdata[0]").replace("%{y", "%{customdata[1]"),
            x=xs,
            y=ys,
            marker_symbol=symbols,
            # larger and outlined: a faded pruned point on the edge would be lost in the corner
            marker_size=[size + 5 if moved else size for moved in edge],
            marker_line={"width": [1.5 if moved else 0 for moved in edge], "color": "#555"},
            cliponaxis=False,
        )
    figure.update_xaxes(range=[x_low, x_high])
    figure.update_yaxes(range=[y_low, y_high])
    if outside:
        figure.add_annotation(
            text=f"{outside} trial(s) far from the front drawn at the edge as triangles; hover for their values",
            xref="paper",
            yref="paper",
            x=0,
            y=1.0,
            xanchor="left",
            yanchor="bottom",
            showarrow=False,
            font={"size": 11, "color": "#666"},
        )


def parallel_coordinates_figure(study: optuna.Study) -> go.Figure:
    """One line per front trial across every objective (for three or more tasks)."""
    objectives = study_objectives(study)
    front = pareto_trials(study)
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": [t.number for t in front],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "trial"},
            },
            dimensions=[
                {"label": _axis_label(o), "values": [t.values[i] for t in front]} for i, o in enumerate(objectives)
            ],
        )
    )
    figure.update_layout(title="Pareto front: parallel coordinates (colour = trial number)", template="plotly_white")
    return figure
