"""A trained architecture in words: its Markdown description and the numeric tables of what it learned.

Plain text from generic sources (the spec's ``groups``, the trial's ``sharing`` report), so
that any family is described without this module knowing it; the figures of
:mod:`mtl_search.visualization.architecture` draw the same tables.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from mtl_search.errors import is_number


# a numeric table: title, row labels, column labels, values
Table = tuple[str, list[str], list[str], list[list[float]]]


def sharing_tables(sharing: Any, task_names: Sequence[str], path: str = "") -> list[Table]:
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


def sharing_text(sharing: Any) -> dict[str, str]:
    """The non-numeric-table parts of a sharing report (e.g. the tree line, a count), as text."""
    if not isinstance(sharing, dict):
        return {}
    return {
        str(k): (v if isinstance(v, str) else json.dumps(v))
        for k, v in sharing.items()
        if isinstance(v, (str, int, float, bool))
    }


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
    learned = record.get("sharing") or {}
    if not groups and isinstance(learned, dict) and learned.get("groups"):  # a tree the trial learned (ltb)
        groups = learned["groups"]
        lines += ["", "Learned branching (the tree evaluated and exported):"]
    if isinstance(groups, list) and groups:
        widths = spec.get("widths") or []
        lines += ["", "| depth | width | blocks (tasks that share each block) |", "|---|---|---|"]
        for depth, partition in enumerate(groups):
            width = widths[depth] if depth < len(widths) else ""
            lines.append(f"| {depth} | {width} | " + " ".join("{" + ", ".join(g) + "}" for g in partition) + " |")
    tower = (spec.get("tower") or {}).get("widths")
    towers = " x ".join(str(w) for w in tower) if tower else "output layer only"
    lines += ["", f"- towers: {towers} per task ({', '.join(task_names)})"]
    for title, rows, columns, matrix in sharing_tables(record.get("sharing") or {}, task_names):
        lines += ["", f"Learned `{title}`:", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += [
            "| " + row + " | " + " | ".join("" if math.isnan(v) else f"{v:.3f}" for v in values) + " |"
            for row, values in zip(rows, matrix)
        ]
    for key, text in sharing_text(record.get("sharing") or {}).items():
        lines += ["", f"- learned `{key}`: {text}"]
    lines += ["", "Spec:", "", "```json", json.dumps(spec, sort_keys=True), "```"]
    return "\n".join(lines)


def _is_matrix(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(r, list) and r and all(is_number(x) for x in r) for r in value)
        and len({len(r) for r in value}) == 1
    )
