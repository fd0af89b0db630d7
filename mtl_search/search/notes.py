"""The architecture of each trained trial, as a Markdown note optuna-dashboard shows beside it (written by a run)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any, Callable

import optuna

from mtl_search.architectures.describe import architecture_markdown
from mtl_search.records.trial import TrialRecord


def note_architecture(trial: optuna.trial.Trial, candidate: dict[str, Any], result: Any) -> None:
    """A result hook: save the trial's architecture in readable form as its dashboard note."""
    task_names = list(result.validation) or list(result.model.task_names)
    stored = TrialRecord.read(trial)
    record = {
        "candidate": candidate,
        "summary": stored.summary if stored.recorded("summary") else None,
        "sharing": result.sharing,
        "n_params": result.n_params,
    }
    _save_note()(trial, f"### Trial {trial.number}\n\n" + architecture_markdown(record, task_names))


@functools.cache
def _save_note() -> Callable[[optuna.trial.Trial, str], None]:
    """optuna-dashboard's own ``save_note``, from its ``_note`` module alone.

    ``import optuna_dashboard`` loads its web app, which imports ``optuna.importance`` and so
    scikit-learn where it is installed: 1.6 s in every search process (10 % of the README's
    default search) for a function that needs only optuna. The module is loaded from the
    installed package's file without the package's ``__init__``; if that ever fails (a
    dashboard release that moves it), the public import is used.
    """
    try:
        spec = importlib.util.find_spec("optuna_dashboard")
        path = Path(spec.origin).parent / "_note.py" if spec and spec.origin else None
        module_spec = (
            importlib.util.spec_from_file_location("_mtl_search_dashboard_note", path)
            if path and path.exists()
            else None
        )
        if module_spec is None or module_spec.loader is None:
            raise ImportError("optuna_dashboard/_note.py not found")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.save_note
    except Exception:  # noqa: BLE001 (any surprise in a private module: fall back to the public API)
        from optuna_dashboard import save_note

        return save_note
