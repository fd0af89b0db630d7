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
