"""The Pareto front figure: a scatter for two objectives, a scatter matrix and parallel
coordinates for more. Dominated and pruned trials are drawn faded behind the front.

The scatter's axes fit the front (:func:`axis_ranges`): a trial pruned after one epoch, or
one that never learned, would otherwise squeeze the front into a corner. Such trials are
drawn at the axes' edge as triangles pointing their way, and their hover text gives their
values.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import plotly.graph_objects as go

from mtl_search.records.objective import Objective
from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import pareto_trials, study_objectives

FRONT_COLOUR = "#d62728"
OTHER_COLOUR = "rgba(120,120,120,0.35)"
PRUNED_COLOUR = "rgba(120,120,200,0.25)"
# A gap of more than this many times the front's width on an axis (or the other trials' lower-
# quartile distance from it, when larger) between the front and a trial leaves the trial off the axis.
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
        ranges = axis_ranges(groups[-1][3], groups[0][3] + groups[1][3])
        fit_axes(figure, ranges)
        shown = [p for group in groups for p in group[3] if within(p, ranges)]
        add_reference_traces(figure, study, objectives, shown)
        show_references(figure, ranges)
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
        add_reference_traces(figure, study, objectives, [])
    figure.update_layout(title=f"Study {study.study_name}: Pareto front ({n_front} trials)", template="plotly_white")
    return figure


# the reference models of `mtl-search baselines`, by the label analysis/references.py gives them
REFERENCE_STYLES = {
    "single-task network": ("#1f77b4", "diamond", "single-task networks"),
    "LightGBM": ("#2ca02c", "square", "LightGBM per task"),
}
REFERENCE_NAMES = {name for _, _, name in REFERENCE_STYLES.values()}


def add_reference_traces(
    figure: go.Figure, study: optuna.Study, objectives: list[Objective], points: list[list[float]]
) -> None:
    """The study's stored reference models (validation): a marker where every objective has a
    value; with two objectives and one value known (LightGBM has no parameter count), a dashed
    line at that value across the ``points`` drawn; nothing where none is known."""
    from mtl_search.analysis.references import reference_points
    from mtl_search.records.references import ReferenceRecord

    for label, point in reference_points(ReferenceRecord.read(study), objectives).items():
        colour, symbol, name = REFERENCE_STYLES.get(label, ("#555555", "x", label))
        text = f"{name} (validation)<br>" + "<br>".join(
            f"{o.name}: {v:.4g}" for o, v in zip(objectives, point) if v is not None
        )
        if all(v is not None for v in point):
            if len(objectives) == 2:
                figure.add_trace(
                    go.Scatter(
                        x=[point[0]],
                        y=[point[1]],
                        mode="markers",
                        marker={"color": colour, "symbol": symbol, "size": 13, "line": {"color": "white", "width": 1}},
                        name=name,
                        text=[text],
                        hovertemplate="%{text}<extra></extra>",
                    )
                )
            else:
                figure.add_trace(
                    go.Splom(
                        dimensions=[{"label": o.name, "values": [v]} for o, v in zip(objectives, point)],
                        marker={"color": colour, "symbol": symbol, "size": 11},
                        name=name,
                        text=[text],
                        diagonal_visible=False,
                        showupperhalf=False,
                    )
                )
        elif len(objectives) == 2 and points and any(v is not None for v in point):
            known = 0 if point[0] is not None else 1
            other = [p[1 - known] for p in points]
            ends = [min(other), max(other)]
            line = {"x": [point[0]] * 2, "y": ends} if known == 0 else {"x": ends, "y": [point[1]] * 2}
            figure.add_trace(
                go.Scatter(
                    **line,
                    mode="lines",
                    line={"color": colour, "dash": "dash", "width": 2},
                    name=name,
                    text=[text, text],
                    hovertemplate="%{text}<extra></extra>",
                )
            )


def axis_ranges(front: list[list[float]], others: list[list[float]]) -> list[tuple[float, float]] | None:
    """Per objective, the (low, high) its axis shows: every front point and the other trials
    (dominated or pruned) near the front, with a margin. None without a front.

    Near on an axis: taken in order of distance from the front's extent, each trial is within a
    step of the front or of a nearer trial, the step being ``OUTLIER_REACH`` times the front's
    width on the axis or the others' lower-quartile distance, whichever is larger (so that a
    front of one point still shows the trials around it); a gap wider than a step leaves the
    rest out. A trial sets the range only when it is near on every axis: one far off on one
    axis would otherwise stretch the others too.
    """
    if not front:
        return None
    extents = []
    for axis in range(len(front[0])):
        low = min(point[axis] for point in front)
        high = max(point[axis] for point in front)
        distances = sorted(max(low - point[axis], point[axis] - high, 0.0) for point in others)
        outside = [distance for distance in distances if distance > 0]
        step = OUTLIER_REACH * max(high - low, float(np.percentile(outside, 25)) if outside else 0.0)
        reached = 0.0
        for distance in distances:
            if distance > reached + step:
                break
            reached = distance
        extents.append((low - reached, high + reached))
    near = [point for point in others if all(low <= value <= high for value, (low, high) in zip(point, extents))]
    ranges = []
    for axis in range(len(front[0])):
        values = [point[axis] for point in front + near]
        low, high = min(values), max(values)
        margin = AXIS_MARGIN * (high - low) if high > low else 0.05 * abs(high) or 0.05
        ranges.append((low - margin, high + margin))
    return ranges


def within(point: list[float], ranges: list[tuple[float, float]] | None) -> bool:
    """Whether ``point`` lies inside the axis ``ranges`` (None: no ranges, everything does)."""
    return ranges is None or all(low <= value <= high for value, (low, high) in zip(point, ranges))


def show_references(figure: go.Figure, ranges: list[tuple[float, float]] | None) -> None:
    """Widen the axis ``ranges`` to the reference traces (single-task networks, LightGBM): the
    comparison they exist for must stay in view, however far they lie from the front."""
    if ranges is None:
        return
    (x_low, x_high), (y_low, y_high) = ranges
    for trace in figure.data:
        if trace.name not in REFERENCE_NAMES or trace.x is None:
            continue
        x_low, x_high = min(x_low, *trace.x), max(x_high, *trace.x)
        y_low, y_high = min(y_low, *trace.y), max(y_high, *trace.y)
    if (x_low, x_high, y_low, y_high) != (*ranges[0], *ranges[1]):
        margin_x, margin_y = AXIS_MARGIN * (x_high - x_low), AXIS_MARGIN * (y_high - y_low)
        figure.update_xaxes(range=[x_low - margin_x, x_high + margin_x])
        figure.update_yaxes(range=[y_low - margin_y, y_high + margin_y])


def fit_axes(figure: go.Figure, ranges: list[tuple[float, float]] | None) -> None:
    """Set the scatter's axis ranges and move the points outside them to one trace of their own,
    drawn on the edge as triangles pointing their way, with their values in the hover."""
    if ranges is None:
        return
    (x_low, x_high), (y_low, y_high) = ranges
    far: dict[str, list] = {"x": [], "y": [], "symbol": [], "colour": [], "text": [], "values": []}
    for trace in list(figure.data):
        if not isinstance(trace, go.Scatter) or trace.x is None:
            continue
        inside = [x_low <= x <= x_high and y_low <= y <= y_high for x, y in zip(trace.x, trace.y)]
        if all(inside):
            continue
        texts = list(trace.text) if isinstance(trace.text, (list, tuple)) else [trace.text] * len(inside)
        for x, y, text, kept in zip(trace.x, trace.y, texts, inside):
            if kept:
                continue
            far["x"].append(min(max(x, x_low), x_high))
            far["y"].append(min(max(y, y_low), y_high))
            far["symbol"].append(
                "triangle-left"
                if x < x_low
                else "triangle-right"
                if x > x_high
                else "triangle-down"
                if y < y_low
                else "triangle-up"
            )
            far["colour"].append(trace.marker.color)
            far["text"].append(text)
            far["values"].append([x, y])
        trace.update(
            x=[x for x, kept in zip(trace.x, inside) if kept],
            y=[y for y, kept in zip(trace.y, inside) if kept],
            text=[text for text, kept in zip(texts, inside) if kept],
        )
    if far["x"]:
        figure.add_trace(
            go.Scatter(
                x=far["x"],
                y=far["y"],
                mode="markers",
                # outlined: a faded pruned point on the edge would be lost in the corner
                marker={
                    "symbol": far["symbol"],
                    "color": far["colour"],
                    "size": 12,
                    "line": {"width": 1.5, "color": "#555"},
                },
                name="far off, drawn at the edge",
                text=far["text"],
                customdata=far["values"],
                hovertemplate="%{text}<br>%{customdata[0]:.4g}, %{customdata[1]:.4g}<extra></extra>",
                cliponaxis=False,
            )
        )
    figure.update_xaxes(range=[x_low, x_high])
    figure.update_yaxes(range=[y_low, y_high])


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
