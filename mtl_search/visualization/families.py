"""Per-family comparison: the best validation value each architecture family reached, per objective."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import study_objectives

# Values closer together than this share of their size: bars from 0 would all look alike.
CLOSE_VALUES = 0.25


def comparison_range(values: list[float]) -> tuple[float, float] | None:
    """The value axis of a comparison: around the values when they are close together (AUCs of
    0.938 to 0.943), None (from 0, plotly's choice) when 0 is a fair baseline or there is one value."""
    if len(values) < 2:
        return None
    low, high = min(values), max(values)
    spread = high - low
    if spread == 0 or low < 0 < high or spread >= CLOSE_VALUES * max(abs(low), abs(high)):
        return None
    return low - 0.6 * spread, high + 0.4 * spread


def best_by_family(study: optuna.Study) -> dict[str, list[float]]:
    """family -> best value of every objective over its completed trials (each objective on its own)."""
    objectives = study_objectives(study)
    best: dict[str, list[float]] = {}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        family = TrialRecord.read(trial, only=("candidate",)).candidate.family or "unknown"
        values = list(trial.values)
        if family not in best:
            best[family] = values
            continue
        best[family] = [
            max(old, new) if o.direction == "maximize" else min(old, new)
            for o, old, new in zip(objectives, best[family], values)
        ]
    return dict(sorted(best.items()))


def family_figure(study: optuna.Study) -> go.Figure:
    objectives = study_objectives(study)
    best = best_by_family(study)
    families = list(best)
    figure = make_subplots(
        rows=1,
        cols=len(objectives),
        subplot_titles=[
            f"{o.name} ({'higher' if o.direction == 'maximize' else 'lower'} is better)" for o in objectives
        ],
    )
    for index, objective in enumerate(objectives):
        values = [best[f][index] for f in families]
        figure.add_trace(
            go.Bar(
                x=families,
                y=values,
                name=objective.name,
                showlegend=False,
                text=[f"{v:.4g}" for v in values],
                textposition="auto",
            ),
            row=1,
            col=index + 1,
        )
        value_range = comparison_range(values)
        if value_range is not None:
            figure.update_yaxes(range=list(value_range), row=1, col=index + 1)
    counts = {f: 0 for f in families}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        record = TrialRecord.read(trial, only=("candidate", "repeat_of"))
        if record.repeat_of is not None:
            continue  # not trained: it repeats an earlier trial's candidate
        family = record.candidate.family or "unknown"
        counts[family] = counts.get(family, 0) + 1
    trials_text = ", ".join(f"{f}: {counts[f]}" for f in families) or "none"
    figure.update_layout(
        title=f"Best validation value per family (trained to the end: {trials_text})",
        template="plotly_white",
        height=380,
    )
    return figure
