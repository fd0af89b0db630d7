"""``mtl-search run --workers N`` on SQLite: exact budget, no lock errors, faults lose nothing."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
import weakref

import optuna
import sqlalchemy
import pytest

from mtl_search.search.workers import LocalBudget, TrialBudget, optimize_study
from tests.search.parallel_helpers import (
    FINISHED,
    RAN_TO_END,
    run_args,
    start_cli,
    states,
    study_created,
    trials,
    wait_for,
    worker_pids,
    write_space,
)


def test_local_budget_is_exact_and_none_means_unlimited():
    budget = LocalBudget(2)
    assert [budget.claim() for _ in range(3)] == [True, True, False]
    assert all(LocalBudget(None).claim() for _ in range(100))


def test_shared_budget_is_exact_across_processes():
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    budget = TrialBudget(25, context)
    counts = context.Array("i", 2)
    workers = [context.Process(target=_claim_until_empty, args=(budget, counts, i)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(counts[:]) == 25
    assert budget.left == 0


def _claim_until_empty(budget, counts, index):
    while budget.claim():
        counts[index] += 1


def test_optimize_study_runs_exactly_the_budget_and_respects_the_timeout():
    study = optuna.create_study()
    optimize_study(study, lambda trial: trial.suggest_float("x", 0, 1), LocalBudget(5))
    assert len(study.trials) == 5
    optimize_study(study, lambda trial: time.sleep(0.05) or 0.0, LocalBudget(None), timeout=0.2)
    assert 5 < len(study.trials) < 15


def _search_with_workers(tmp_path, study: str, n_trials: int, workers: int) -> tuple[str, str, list]:
    """A successful ``run --workers`` on a fresh SQLite file: (stdout, stderr, its trials)."""
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    process = start_cli(run_args(write_space(tmp_path), storage, study, n_trials, "--workers", str(workers)), tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out, err, trials(storage, study)


@pytest.mark.slow
def test_four_workers_share_one_sqlite_study_without_lock_errors(tmp_path):
    out, err, found = _search_with_workers(tmp_path, "four", 16, 4)
    assert "locked" not in err and "Traceback" not in err
    assert "Pareto front of four" in out
    assert len(found) == 16  # the budget is exact across workers
    assert all(t.state in RAN_TO_END for t in found), [t.state for t in found]
    # Each worker samples with its own seed: no two random candidates coincide.
    assert len({tuple(sorted(t.params.items())) for t in found}) == 16


def _training(storage: str, name: str) -> int:
    """Running trials that have sampled their candidate (and so are training)."""
    try:
        return sum(
            1
            for t in trials(storage, name)
            if t.state == optuna.trial.TrialState.RUNNING and "candidate" in t.user_attrs
        )
    except (KeyError, sqlalchemy.exc.OperationalError):  # not created yet, or tables being created
        return 0


def _still_running(process) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the run ended before the moment to stop it: {process.communicate()[1]}")
    return True


def _kill_a_worker_mid_trial(folder, space) -> tuple[str, list]:
    """Run 8 trials with 2 workers in ``folder``, SIGKILL one while both train, then run one more
    trial after the grace period; (storage URL, the study's trials)."""
    folder.mkdir()
    storage = f"sqlite:///{folder / 'studies.db'}"
    args = run_args(space, storage, "kill", 8, "--workers", "2", "--grace-period", "2")
    process = start_cli(args, folder)
    # Kill one worker while both are in the middle of a trial: sampled (its candidate stored)
    # and training, so that the retry can be checked against the killed trial's parameters.
    wait_for(
        lambda: (
            _still_running(process)
            and study_created(folder / "studies.db", "kill")
            and _training(storage, "kill") == 2
            and len(worker_pids(process.pid)) == 2
        )
    )
    victim = worker_pids(process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    assert "killed by SIGKILL" in err and "Traceback" not in err
    # A later run (after the grace period) fails the stale trial if no survivor did yet, and
    # retries it before anything else.
    time.sleep(2.5)
    later = start_cli(run_args(space, storage, "kill", 1, "--grace-period", "2"), folder)
    assert later.wait(timeout=300) == 0, later.stderr.read()
    return storage, trials(storage, "kill")


@pytest.mark.slow
def test_a_killed_worker_loses_no_trial(tmp_path, cli):
    # long enough trials that, even on a loaded machine, both workers are seen training at once
    space = write_space(tmp_path, epochs=150)
    for attempt in range(3):
        storage, found = _kill_a_worker_mid_trial(tmp_path / f"attempt{attempt}", space)
        assert all(t.state in FINISHED for t in found), states(storage, "kill")
        failed = [t for t in found if t.state == optuna.trial.TrialState.FAIL]
        if failed:
            break
        # the victim finished its trial between the check and the kill: no trial was lost (its
        # claim on the budget may have been: 8 or 9 trials), but nothing was retried; try again
        assert len(found) in (8, 9), states(storage, "kill")
    assert len(failed) == 1  # the killed worker's trial
    retries = [t for t in found if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retries) == 1
    assert retries[0].state in RAN_TO_END
    assert retries[0].params == failed[0].params
    # 8 + 1 trials were started; every one but the killed ran to its end.
    assert len(found) == 9
    # what happened to it is told, though the killed process could not record a reason
    summary = cli("pareto", "kill", "--storage", storage).out
    assert "1 failed (1 lost with their worker: no heartbeat)" in summary and "running" not in summary
    refused = cli(
        "export", "kill", "--trial", str(failed[0].number), "--storage", storage, "--out", str(tmp_path / "m")
    )
    assert (
        f"no heartbeat for the grace period: its worker died or was killed; retried as trial {retries[0].number})"
        in refused.err
    )


def test_ctrl_c_during_a_trial_fails_it_with_the_reason_and_stops_the_loop():
    study = optuna.create_study()

    def objective(trial):
        if trial.number == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C while this trial trains
            time.sleep(5)  # never reached: the handler raises first
        return trial.suggest_float("x", 0, 1)

    with pytest.raises(KeyboardInterrupt):
        optimize_study(study, objective, LocalBudget(10))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.FAIL]
    assert study.trials[2].user_attrs["fail_reason"] == "interrupted"


def test_sigterm_during_a_trial_fails_it_as_terminated_and_stops_the_loop():
    from mtl_search.errors import Terminated

    study = optuna.create_study()

    def objective(trial):
        if trial.number == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler or `kill` stopping the run
            time.sleep(5)  # never reached: the handler raises first
        return trial.suggest_float("x", 0, 1)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated):
        optimize_study(study, objective, LocalBudget(10))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert study.trials[1].user_attrs["fail_reason"] == "terminated"
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is put back


def test_ctrl_c_landing_in_a_garbage_collector_callback_is_raised_at_the_next_epoch(capfd):
    # Python drops exceptions raised in weakref callbacks and __del__ (printing "Exception
    # ignored" and a traceback); SQLAlchemy's callbacks run during training, so Ctrl-C can land there
    from mtl_search.search.workers import raise_if_stopped

    study = optuna.create_study()
    epochs_after_the_stop = []

    class Collected:
        pass

    def objective(trial):
        if trial.number == 1:
            thing = Collected()
            finalizer = weakref.ref(thing, lambda ref: signal.raise_signal(signal.SIGINT))
            del thing  # the callback runs now; the Ctrl-C raised in it is dropped by Python
            for epoch in range(3):
                epochs_after_the_stop.append(epoch)
                raise_if_stopped()  # what the objective calls after each epoch
            del finalizer
        return trial.suggest_float("x", 0, 1)

    hook_before = sys.unraisablehook
    with pytest.raises(KeyboardInterrupt):
        optimize_study(study, objective, LocalBudget(10))
    assert epochs_after_the_stop == [0]
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    assert study.trials[1].user_attrs["fail_reason"] == "interrupted"
    assert capfd.readouterr().err.count("Traceback") == 0
    assert sys.unraisablehook is hook_before  # put back


def test_a_ctrl_c_kept_while_training_is_raised_after_the_next_step_not_the_epoch(capfd):
    # a Ctrl-C landing in a garbage-collector callback during a long epoch: kept, and raised by
    # the trainer's check after its next optimiser step instead of when the epoch ends
    from mtl_search.data.synthetic import make_synthetic
    from mtl_search.search.workers import raise_if_stopped
    from mtl_search.training import train_candidate

    data = make_synthetic(dim=8, rows=2000, seed=0)
    architecture = {"family": "tree", "widths": [8], "groups": [[data.task_names]]}
    candidate = {"architecture": architecture, "training": {"epochs": 2, "batch_size": 16, "seed": 0}}
    study = optuna.create_study()
    training, finished_epochs = [], []

    def stop_in_a_collection(phase, info):
        if training and phase == "start" and len(training) == 1:
            training.append("stopped")
            signal.raise_signal(signal.SIGINT)  # raised inside the callback: Python drops it

    def objective(trial):
        training.append("started")

        def on_epoch(epoch, scores, record):
            finished_epochs.append(epoch)
            raise_if_stopped()  # what the search's objective calls after each epoch

        train_candidate(data, candidate, on_epoch=on_epoch)
        return 0.0

    gc.callbacks.append(stop_in_a_collection)
    try:
        with pytest.raises(KeyboardInterrupt):
            optimize_study(study, objective, LocalBudget(10))
    finally:
        gc.callbacks.remove(stop_in_a_collection)
    assert training == ["started", "stopped"]
    assert finished_epochs == []  # stopped within the first epoch (of about 75 steps)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]
    assert study.trials[0].user_attrs["fail_reason"] == "interrupted"
    assert capfd.readouterr().err.count("Traceback") == 0


def test_raise_if_stopped_does_nothing_outside_a_search():
    from mtl_search.search.workers import raise_if_stopped

    raise_if_stopped()


def test_ctrl_c_between_trials_stops_before_the_next_one():
    study = optuna.create_study()

    def interrupt_after_second(study, trial):
        if trial.number == 1:
            os.kill(os.getpid(), signal.SIGINT)  # lands while the loop saves the finished trial

    with pytest.raises(KeyboardInterrupt):
        optimize_study(
            study, lambda trial: trial.suggest_float("x", 0, 1), LocalBudget(10), callbacks=[interrupt_after_second]
        )
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2


def _stop_a_running_search(
    tmp_path, study: str, stop, *, code: int, word: str, completed: int, extra: tuple = ()
) -> tuple:
    """Start a 2-worker run (with ``extra`` flags), ``stop(process)`` once ``completed`` trials finished and one runs;
    check it ends with exit status ``code``, says ``word`` and leaves no trial RUNNING, every
    stopped trial failed with the reason ``word``. Returns (space, storage, trials)."""
    space = write_space(tmp_path, epochs=6)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    process = start_cli(run_args(space, storage, study, 50, "--workers", "2", *extra), tmp_path)
    wait_for(
        lambda: (
            _still_running(process)
            and study_created(tmp_path / "studies.db", study)
            and states(storage, study)["COMPLETE"] >= completed
            and states(storage, study)["RUNNING"] >= 1
        )
    )
    stop(process)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert word in err and "Traceback" not in err
    found = trials(storage, study)
    assert all(t.state in FINISHED for t in found), states(storage, study)
    # a worker stopped mid-trial records it with the reason; one between trials records nothing
    # (which of the two happens depends on timing; both are tested in-process above)
    stopped = [t for t in found if t.state == optuna.trial.TrialState.FAIL]
    assert all(t.user_attrs.get("fail_reason") == word for t in stopped)
    assert len(found) < 50
    return space, storage, found


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path):
    # what a terminal's Ctrl-C does: SIGINT to the whole process group
    space, storage, found = _stop_a_running_search(
        tmp_path,
        "stop",
        lambda process: os.killpg(process.pid, signal.SIGINT),
        code=130,
        word="interrupted",
        completed=2,
    )
    completed = {t.number: t.values for t in found if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(completed) >= 2

    resumed = start_cli(run_args(space, storage, "stop", 2), tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    after = trials(storage, "stop")
    assert len(after) == len(found) + 2
    assert {t.number: t.values for t in after if t.number in completed} == completed


@pytest.mark.slow
def test_ctrl_c_stops_workers_running_populations_cleanly(tmp_path):
    _, _, found = _stop_a_running_search(
        tmp_path,
        "stop-populations",
        lambda process: os.killpg(process.pid, signal.SIGINT),
        code=130,
        word="interrupted",
        completed=3,
        extra=("--population", "3"),
    )
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in found) >= 3


@pytest.mark.slow
def test_sigterm_to_the_run_reaches_its_workers_and_leaves_no_trial_running(tmp_path):
    # SIGTERM to the parent alone, as a scheduler sends it: the parent passes it on
    _stop_a_running_search(
        tmp_path, "term", lambda process: process.terminate(), code=143, word="terminated", completed=1
    )


def test_more_workers_than_trials_start_one_per_trial(tmp_path):
    _, err, found = _search_with_workers(tmp_path, "few", 1, 3)
    assert "--workers 3 for --trials 1: starting 1" in err
    assert len(found) == 1


def test_a_stop_landing_in_a_storage_write_lets_the_write_finish_and_is_raised_after_it(tmp_path):
    # A KeyboardInterrupt inside SQLAlchemy skips the session's rollback; the open transaction
    # then made the trial's FAIL record fail with "database is locked" when another process wrote.
    from mtl_search.search.workers import raise_if_stopped

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'studies.db'}")
    study = optuna.create_study(storage=storage)
    after_the_write = []

    def stop_during(conn, cursor, statement, parameters, context, executemany):
        if "trial_user_attributes" in statement and "INSERT" in statement:
            signal.raise_signal(signal.SIGINT)  # the handler runs here, inside SQLAlchemy

    def objective(trial):
        if trial.number == 1:
            sqlalchemy.event.listen(storage.engine, "before_cursor_execute", stop_during)
            try:
                trial.set_user_attr("epoch", 1)  # the epoch record being written
            finally:
                sqlalchemy.event.remove(storage.engine, "before_cursor_execute", stop_during)
            after_the_write.append(True)
            raise_if_stopped()  # the next safe point
        return trial.suggest_float("x", 0, 1)

    with pytest.raises(KeyboardInterrupt):
        optimize_study(study, objective, LocalBudget(10))
    assert after_the_write == [True]
    stopped = study.trials[1]
    assert stopped.state == optuna.trial.TrialState.FAIL
    assert stopped.user_attrs["epoch"] == 1 and stopped.user_attrs["fail_reason"] == "interrupted"


def test_a_stop_during_a_shielded_block_is_raised_when_the_block_ends():
    from mtl_search.search.workers import shielded

    study = optuna.create_study()
    reached = []

    def objective(trial):
        if trial.number == 1:
            with shielded():
                os.kill(os.getpid(), signal.SIGINT)
                reached.append("rest of the block")
            reached.append("after the block")  # never: the stop is raised as the block ends
        return trial.suggest_float("x", 0, 1)

    with pytest.raises(KeyboardInterrupt):
        optimize_study(study, objective, LocalBudget(10))
    assert reached == ["rest of the block"]
    assert study.trials[1].user_attrs["fail_reason"] == "interrupted"


def test_a_worker_stopped_while_it_starts_runs_no_trial(monkeypatch):
    from mtl_search.errors import Terminated
    from mtl_search.search import workers

    # what the start-up handler keeps when SIGTERM arrives while the worker loads its data
    monkeypatch.setattr(workers, "_startup_stop", None)
    workers._keep_startup_stop(signal.SIGTERM, None)
    study = optuna.create_study()
    with pytest.raises(Terminated):
        optimize_study(study, lambda trial: trial.suggest_float("x", 0, 1), LocalBudget(10))
    assert study.trials == []
