"""The study report: one self-contained HTML page (plotly's JavaScript inlined once).

Sections: the front as a table and a figure, hypervolume over trials, the best value per
family, the architecture of each front trial, loss-weight trajectories and validation
curves of the front, and the data and space that were searched.
"""

from __future__ import annotations

import html
import json
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.offline
import yaml

from mtl_search.analysis.front import conditional_notes
from mtl_search.analysis.outcomes import Outcomes, outcome_line, trial_outcomes
from mtl_search.analysis.references import reference_rows, row_transfer
from mtl_search.analysis.refine import refined_record
from mtl_search.architectures.describe import sharing_text
from mtl_search.records.references import ReferenceRecord
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord
from mtl_search.search.study import pareto_trials, study_objectives, study_tasks
from mtl_search.version import __version__
from mtl_search.visualization.architecture import sharing_figures, stack_figure, tree_figure
from mtl_search.visualization.families import family_figure
from mtl_search.visualization.pareto import parallel_coordinates_figure, pareto_figure
from mtl_search.visualization.progress import hypervolume_figure
from mtl_search.visualization.training import has_loss_weights, loss_weights_figure, validation_curves_figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f5f5f5; } .note { color: #666; } .figures > div { display: inline-block; vertical-align: top; }
.negative { color: #b00020; font-weight: 600; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def main_figures(study: optuna.Study) -> dict[str, go.Figure]:
    """The study-level figures by a stable id (also what the dashboard shows)."""
    objectives = study_objectives(study)
    front = pareto_trials(study)
    task_names = [t.name for t in study_tasks(study)] or list(dict.fromkeys(o.task for o in objectives))
    figures = {"pareto-front": pareto_figure(study)}
    if len(objectives) > 2:
        figures["pareto-parallel-coordinates"] = parallel_coordinates_figure(study)
    hypervolume = hypervolume_figure(study) if len(objectives) > 1 else None
    if hypervolume is not None:
        figures["hypervolume"] = hypervolume
    figures["best-per-family"] = family_figure(study)
    if has_loss_weights(front):
        figures["loss-weights"] = loss_weights_figure(front, task_names)
    figures["validation-curves"] = validation_curves_figure(front, objectives)
    return figures


def report_html(study: optuna.Study) -> str:
    objectives = study_objectives(study)
    front = pareto_trials(study)
    meta = StudyRecord.read(study)
    task_names = [t.name for t in study_tasks(study)] or list(dict.fromkeys(o.task for o in objectives))
    figures = main_figures(study)
    trials = study.get_trials(deepcopy=False)
    outcomes = trial_outcomes(trials)
    page = _Page()
    page.add(f"<h1>Study {_e(study.study_name)}</h1>")
    page.add(
        f"<p class='note'>{len(trials)} trials: {_e(outcome_line(outcomes))}"
        + f". Objectives (validation split): {_e(', '.join(o.name + (' ↑' if o.direction == 'maximize' else ' ↓') for o in objectives))}."
        + f" Made by mtl-search {__version__}.</p>"
    )

    page.add("<h2>Pareto front</h2>")
    page.add(_front_table(study, front, objectives))
    page.add(_references_section(study, objectives))
    page.figure(figures["pareto-front"], "pareto-front")
    if "pareto-parallel-coordinates" in figures:
        page.figure(figures["pareto-parallel-coordinates"], "pareto-parallel-coordinates")

    page.add("<h2>Hypervolume over trials</h2>")
    if "hypervolume" in figures:
        page.figure(figures["hypervolume"], "hypervolume")
    else:
        page.add(
            "<p class='note'>Not available: this installation has no hypervolume module, or the study has one objective.</p>"
        )

    page.add("<h2>Families compared</h2>")
    page.figure(figures["best-per-family"], "best-per-family")

    page.add("<h2>Architectures on the front</h2>")
    if not front:
        page.add("<p class='note'>No completed trial yet.</p>")
    for trial in front:
        record = TrialRecord.read(trial)
        spec = record.candidate.architecture
        sharing = record.sharing
        page.add(f"<h3>Trial {trial.number}: {_e(record.summary)}</h3>")
        page.add("<div class='figures'>")
        tree = tree_figure(spec, task_names, title=f"Trial {trial.number}: task-grouping tree")
        if tree is None and isinstance(sharing, dict) and sharing.get("groups"):  # a tree the trial learned (ltb)
            learned = {"groups": sharing["groups"], "widths": spec.get("widths")}
            tree = tree_figure(learned, task_names, title=f"Trial {trial.number}: learned branching")
        if tree is not None:
            page.figure(tree, f"trial-{trial.number}-tree")
        stack = stack_figure(spec, task_names, title=f"Trial {trial.number}: heads on the shared stack")
        if stack is not None:
            page.figure(stack, f"trial-{trial.number}-stack")
        for index, figure in enumerate(sharing_figures(sharing, task_names)):
            figure.update_layout(title_text=f"Trial {trial.number}: {figure.layout.title.text}")
            page.figure(figure, f"trial-{trial.number}-sharing-{index}")
        page.add("</div>")
        texts = sharing_text(sharing)
        if texts:
            page.add("<ul>" + "".join(f"<li>learned {_e(k)}: {_e(v)}</li>" for k, v in texts.items()) + "</ul>")
        page.add(
            f"<details><summary>spec</summary><pre>{_e(json.dumps(spec, indent=2, sort_keys=True))}</pre></details>"
        )

    page.add("<h2>Loss weights</h2>")
    if "loss-weights" in figures:
        page.figure(figures["loss-weights"], "loss-weights")
    else:
        page.add("<p class='note'>No loss weights were recorded for the front's trials.</p>")

    page.add("<h2>Training curves</h2>")
    page.figure(figures["validation-curves"], "validation-curves")

    affinity = meta.affinity
    if affinity:
        page.add("<h2>Task affinity</h2>")
        page.add(_affinity_section(affinity, study))

    page.add("<h2>Trials not on the front</h2>")
    page.add(_stopped_table(outcomes))

    page.add("<h2>Data and search space</h2>")
    page.add(_data_section(meta))
    return page.render(f"{study.study_name}: mtl-search report")


class _Page:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, figure: go.Figure, div_id: str) -> None:
        self.parts.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=False,
                div_id=div_id,
                config={"displaylogo": False, "responsive": True},
            )
        )

    def render(self, title: str) -> str:
        # the generator tag is mtl_search.cli.common.GENERATOR_META: it lets `report` replace its own pages
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><meta name='generator' content='mtl-search'>"
            f"<title>{_e(title)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head>\n<body>\n"
            + "\n".join(self.parts)
            + "\n</body></html>\n"
        )


def _front_table(study: optuna.Study, front: list[optuna.trial.FrozenTrial], objectives: list[Any]) -> str:
    """Task objectives on validation (what chose the front) and test; cost objectives once
    (a property of the network, not of a split); refined trials as mean ± std over seeds."""
    if not front:
        return "<p class='note'>No completed trial yet, so no front.</p>"
    stored = StudyRecord.read(study)
    references = ReferenceRecord.read(study)
    tasks = [(i, o) for i, o in enumerate(objectives) if o.kind == "task"]
    costs = [(i, o) for i, o in enumerate(objectives) if o.kind != "task"]
    head = (
        "".join(f"<th>{_e(o.name)} (validation)</th>" for _, o in tasks)
        + "".join(f"<th>{_e(o.name)} (test)</th>" for _, o in tasks)
        + "".join(f"<th>{_e(o.name)}</th>" for _, o in costs)
    )
    compared = references is not None and bool(references.single_task)
    if compared:
        head += "<th>Δm % (validation)</th><th>Δm % (test)</th><th>per task, % (validation; test)</th>"
    rows = []
    for trial in front:
        record = TrialRecord.read(trial)
        test = record.test
        refined = refined_record(study, trial.number, stored) or {}
        cells = "".join(f"<td>{_refined_or(refined.get('validation'), o, trial.values[i])}</td>" for i, o in tasks)
        cells += "".join(
            f"<td>{_refined_or(refined.get('test'), o, test.get(o.task, {}).get(o.metric))}</td>" for _, o in tasks
        )
        cells += "".join(
            f"<td>{_number(int(trial.values[i]) if o.name == 'params' else trial.values[i])}</td>" for i, o in costs
        )
        if compared:
            cells += _transfer_cells(
                row_transfer(
                    {"values": dict(zip([o.name for o in objectives], trial.values)), "test": test},
                    references,
                    objectives,
                )
            )
        params = "" if any(o.name == "params" for _, o in costs) else f"<td>{_number(record.n_params)}</td>"
        rows.append(f"<tr><td>{trial.number}</td>{cells}{params}<td>{_e(record.summary)}</td></tr>")
    params_head = "" if any(o.name == "params" for _, o in costs) else "<th>parameters</th>"
    note = (
        "<p class='note'>Refined trials (<code>mtl-search refine</code>): the search's own run, then mean ± std over "
        "their training seeds (n). The front and <code>export --pick</code> are chosen on the search's own run, "
        "the same single seed for every trial; read the means to judge whether a difference is larger than the "
        "seed noise.</p>"
        if any(refined_record(study, t.number, stored) for t in front)
        else ""
    )
    conditional = "".join(f"<p class='note'>{_e(line)}</p>" for line in conditional_notes(study))
    if compared:
        note += (
            "<p class='note'>Δm: the mean over tasks of each task's relative change against its single-task network "
            "(<code>mtl-search baselines</code>), in percent, positive = better; a task marked "
            "<span class='negative'>negative</span> did worse than its single-task network (negative transfer).</p>"
        )
    return f"<table><tr><th>trial</th>{head}{params_head}<th>architecture</th></tr>{''.join(rows)}</table>{note}{conditional}"


def _transfer_cells(transfer: dict[str, Any]) -> str:
    """Delta-m on validation and test, then each task's change (negative transfer marked)."""

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:+.2f}"

    per_task = []
    for task, change in transfer["task_change"].items():
        on_test = transfer["task_change_test"].get(task)
        text = f"{_e(task)} {percent(change)}; {percent(on_test)}"
        negative = task in transfer["negative_transfer"]
        per_task.append(f"<span class='negative'>{text} (negative)</span>" if negative else text)
    return (
        f"<td>{percent(transfer['delta_m'])}</td><td>{percent(transfer['delta_m_test'])}</td>"
        f"<td>{'<br>'.join(per_task)}</td>"
    )


def _references_section(study: optuna.Study, objectives: list[Any]) -> str:
    """The reference models' metrics, or how to train them."""
    references = ReferenceRecord.read(study)
    if references is None:
        return (
            "<p class='note'>No reference models: <code>mtl-search baselines STUDY</code> trains a single-task "
            "network (and, with LightGBM installed, a gradient-boosted model) per task, to read the front "
            "against.</p>"
        )
    rows = [
        f"<tr><td>{_e(label)}</td><td>{_e(objective.name)}</td>"
        f"<td>{_number(model.validation.get(objective.metric))}</td>"
        f"<td>{_number(model.test.get(objective.metric))}</td><td>{_e(size)}</td>"
        f"<td>{_number(model.seconds)}</td></tr>"
        for label, objective, model, size in reference_rows(references, objectives)
    ]
    sized = (
        f"<p class='note'>Each single-task network is sized like the front's median network (trial "
        f"{references.sized_like_trial}, {references.parameter_budget} parameters) and trained with its settings.</p>"
        if references.sized_like_trial is not None
        else ""
    )
    skipped = (
        f"<p class='note'>No LightGBM references: {_e(references.gbdt_skipped)}.</p>"
        if references.gbdt_skipped and references.gbdt_skipped != "not asked for"
        else ""
    )
    return (
        "<h3>References</h3><table><tr><th>model</th><th>objective</th><th>validation</th><th>test</th>"
        f"<th>size</th><th>seconds</th></tr>{''.join(rows)}</table>{sized}{skipped}"
    )


def _refined_or(refined: dict[str, Any] | None, objective: Any, value: Any) -> str:
    stats = ((refined or {}).get(objective.task) or {}).get(objective.metric)
    if stats:
        return f"{_number(value)}; {stats['mean']:.4g} ± {stats['std']:.2g} (n={stats['n']})"
    return _number(value)


def _affinity_section(record: dict[str, Any], study: optuna.Study) -> str:
    """The measured affinity matrix, how it was measured, the grouping order it gives and how
    the seeded trees did (as `mtl-search affinity`)."""
    from mtl_search.search.affinity import (
        AFFINITY_SCALES,
        affinity_cells,
        grouping_order,
        seeded_rows,
    )  # one wording for the CLI and the report

    tasks = record["tasks"]
    rows = "".join(
        f"<tr><th>{_e(task)}</th>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
        for task, cells in zip(tasks, affinity_cells(record))
    )
    chain = grouping_order(record, "→")
    return (
        f"<table><tr><th></th>{''.join(f'<th>{_e(t)}</th>' for t in tasks)}</tr>{rows}</table>"
        f"<p class='note'>{_e(record.get('method', ''))}. {_e(AFFINITY_SCALES.get(record.get('measure', 'easy_hard'), ''))}."
        + (f" Grouping order: {_e(chain)}." if chain else "")
        + "</p>"
        + _seeded_table(seeded_rows(study))
    )


def _seeded_table(rows: list[tuple[int, str, str]]) -> str:
    if not rows:
        return ""
    cells = "".join(
        f"<tr><td>{number}</td><td>{_e(state)}</td><td>{_e(summary)}</td></tr>" for number, state, summary in rows
    )
    return (
        "<p class='note'>The seeded trees, enqueued as the study's first trials (fully shared first):</p>"
        f"<table><tr><th>trial</th><th>outcome</th><th>architecture</th></tr>{cells}</table>"
    )


def _stopped_table(outcomes: Outcomes) -> str:
    """Every failed trial and every pruned one the pruner did not stop for being dominated, with its reason."""
    text = (
        f"<p class='note'>{outcomes.dominated} trial(s) were stopped early by the Pareto-aware pruner "
        "(dominated by completed trials at the same budget; <code>mtl-search pruning STUDY</code> replays the rule).</p>"
    )
    if not outcomes.stopped:
        return text + "<p class='note'>No trial failed or was over a hard limit.</p>"
    rows = "".join(
        f"<tr><td>{number}</td><td>{state}</td><td>{_e(reason)}</td></tr>" for number, state, reason in outcomes.stopped
    )
    return text + f"<table><tr><th>trial</th><th>state</th><th>reason</th></tr>{rows}</table>"


def _data_section(meta: StudyRecord) -> str:
    if not meta.made_by_mtl_search:
        return "<p class='note'>This study was not made by mtl-search: no data or space is recorded.</p>"
    spaces = meta.spaces
    data = meta.data or {}
    options = data.get("options") or {}
    parts = [
        f"<p>Data source <b>{_e(data.get('source', 'unknown'))}</b>"
        + (f", file {_e(data['file'])}" if data.get("file") else "")
        + "</p>"
    ]
    if options:
        parts.append(
            "<table><tr><th>option</th><th>value</th></tr>"
            + "".join(f"<tr><td>{_e(k)}</td><td>{_e(json.dumps(v))}</td></tr>" for k, v in options.items())
            + "</table>"
        )
    tasks = meta.tasks
    if tasks:
        parts.append(
            "<h3>Tasks</h3><table><tr><th>task</th><th>kind</th><th>classes</th><th>metrics</th><th>scored on</th></tr>"
            + "".join(
                f"<tr><td>{_e(t['name'])}</td><td>{_e(t['kind'])}</td><td>{t.get('n_classes') or ''}</td>"
                f"<td>{_e(', '.join(t.get('metrics', [])))}</td>"
                f"<td>{_e(_scored_on(t))}</td></tr>"
                for t in tasks
            )
            + "</table>"
        )
    parts.append(f"<h3>Inputs</h3><pre>{_e(json.dumps(meta.input_schema or None, indent=2))}</pre>")
    if len(spaces) > 1:  # continued with other spaces: each, from the trial it applied to
        for index, entry in enumerate(spaces):
            until = f" to {spaces[index + 1]['from_trial'] - 1}" if index + 1 < len(spaces) else " on"
            parts.append(
                f"<h3>Search space of trials {entry['from_trial']}{until}</h3>"
                f"<pre>{_e(yaml.safe_dump(entry['space'], sort_keys=False))}</pre>"
            )
    elif meta.space:
        parts.append(f"<h3>Search space</h3><pre>{_e(yaml.safe_dump(meta.space, sort_keys=False))}</pre>")
    if meta.preprocessing:
        parts.append(
            "<details><summary>preprocessing (fitted on the train split)</summary>"
            f"<pre>{_e(json.dumps(meta.preprocessing, indent=2))}</pre></details>"
        )
    return "\n".join(parts)


def _scored_on(task: dict[str, Any]) -> str:
    """The rows a task's metrics are computed on: all, or those of its condition (given=)."""
    return f"rows where {task['given']} = 1" if task.get("given") else "all rows"


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(str(value))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
