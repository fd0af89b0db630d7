"""Figures (plotly) built from a study alone."""

from mtl_search.visualization.pareto import pareto_figure

__all__ = ["pareto_figure"]
