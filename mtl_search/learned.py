"""What a trained model learned beyond its spec, as a short line of text.

Plain data in, text out, and no torch: ``pareto`` and the reports read it from finished
studies without loading the model layer.
"""

from __future__ import annotations

from typing import Any


def summarize_learned(sharing: dict[str, Any]) -> str:
    """What a trained model learned that its spec does not say (e.g. task correlations), or ''."""
    if sharing.get("relationship"):
        return summarize_relationship(sharing["relationship"])
    return ""


def summarize_relationship(report: dict[str, Any]) -> str:
    """The learned correlations in a few characters: every pair for up to 4 tasks, else the extremes."""
    tasks, correlation = report["tasks"], report["correlation"]
    pairs = [(f"{a}~{b}", correlation[i][j]) for i, a in enumerate(tasks) for j, b in enumerate(tasks) if i < j]
    if len(pairs) > 6:
        pairs = sorted(pairs, key=lambda pair: pair[1])
        pairs = [pairs[-1], pairs[0]]
    return "corr " + " ".join(f"{name}{value:+.2f}" for name, value in pairs)
