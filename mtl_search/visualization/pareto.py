"""The Pareto front figure: a scatter for two objectives, a scatter matrix and parallel
coordinates for more. Dominated trials are drawn faded behind the front."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go

from mtl_search.search.study import pareto_trials, study_objectives

FRONT_COLOUR = "#d62728"
OTHER_COLOUR = "rgba(120,120,120,0.35)"
PRUNED_COLOUR = "rgba(120,120,200,0.25)"


def pareto_figure(study: optuna.Study) -> go.Figure:
    objectives = study_objectives(study)
    names = [o.name for o in objectives]
    front = pareto_trials(study)
    front_numbers = {t.number for t in front}
    others = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.number not in front_numbers]

    def hover(trials):
        return [f"trial {t.number}<br>{t.user_attrs.get('summary', '')}" for t in trials]

    def labels(index):
        o = objectives[index]
        return f"{o.name} ({'higher' if o.direction == 'maximize' else 'lower'} is better)"

    if len(names) == 2:
        figure = go.Figure()
        for trials, colour, label in ((others, OTHER_COLOUR, "dominated"), (sorted(front, key=lambda t: t.values[0]), FRONT_COLOUR, "Pareto front")):
            figure.add_trace(go.Scatter(
                x=[t.values[0] for t in trials], y=[t.values[1] for t in trials],
                mode="markers+lines" if label == "Pareto front" else "markers",
                line={"shape": "hv", "dash": "dot"} if label == "Pareto front" else None,
                marker={"color": colour, "size": 10 if label == "Pareto front" else 7},
                name=label, text=hover(trials), hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>",
            ))
        figure.update_layout(xaxis_title=labels(0), yaxis_title=labels(1))
    else:
        everything = front + others
        figure = go.Figure(go.Splom(
            dimensions=[{"label": n, "values": [t.values[i] for t in everything]} for i, n in enumerate(names)],
            marker={"color": [FRONT_COLOUR if t.number in front_numbers else OTHER_COLOUR for t in everything], "size": 7},
            text=hover(everything), diagonal_visible=False, showupperhalf=False,
        ))
    figure.update_layout(title=f"Study {study.study_name}: Pareto front ({len(front)} trials)", template="plotly_white")
    return figure


def parallel_coordinates_figure(study: optuna.Study) -> go.Figure:
    """One line per front trial across every objective (for three or more tasks)."""
    objectives = study_objectives(study)
    front = pareto_trials(study)
    return go.Figure(go.Parcoords(
        line={"color": list(range(len(front))), "colorscale": "Viridis"},
        dimensions=[{"label": o.name, "values": [t.values[i] for t in front]} for i, o in enumerate(objectives)],
    ))
