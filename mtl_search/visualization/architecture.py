"""A trained architecture drawn and written out.

Figures come from generic sources, so that any family is drawn without this module
knowing it: the spec's ``groups`` (a task-grouping tree, drawn as blocks and edges), its
``head_depths`` (heads reading one shared stack at their depths) and the trial's
``sharing`` report, whose numeric tables (gate weights per expert, mixing
matrices) become heatmaps. What is neither is shown as text.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import plotly.graph_objects as go

from mtl_search.errors import is_number


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
            node_hover.append(f"depth {depth}, width {width}: " + ", ".join(group) + (" (shared)" if len(group) > 1 else ""))
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
    figure = go.Figure([
        go.Scatter(x=edge_x, y=edge_y, mode="lines", line={"color": "#999", "width": 2}, hoverinfo="skip", showlegend=False),
        go.Scatter(x=node_x, y=node_y, mode="markers+text", text=node_text, hovertext=node_hover, hoverinfo="text",
                   textposition="top center", marker={"size": 18, "symbol": "square", "color": "#1f77b4"}, showlegend=False),
    ])
    figure.update_xaxes(tickvals=list(range(len(groups) + 2)),
                        ticktext=["input"] + [f"depth {d}" for d in range(len(groups))] + ["towers"], showgrid=False)
    figure.update_yaxes(visible=False, range=[-len(tasks) + 0.3, 0.8])
    figure.update_layout(title=title or "Task-grouping tree", template="plotly_white",
                         height=160 + 60 * len(tasks), margin={"l": 20, "r": 20, "t": 50, "b": 30})
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
    node_hover = ["stem features"] + [f"block {d}, width {widths[d - 1] if d <= len(widths) else '?'}" for d in range(1, top + 1)]
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
        node_hover.append(f"{task}: tower reads block {depth}" + (f"; its prediction feeds block {depth + 1}" if fed else ""))
        if fed:
            fed_x += [float(depth), depth + 1.0, None]
            fed_y += [y, 0.0, None]
    figure = go.Figure([
        go.Scatter(x=stack_x, y=stack_y, mode="lines", line={"color": "#999", "width": 3}, hoverinfo="skip", showlegend=False),
        go.Scatter(x=head_x, y=head_y, mode="lines", line={"color": "#999", "width": 2}, hoverinfo="skip", showlegend=False),
        go.Scatter(x=fed_x, y=fed_y, mode="lines", line={"color": "#d62728", "width": 2, "dash": "dash"},
                   name="prediction fed upward", hoverinfo="skip", showlegend=bool(feeds)),
        go.Scatter(x=node_x, y=node_y, mode="markers+text", text=node_text, hovertext=node_hover, hoverinfo="text",
                   textposition=["top center"] * (top + 1) + ["middle right"] * len(tasks),
                   marker={"size": 18, "symbol": "square", "color": "#1f77b4"}, showlegend=False),
    ])
    lowest = min(node_y)
    figure.update_xaxes(visible=False, range=[-0.4, top + 0.9])
    figure.update_yaxes(visible=False, range=[lowest - 0.5, 0.6])
    figure.update_layout(title=title or "Heads on the shared stack", template="plotly_white", height=180 + 70 * int(-lowest),
                         margin={"l": 20, "r": 20, "t": 50, "b": 30}, legend={"orientation": "h"})
    return figure


def sharing_tables(sharing: Any, task_names: Sequence[str], path: str = "") -> list[tuple[str, list[str], list[str], list[list[float]]]]:
    """Every numeric table in a sharing report: (title, row labels, column labels, values).

    Recognised: a matrix (list of equal-length number lists), a mapping of names to number
    lists or to ``{label: number}`` (for example gate -> expert -> mean weight), and lists or
    mappings of those (for example one mixing matrix per layer).
    """
    tables = []
    if _is_matrix(sharing):
        rows, columns = _axis_labels(len(sharing), task_names), _axis_labels(len(sharing[0]), task_names)
        return [(path or "matrix", rows, columns, [[float(v) for v in row] for row in sharing])]
    if isinstance(sharing, dict) and sharing:
        values = list(sharing.values())
        if all(isinstance(v, dict) and v and all(is_number(x) for x in v.values()) for v in values):
            columns = list(dict.fromkeys(label for v in values for label in v))
            matrix = [[float(v.get(c, math.nan)) for c in columns] for v in values]
            return [(path or "table", [str(k) for k in sharing], columns, matrix)]
        if all(isinstance(v, list) and v and all(is_number(x) for x in v) for v in values):
            n = max(len(v) for v in values)
            matrix = [[float(v[i]) if i < len(v) else math.nan for i in range(n)] for v in values]
            # sluice's beta: one weight per layer of the columns, counted from 1 as in its summary
            columns = [f"layer {i + 1}" for i in range(n)] if path.endswith("beta") else [str(i) for i in range(n)]
            return [(path or "table", [str(k) for k in sharing], columns, matrix)]
        for key, value in sharing.items():
            tables += sharing_tables(value, task_names, f"{path}.{key}" if path else str(key))
    elif isinstance(sharing, list) and sharing and not all(is_number(x) for x in sharing):
        for index, value in enumerate(sharing):
            tables += sharing_tables(value, task_names, f"{path}[{index}]")
    return tables


def _axis_labels(size: int, task_names: Sequence[str]) -> list[str]:
    """A mixing matrix's row or column labels: tasks, or each task's subspaces in task-major
    order (sluice's alpha: ``task1.s0, task1.s1, task2.s0, ...``), else plain indices."""
    n_tasks = len(task_names)
    if size == n_tasks:
        return list(task_names)
    if n_tasks and size % n_tasks == 0:
        return [f"{task}.s{j}" for task in task_names for j in range(size // n_tasks)]
    return [str(i) for i in range(size)]


def sharing_figures(sharing: Any, task_names: Sequence[str]) -> list[go.Figure]:
    figures = []
    for title, rows, columns, matrix in sharing_tables(sharing, task_names):
        figure = go.Figure(go.Heatmap(
            z=matrix, x=columns, y=rows, colorscale="Blues", zmin=0,
            text=[["" if math.isnan(v) else f"{v:.2f}" for v in row] for row in matrix], texttemplate="%{text}",
            hovertemplate="%{y} / %{x}: %{z:.3f}<extra></extra>",
        ))
        figure.update_yaxes(autorange="reversed", type="category")
        figure.update_xaxes(type="category")
        figure.update_layout(title={"text": title, "font": {"size": 13}}, template="plotly_white",
                             width=max(360, 60 * len(columns) + 180), height=max(260, 36 * len(rows) + 160),
                             margin={"l": 80, "r": 20, "t": 80, "b": 50})
        figures.append(figure)
    return figures


def sharing_text(sharing: Any) -> dict[str, str]:
    """The non-numeric-table parts of a sharing report (e.g. the tree line, a count), as text."""
    if not isinstance(sharing, dict):
        return {}
    return {str(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in sharing.items()
            if isinstance(v, (str, int, float, bool))}


def architecture_markdown(record: dict[str, Any], task_names: Sequence[str]) -> str:
    """The architecture in readable Markdown: summary, structure, what it learned, the spec.

    ``record`` holds ``candidate`` and, when known, ``summary``, ``sharing``, ``n_params``.
    """
    candidate = record.get("candidate") or {}
    spec = candidate.get("architecture") or {}
    lines = [f"**{record.get('summary') or spec.get('family', 'architecture')}**", ""]
    facts = [f"family `{spec.get('family')}`"]
    if record.get("n_params") is not None:
        facts.append(f"{int(record['n_params']):,} trainable parameters")
    weighting = candidate.get("loss_weighting") or {}
    if weighting:
        facts.append(f"loss weighting `{weighting.get('method', 'static')}`")
    lines += ["- " + "; ".join(facts)]
    groups = spec.get("groups")
    if isinstance(groups, list) and groups:
        widths = spec.get("widths") or []
        lines += ["", "| depth | width | blocks (tasks that share each block) |", "|---|---|---|"]
        for depth, partition in enumerate(groups):
            width = widths[depth] if depth < len(widths) else ""
            lines.append(f"| {depth} | {width} | " + " ".join("{" + ", ".join(g) + "}" for g in partition) + " |")
    tower = (spec.get("tower") or {}).get("widths")
    lines += ["", f"- towers: {' x '.join(str(w) for w in tower) if tower else 'output layer only'} per task ({', '.join(task_names)})"]
    for title, rows, columns, matrix in sharing_tables(record.get("sharing") or {}, task_names):
        lines += ["", f"Learned `{title}`:", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += ["| " + row + " | " + " | ".join("" if math.isnan(v) else f"{v:.3f}" for v in values) + " |"
                  for row, values in zip(rows, matrix)]
    for key, text in sharing_text(record.get("sharing") or {}).items():
        lines += ["", f"- learned `{key}`: {text}"]
    lines += ["", "Spec:", "", "```json", json.dumps(spec, sort_keys=True), "```"]
    return "\n".join(lines)


def _is_matrix(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and all(isinstance(r, list) and r and all(is_number(x) for x in r) for r in value)
            and len({len(r) for r in value}) == 1)
