"""Exporting a trained trial as a model folder, choosing which trial, and loading it back."""

from mtl_search.export.bundle import ExportResult, export_trial
from mtl_search.export.loading import load
from mtl_search.export.picks import find_trial, pick_trial

__all__ = ["ExportResult", "export_trial", "find_trial", "load", "pick_trial"]
