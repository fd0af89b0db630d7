"""The report's study-level figures, stored on the study so that optuna-dashboard shows them."""

from __future__ import annotations

import optuna

from mtl_search.records.study import StudyRecord

# Stable ids: attaching again replaces the figures instead of adding copies.
ID_PREFIX = "mtl-search:"


def attach_figures(study: optuna.Study) -> list[str]:
    """Save (or refresh) the figures on the study; returns their ids."""
    from optuna_dashboard import save_plotly_graph_object

    from mtl_search.visualization.report import main_figures

    ids = []
    for name, figure in main_figures(study).items():
        ids.append(save_plotly_graph_object(study, figure, graph_object_id=ID_PREFIX + name))
    return ids


def is_mtl_search_study(study: optuna.Study) -> bool:
    return StudyRecord.read(study).made_by_mtl_search
