"""A storage call that lost its connection is retried, and a retried write lands once."""

from __future__ import annotations

import optuna
import pytest

from mtl_search.search.reconnect import CREATE_TOKEN_ATTR, ReconnectingRDBStorage, StorageUnreachable
from mtl_search.search.storage import open_storage

pytestmark = pytest.mark.postgres


def _study(url: str) -> tuple[ReconnectingRDBStorage, int]:
    storage = open_storage(url, heartbeat=False, retry_seconds=30)
    assert isinstance(storage, ReconnectingRDBStorage)
    return storage, storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")


def _cut_connections(storage: ReconnectingRDBStorage) -> None:
    """Kill this storage's server connections, as a restart does (from a connection of our own)."""
    with storage.engine.connect() as connection:
        connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_call_whose_connection_was_cut_is_retried_in_one_line(postgres_url, capsys):
    storage, study_id = _study(postgres_url)
    trial_id = storage.create_new_trial(study_id)
    storage.engine.pool._pre_ping = False  # reuse the cut connection, as a call mid-restart would
    _cut_connections(storage)
    storage.set_trial_user_attr(trial_id, "epoch", 1)
    assert storage.get_trial(trial_id).user_attrs == {"epoch": 1}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mtl-search: storage unreachable, retrying for up to 30 s: " in err


def test_a_retried_final_state_that_had_landed_counts_as_written(postgres_url):
    storage, study_id = _study(postgres_url)
    trial_id = storage.create_new_trial(study_id)
    tell = optuna.storages.RDBStorage.set_trial_state_values
    assert tell(storage, trial_id, optuna.trial.TrialState.COMPLETE, [0.5])
    # the server committed, the answer was lost: the retry finds the trial as it asked
    assert storage._state_values_again(tell, trial_id, optuna.trial.TrialState.COMPLETE, [0.5]) is True
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # finished otherwise: not ours
        storage._state_values_again(tell, trial_id, optuna.trial.TrialState.FAIL)


def test_a_retried_trial_creation_that_had_landed_creates_no_second_trial(postgres_url):
    storage, study_id = _study(postgres_url)
    trial = storage._create_new_trial(study_id)
    token = trial.system_attrs[CREATE_TOKEN_ATTR]
    again = storage._created_before(study_id, token)
    assert again is not None and again._trial_id == trial._trial_id
    assert storage._created_before(study_id, "another") is None
    assert len(storage.get_all_trials(study_id)) == 1


def test_past_the_retry_time_the_call_fails_in_one_line_and_works_once_the_server_is_back(own_postgres_server):
    storage, _ = _study(own_postgres_server.create_database())
    storage.retry_seconds = storage._outage.retry_seconds = 1
    own_postgres_server.halt()
    try:
        with pytest.raises(StorageUnreachable, match=r"stayed unreachable for 1 s \(.*\); a trial left running"):
            storage.get_all_studies()
        with pytest.raises(StorageUnreachable):  # at once now, for a worker to stop promptly
            storage.get_study_id_from_name("s")
    finally:
        own_postgres_server.resume()
    assert storage.get_study_id_from_name("s") is not None
