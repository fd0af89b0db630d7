"""Studies stored by earlier and current releases open: every command reads them, and their
records read back through the typed readers (fixtures written by make_fixture.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest

from mtl_search.records.attributes import STUDY_ATTR
from mtl_search.records.schema import SCHEMA_KEY, SCHEMA_VERSION
from mtl_search.records.study import StudyRecord
from mtl_search.records.trial import TrialRecord
from tests.helpers import assert_one_line_error

FIXTURES = Path(__file__).parent / "fixtures"
# one stored study per record format, as the release of that format wrote it
STORED = sorted(FIXTURES.glob("schema*.sqlite3"))
States = optuna.trial.TrialState


def stored_format(path: Path) -> int:
    return int(path.stem.removeprefix("schema"))


@pytest.fixture(params=STORED, ids=[path.stem for path in STORED])
def stored_study(request, tmp_path):
    """(storage URL, format) of a copy of a stored study (commands may write to it: the report attaches figures)."""
    copy = tmp_path / request.param.name
    shutil.copyfile(request.param, copy)
    return f"sqlite:///{copy}", stored_format(request.param)


def test_every_format_up_to_the_current_one_has_a_stored_study():
    assert [stored_format(path) for path in STORED] == list(range(SCHEMA_VERSION + 1))


def test_the_stored_study_s_records_read_back_typed(stored_study):
    url, version = stored_study
    study = optuna.load_study(study_name="stored", storage=url)
    record = StudyRecord.read(study)
    assert record.made_by_mtl_search and record.raw_unit_tasks == []
    assert [o.name for o in record.objectives] == study.metric_names == ["task1/mse", "task2/mse", "params"]
    assert [task["name"] for task in record.tasks] == ["task1", "task2"]
    assert all("target_mean" in task for task in record.tasks)
    assert record.pruning["rule"] == "projected" and record.pruning["budget"] == "steps"
    assert [entry["from_trial"] for entry in record.spaces] == [0, 8] and record.space == record.spaces[-1]["space"]
    assert record.hypervolume and record.artifact_dir
    # the study's record writes back what was stored, in the current format
    assert record.to_attrs() == study.user_attrs[STUDY_ATTR] | {SCHEMA_KEY: SCHEMA_VERSION}

    by_state = {state: [t for t in study.trials if t.state == state] for state in States}
    assert by_state[States.COMPLETE] and by_state[States.PRUNED] and by_state[States.FAIL]
    for trial in study.trials:
        stored = TrialRecord.read(trial)
        assert stored.candidate.family == "tree" and stored.summary.startswith("tree ")
        assert stored.to_attrs() == trial.user_attrs | {SCHEMA_KEY: SCHEMA_VERSION}  # nothing lost, nothing added
        assert trial.user_attrs.get(SCHEMA_KEY, 0) == version
    trained = [TrialRecord.read(t) for t in by_state[States.COMPLETE] if TrialRecord.read(t).repeat_of is None]
    for stored in trained:
        assert [entry.epoch for entry in stored.history] == list(range(1, stored.candidate.epochs + 1))
        steps = [entry.steps for entry in stored.history]
        assert all(isinstance(s, int) for s in steps) and steps == sorted(steps) and steps[0] > 0
        assert stored.kept_epoch in [entry.epoch for entry in stored.history] and set(stored.test) == {"task1", "task2"}
    repeats = [TrialRecord.read(t) for t in by_state[States.COMPLETE] if TrialRecord.read(t).repeat_of is not None]
    assert repeats
    for stored in repeats:
        original = TrialRecord.read(study.trials[stored.repeat_of])
        assert stored.candidate == original.candidate and stored.validation == original.validation
        assert not stored.history  # not trained again
    for trial in by_state[States.PRUNED]:
        stored = TrialRecord.read(trial)
        assert stored.prune_reason.startswith("over limit") and stored.costs["params"] > 1000
    assert all("blew up" in TrialRecord.read(t).fail_reason for t in by_state[States.FAIL])


def test_pareto_report_and_export_open_the_stored_study(stored_study, cli, tmp_path):
    url, _ = stored_study
    study = optuna.load_study(study_name="stored", storage=url)
    front = sorted(t.number for t in study.best_trials if TrialRecord.read(t).repeat_of is None)
    assert front

    result = cli("pareto", "stored", "--storage", url, "--format", "json")
    assert result.code == 0, result
    assert [row["number"] for row in json.loads(result.out)] == front

    page = tmp_path / "report.html"
    result = cli("report", "stored", "--storage", url, "--out", str(page))
    assert result.code == 0, result
    html = page.read_text()
    failed = next(t for t in study.trials if t.state == States.FAIL)
    assert "Search space of trials 0 to 7" in html and f"<td>{failed.number}</td>" in html

    # no weights beside the copy: the trial is trained again from its stored candidate, on
    # data rebuilt from the stored description, and scores what the search recorded
    number = front[0]
    result = cli("export", "stored", "--trial", str(number), "--storage", url, "--out", str(tmp_path / "model"))
    assert result.code == 0 and "retrained (train)" in result.out, result
    exported = json.loads((tmp_path / "model" / "metrics.json").read_text())["metrics"]
    validation = next(m["values"] for m in exported if m["split"] == "validation")
    for task, values in TrialRecord.read(study.trials[number]).validation.items():
        assert validation[task] == pytest.approx(values, rel=1e-3)


def test_a_study_stored_by_a_newer_format_is_refused_in_one_line(cli, tmp_path):
    copy = tmp_path / "newer.sqlite3"
    shutil.copyfile(STORED[-1], copy)
    url = f"sqlite:///{copy}"
    study = optuna.load_study(study_name="stored", storage=url)
    study.set_user_attr(STUDY_ATTR, study.user_attrs[STUDY_ATTR] | {SCHEMA_KEY: SCHEMA_VERSION + 1})
    result = cli("pareto", "stored", "--storage", url)
    newer = f"study 'stored' was stored in record format {SCHEMA_VERSION + 1} by a newer mtl-search"
    assert_one_line_error(result, newer, f"formats up to {SCHEMA_VERSION}", "upgrade mtl-search")


def test_a_stored_study_continues_with_trials_of_the_current_format(stored_study, cli, tmp_path):
    from tests.records.make_fixture import QUICK, SPACE

    url, version = stored_study
    space = tmp_path / "steady.yaml"
    space.write_text(SPACE.format(rate=0.01))
    result = cli(
        "run",
        "--trials",
        "2",
        "--space",
        str(space),
        "--storage",
        url,
        "--study-name",
        "stored",
        "--artifacts",
        str(tmp_path / "artifacts"),
        *QUICK,
    )
    assert result.code == 0, result
    study = optuna.load_study(study_name="stored", storage=url)
    added = study.trials[9:]
    assert [t.user_attrs.get(SCHEMA_KEY, 0) for t in study.trials] == [version] * 9 + [SCHEMA_VERSION] * len(added)
    # the budget buys new candidates: repeats of the stored trials, if any, are not counted
    assert len([t for t in added if "repeat_of" not in t.user_attrs]) == 2
    # continued with the first run's space again: the study's record is written anew, in the current format
    assert study.user_attrs[STUDY_ATTR][SCHEMA_KEY] == SCHEMA_VERSION
    assert [entry["from_trial"] for entry in StudyRecord.read(study).spaces] == [0, 8, 9]
    assert all(TrialRecord.read(t).candidate.family == "tree" for t in study.trials)
    assert cli("pareto", "stored", "--storage", url).code == 0
    assert cli("report", "stored", "--storage", url, "--out", str(tmp_path / "report.html")).code == 0
