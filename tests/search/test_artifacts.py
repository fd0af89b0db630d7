"""Trial artifacts: each completed trial's spec and weights reach the artifact store."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from mtl_search.architectures import build_model
from mtl_search.search.artifacts import SPEC_FILE, WEIGHTS_FILE, artifact_dir, download_weights, open_artifact_store
from mtl_search.training import evaluate


def test_every_completed_trial_stores_its_spec_and_weights(trained_study):
    url, name, data = trained_study
    study = optuna.load_study(study_name=name, storage=url)
    store = open_artifact_store(Path(url.removeprefix("sqlite:///")).parent / "artifacts", create=False)
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        metas = {m.filename: m for m in optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)}
        assert set(metas) == {SPEC_FILE, WEIGHTS_FILE}
        with store.open_reader(metas[SPEC_FILE].artifact_id) as reader:
            assert json.loads(reader.read()) == trial.user_attrs["candidate"]["architecture"]
        # the stored weights are the trained ones: they reproduce the recorded validation metrics
        model = build_model(trial.user_attrs["candidate"]["architecture"], data.input_schema, data.tasks)
        assert download_weights(study, trial, store, model)
        scores = evaluate(model, data, data.validation)
        for task in data.task_names:
            assert scores[task]["mse"] == pytest.approx(trial.user_attrs["validation"][task]["mse"], rel=1e-5)


def test_each_trained_trial_gets_a_readable_architecture_note(trained_study):
    from optuna_dashboard._note import get_note_from_system_attrs

    url, name, _ = trained_study
    study = optuna.load_study(study_name=name, storage=url)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    trial = study.trials[0]
    body = get_note_from_system_attrs(attrs, trial._trial_id)["body"]
    assert f"Trial {trial.number}" in body and trial.user_attrs["summary"] in body
    assert "| depth | width |" in body  # the task-grouping tree as a table


def test_artifact_folder_follows_the_storage(tmp_path, monkeypatch):
    monkeypatch.delenv("MTL_SEARCH_ARTIFACTS", raising=False)
    assert artifact_dir(f"sqlite:///{tmp_path}/db/x.db") == tmp_path / "db" / "artifacts"
    assert artifact_dir("sqlite:///studies/mtl-search.db") == Path("studies/artifacts")
    assert artifact_dir("sqlite:///:memory:") is None
    assert artifact_dir("postgresql://u@host/db") == Path("studies/artifacts")
    assert artifact_dir("postgresql://u@host/db", tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.setenv("MTL_SEARCH_ARTIFACTS", str(tmp_path / "env"))
    assert artifact_dir(f"sqlite:///{tmp_path}/x.db") == tmp_path / "env"
    assert artifact_dir(f"sqlite:///{tmp_path}/x.db", tmp_path / "flag") == tmp_path / "flag"


def _one_trial_search(storage: str, artifacts: str | None):
    from mtl_search.data.synthetic import make_synthetic
    from mtl_search.search import SearchSettings, parse_space, run_search

    space = parse_space(
        {
            "training": {"epochs": 1, "batch_size": 64},
            "families": {"tree": {"depth": 1, "width": 8}},
            "loss_weighting": {"static": {}},
        }
    )
    settings = SearchSettings(
        study_name="own-folder", storage=storage, sampler="random", n_trials=1, artifacts=artifacts
    )
    return run_search(make_synthetic(dim=8, rows=300), space, settings)


def test_export_finds_the_folder_a_search_was_told_to_use(tmp_path, monkeypatch):
    from mtl_search.export import export_trial

    monkeypatch.delenv("MTL_SEARCH_ARTIFACTS", raising=False)
    study = _one_trial_search(f"sqlite:///{tmp_path / 'studies.db'}", str(tmp_path / "elsewhere"))
    assert study.user_attrs["artifact_dir"] == str((tmp_path / "elsewhere").resolve())
    result = export_trial(study, study.trials[0], tmp_path / "model")  # not artifacts/ beside the database
    assert result.weights_source == "artifact"


def test_a_bad_artifact_folder_is_refused_before_a_study_is_stored(tmp_path):
    from mtl_search.errors import UserError
    from mtl_search.search.storage import open_storage

    (tmp_path / "notes.txt").write_text("mine")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    with pytest.raises(UserError, match="--artifacts .*notes.txt is a file, not a folder"):
        _one_trial_search(url, str(tmp_path / "notes.txt" / "art"))
    assert optuna.get_all_study_names(open_storage(url, heartbeat=False)) == []


def test_an_in_memory_study_runs_without_heartbeat_errors(cli_process):
    # a subprocess: pytest would turn the heartbeat thread's exceptions into warnings
    result = cli_process(
        "run", "--storage", "sqlite://", "--trials", "2", "--epochs", "1", "--data-option", "rows=300", "--quiet"
    )
    assert result.code == 0 and "Pareto front" in result.out, result
    assert "Traceback" not in result.err  # the heartbeat thread once found no tables there, each trial
