"""The Pareto front figure: a scatter for two objectives, a scatter matrix and parallel
coordinates for more. Dominated and pruned trials are drawn faded behind the front."""

from __future__ import annotations

import math

import optuna
import plotly.graph_objects as go

from mtl_search.records.objective import Objective
from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import pareto_trials, study_objectives

FRONT_COLOUR = "#d62728"
OTHER_COLOUR = "rgba(120,120,120,0.35)"
PRUNED_COLOUR = "rgba(120,120,200,0.25)"


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
        add_reference_traces(figure, study, objectives, [p for group in groups for p in group[3]])
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
