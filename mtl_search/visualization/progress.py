"""Hypervolume of the front over the trials: how the search improved and whether it levelled off."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go


def hypervolume_figure(study: optuna.Study) -> go.Figure | None:
    """None when this installation has no hypervolume module."""
    try:
        from mtl_search.search.hypervolume import hypervolume_history
    except ImportError:
        return None
    history = hypervolume_history(study)
    figure = go.Figure(
        go.Scatter(
            x=[h["trial"] for h in history],
            y=[h["hypervolume"] for h in history],
            mode="lines+markers",
            line={"shape": "hv"},
            name="hypervolume",
        )
    )
    figure.update_layout(
        title="Hypervolume of the front after each trial (objectives min-max normalised, reference 1.1)",
        xaxis_title="trial",
        yaxis_title="hypervolume",
        template="plotly_white",
        height=360,
    )
    return figure
