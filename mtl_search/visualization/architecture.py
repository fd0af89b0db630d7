"""A trained architecture drawn (its description in words: :mod:`mtl_search.architectures.describe`).

Figures come from generic sources, so that any family is drawn without this module
knowing it: the spec's ``groups`` (a task-grouping tree, drawn as blocks and edges), its
``head_depths`` (heads reading one shared stack at their depths) and the trial's
``sharing`` report, whose numeric tables (gate weights per expert, mixing
matrices) become heatmaps.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import plotly.graph_objects as go

from mtl_search.architectures.describe import sharing_tables


def tree_figure(spec: dict[str, Any], task_names: Sequence[str], title: str = "") -> go.Figure | None:
    """Blocks as boxes (one column per depth), edges from each group to its parent; None without ``groups``."""
    groups = spec.get("groups")
    if not isinstance(groups, list) or not groups:
        return None
    widths = spec.get("widths") or [None] * len(groups)
    tasks = list(task_names)

    # y of a group: mean position of its tasks, so that children sit next to their parent
    def y_of(group: Sequence[str]) -> float:
        return -sum(tasks.index(t) for t in group) / len(group)

    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    node_x, node_y, node_text, node_hover = [0.0], [-(len(tasks) - 1) / 2], ["input"], ["stem features"]
    previous: list[list[str]] | None = None
    for depth, partition in enumerate(groups):
        for group in partition:
            x, y = depth + 1.0, y_of(group)
            parent = next((p for p in previous if set(group) <= set(p)), None) if previous else None
            px, py = (depth, y_of(parent)) if parent else (0.0, node_y[0])
            edge_x += [px, x, None]
            edge_y += [py, y, None]
            width = widths[depth] if depth < len(widths) else None
            node_x.append(x)
            node_y.append(y)
            node_text.append("{" + ",".join(group) + "}")
            node_hover.append(
                f"depth {depth}, width {width}: " + ", ".join(group) + (" (shared)" if len(group) > 1 else "")
            )
        previous = partition
    last = len(groups) + 1.0
    for task in tasks:
        parent = next(g for g in groups[-1] if task in g)
        edge_x += [last - 1, last, None]
        edge_y += [y_of(parent), -tasks.index(task), None]
        node_x.append(last)
        node_y.append(-tasks.index(task))
        node_text.append(f"{task} tower")
        node_hover.append(f"tower of {task}")
    figure = go.Figure(
        [
            go.Scatter(
                x=edge_x, y=edge_y, mode="lines", line={"color": "#999", "width": 2}, hoverinfo="skip", showlegend=False
            ),
            go.Scatter(
                x=node_x,
                y=node_y,
                mode="markers+text",
                text=node_text,
                hovertext=node_hover,
                hoverinfo="text",
                textposition="top center",
                marker={"size": 18, "symbol": "square", "color": "#1f77b4"},
                showlegend=False,
            ),
        ]
    )
    figure.update_xaxes(
        tickvals=list(range(len(groups) + 2)),
        ticktext=["input"] + [f"depth {d}" for d in range(len(groups))] + ["towers"],
        showgrid=False,
    )
    figure.update_yaxes(visible=False, range=[-len(tasks) + 0.3, 0.8])
    figure.update_layout(
        title=title or "Task-grouping tree",
        template="plotly_white",
        height=160 + 60 * len(tasks),
        margin={"l": 20, "r": 20, "t": 50, "b": 30},
    )
    return figure


def stack_figure(spec: dict[str, Any], task_names: Sequence[str], title: str = "") -> go.Figure | None:
    """One shared stack of blocks with each task's head below the block it reads, and a dashed
    edge up to the next block for a head whose prediction feeds it; None without ``head_depths``."""
    heads = spec.get("head_depths")
    if not isinstance(heads, dict) or not heads or not all(isinstance(d, int) for d in heads.values()):
        return None
    tasks = [t for t in task_names if t in heads]
    top = max(heads.values())
    widths = list(spec.get("widths") or [])
    feeds = {t for t in tasks if (spec.get("feed_upward") or {}).get(t) and heads[t] < top}
    node_x, node_y = [float(d) for d in range(top + 1)], [0.0] * (top + 1)
    node_text = ["input"] + [f"block {d}" for d in range(1, top + 1)]
    node_hover = ["stem features"] + [
        f"block {d}, width {widths[d - 1] if d <= len(widths) else '?'}" for d in range(1, top + 1)
    ]
    stack_x: list[float | None] = [0.0, float(top), None]
    stack_y: list[float | None] = [0.0, 0.0, None]
    head_x: list[float | None] = []
    head_y: list[float | None] = []
    fed_x: list[float | None] = []
    fed_y: list[float | None] = []
    for task in tasks:
        depth = heads[task]
        # heads at one depth hang one below the other under their block
        y = -1.0 - 0.6 * sum(1 for other in tasks[: tasks.index(task)] if heads[other] == depth)
        head_x += [float(depth), float(depth), None]
        head_y += [0.0, y, None]
        node_x.append(float(depth))
        node_y.append(y)
        node_text.append(f"{task} tower")
        fed = task in feeds
        node_hover.append(
            f"{task}: tower reads block {depth}" + (f"; its prediction feeds block {depth + 1}" if fed else "")
        )
        if fed:
            fed_x += [float(depth), depth + 1.0, None]
            fed_y += [y, 0.0, None]
    figure = go.Figure(
        [
            go.Scatter(
                x=stack_x,
                y=stack_y,
                mode="lines",
                line={"color": "#999", "width": 3},
                hoverinfo="skip",
                showlegend=False,
            ),
            go.Scatter(
                x=head_x, y=head_y, mode="lines", line={"color": "#999", "width": 2}, hoverinfo="skip", showlegend=False
            ),
            go.Scatter(
                x=fed_x,
                y=fed_y,
                mode="lines",
                line={"color": "#d62728", "width": 2, "dash": "dash"},
                name="prediction fed upward",
                hoverinfo="skip",
                showlegend=bool(feeds),
            ),
            go.Scatter(
                x=node_x,
                y=node_y,
                mode="markers+text",
                text=node_text,
                hovertext=node_hover,
                hoverinfo="text",
                textposition=["top center"] * (top + 1) + ["middle right"] * len(tasks),
                marker={"size": 18, "symbol": "square", "color": "#1f77b4"},
                showlegend=False,
            ),
        ]
    )
    lowest = min(node_y)
    figure.update_xaxes(visible=False, range=[-0.4, top + 0.9])
    figure.update_yaxes(visible=False, range=[lowest - 0.5, 0.6])
    figure.update_layout(
        title=title or "Heads on the shared stack",
        template="plotly_white",
        height=180 + 70 * int(-lowest),
        margin={"l": 20, "r": 20, "t": 50, "b": 30},
        legend={"orientation": "h"},
    )
    return figure


def sharing_figures(sharing: Any, task_names: Sequence[str]) -> list[go.Figure]:
    figures = []
    for title, rows, columns, matrix in sharing_tables(sharing, task_names):
        figure = go.Figure(
            go.Heatmap(
                z=matrix,
                x=columns,
                y=rows,
                colorscale="Blues",
                zmin=0,
                text=[["" if math.isnan(v) else f"{v:.2f}" for v in row] for row in matrix],
                texttemplate="%{text}",
                hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>",
            )
        )
        figure.update_yaxes(autorange="reversed", type="category")
        figure.update_xaxes(type="category")
        figure.update_layout(
            title={"text": title, "font": {"size": 13}},
            template="plotly_white",
            width=max(360, 60 * len(columns) + 180),
            height=max(260, 36 * len(rows) + 160),
            margin={"l": 80, "r": 20, "t": 80, "b": 50},
        )
        figures.append(figure)
    return figures
