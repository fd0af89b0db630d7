"""Per-family comparison: the best validation value each architecture family reached, per objective."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import study_objectives


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
