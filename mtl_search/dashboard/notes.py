"""The architecture of each trained trial, as a Markdown note optuna-dashboard shows beside it."""

from __future__ import annotations

from typing import Any

import optuna

from mtl_search.visualization.architecture import architecture_markdown


def note_architecture(trial: optuna.trial.Trial, candidate: dict[str, Any], result: Any) -> None:
    """A result hook: save the trial's architecture in readable form as its dashboard note."""
    from optuna_dashboard import save_note

    task_names = list(result.validation) or list(result.model.task_names)
    record = {"candidate": candidate, "summary": trial.user_attrs.get("summary"),
              "sharing": result.sharing, "n_params": result.n_params}
    save_note(trial, f"### Trial {trial.number}\n\n" + architecture_markdown(record, task_names))
