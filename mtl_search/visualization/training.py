"""Per-epoch records of trials: validation curves and loss-weight trajectories."""

from __future__ import annotations

from typing import Sequence

import optuna
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtl_search.records.objective import Objective
from mtl_search.records.trial import TrialRecord

DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def _colour(index: int) -> str:
    palette = plotly.colors.qualitative.Plotly
    return palette[index % len(palette)]


def validation_curves_figure(trials: Sequence[optuna.trial.FrozenTrial], objectives: Sequence[Objective]) -> go.Figure:
    """One panel per objective; one line per trial: the validation metric after every epoch,
    and a star on the epoch whose weights the trial returns (``kept_epoch``), when recorded.
    Cost objectives (parameters, latency) do not change with epochs and get no panel."""
    objectives = [o for o in objectives if o.kind == "task"]
    figure = make_subplots(rows=1, cols=len(objectives), subplot_titles=[o.name for o in objectives])
    for t_index, trial in enumerate(trials):
        stored = TrialRecord.read(trial)
        kept = stored.kept_epoch
        for o_index, objective in enumerate(objectives):
            epochs, values = [], []
            for record in stored.history:
                value = record.validation.get(objective.task, {}).get(objective.metric)
                if value is not None:
                    epochs.append(record.epoch)
                    values.append(value)
            figure.add_trace(
                go.Scatter(
                    x=epochs,
                    y=values,
                    mode="lines+markers",
                    name=f"trial {trial.number}",
                    legendgroup=str(trial.number),
                    showlegend=o_index == 0,
                    line={"color": _colour(t_index)},
                ),
                row=1,
                col=o_index + 1,
            )
            if kept in epochs:
                figure.add_trace(
                    go.Scatter(
                        x=[kept],
                        y=[values[epochs.index(kept)]],
                        mode="markers",
                        name=f"trial {trial.number}: kept epoch {kept}",
                        legendgroup=str(trial.number),
                        showlegend=False,
                        marker={"symbol": "star", "size": 13, "color": _colour(t_index)},
                    ),
                    row=1,
                    col=o_index + 1,
                )
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(
        title="Validation metrics per epoch (Pareto-front trials; star: the epoch whose weights each returns)",
        template="plotly_white",
        height=380,
    )
    return figure


def loss_weights_figure(trials: Sequence[optuna.trial.FrozenTrial], task_names: Sequence[str]) -> go.Figure:
    """The loss weight of each task after every epoch; colour = trial, dash = task."""
    figure = go.Figure()
    for t_index, trial in enumerate(trials):
        history = TrialRecord.read(trial).history
        for k_index, task in enumerate(task_names):
            epochs, values = [], []
            for record in history:
                value = record.weights.get(task)
                if isinstance(value, (int, float)):
                    epochs.append(record.epoch)
                    values.append(value)
            if values:
                figure.add_trace(
                    go.Scatter(
                        x=epochs,
                        y=values,
                        mode="lines+markers",
                        name=f"trial {trial.number}: {task}",
                        line={"color": _colour(t_index), "dash": DASHES[k_index % len(DASHES)]},
                    )
                )
    figure.update_layout(
        title="Loss weights per epoch (colour: trial, dash: task)",
        xaxis_title="epoch",
        yaxis_title="weight",
        template="plotly_white",
        height=380,
    )
    return figure


def has_loss_weights(trials: Sequence[optuna.trial.FrozenTrial]) -> bool:
    return any(record.weights for t in trials for record in TrialRecord.read(t).history)
