"""``mtl-search run --executor ray``: the local workers' guarantees with the workers as Ray tasks.

A Ray cluster of our own runs on 127.0.0.1 for the module (``ray start --head`` in a temporary
folder). It is stopped by ending its processes, found by that folder: ``ray stop`` would stop
every Ray instance of the machine, other people's included.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from tests.helpers import assert_one_line_error
from tests.search.parallel_helpers import (
    FINISHED,
    RAN_TO_END,
    run_args,
    start_cli,
    states,
    study_created,
    trials,
    wait_for,
    write_space,
)
from tests.postgres import _free_port


def _ray_executable() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _end(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def ray_cluster():
    """(address, environment) of a 2-CPU Ray cluster on 127.0.0.1 for this module's tests; the
    environment holds the cluster's own authentication token, which a driver needs to join it."""
    pytest.importorskip("ray")
    # a token of its own rather than ~/.ray/auth_token, which every Ray user of the machine shares
    environment = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # short: Ray's unix sockets live under it, and a socket path may not exceed 107 characters
    temp_dir = tempfile.mkdtemp(prefix="mtlray-")
    port = _free_port()
    started = subprocess.run(
        [
            _ray_executable(),
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            "2",
            "--include-dashboard",
            "false",
            "--object-store-memory",
            str(100 * 1024 * 1024),
            "--temp-dir",
            temp_dir,
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, **environment),
    )
    try:
        assert started.returncode == 0, started.stderr
        yield f"127.0.0.1:{port}", environment
    finally:
        ours = _processes_mentioning(temp_dir)
        _end([child for pid in ours for child in _children(pid)] + ours)


def _start_on_ray(
    cluster: tuple[str, dict], folder: Path, space: Path, storage: str, study: str, n_trials: int, *extra: str
):
    """``mtl-search run`` of the tiny search with ``--executor ray`` on ``cluster``, started in ``folder``."""
    address, environment = cluster
    args = run_args(space, storage, study, n_trials, "--executor", "ray", "--ray-address", address, *extra)
    return start_cli(args, folder, env=environment)


@pytest.mark.slow
def test_ray_workers_on_a_local_cluster_run_the_whole_budget(tmp_path, ray_cluster):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    process = _start_on_ray(ray_cluster, tmp_path, write_space(tmp_path), storage, "ray", 6, "--workers", "2")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "locked" not in err
    assert "Pareto front of ray" in out
    found = trials(storage, "ray")
    assert len(found) == 6  # the budget is exact across the Ray workers
    assert all(t.state in RAN_TO_END for t in found), states(storage, "ray")
    # each worker samples with its own seed, as local workers do
    assert len({tuple(sorted(t.params.items())) for t in found}) == 6


def _ray_worker_pids(folder: Path) -> list[int]:
    """This test's Ray worker processes: Ray names them after the task; they work in the run's folder."""
    pids = []
    for pid in _processes_mentioning("ray::search_worker"):
        try:
            if Path(f"/proc/{pid}/cwd").resolve() == folder.resolve():
                pids.append(pid)
        except OSError:
            pass
    return pids


def _training(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """Running trials that have sampled their candidate (and so are training)."""
    try:
        return [
            t
            for t in trials(storage, name)
            if t.state == optuna.trial.TrialState.RUNNING and "candidate" in t.user_attrs
        ]
    except Exception:  # the study not created yet, or its tables being created
        return []


def _still_running(process) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the run ended before the moment to stop it: {process.communicate()[1]}")
    return True


def _kill_a_ray_worker_mid_trial(folder: Path, space: Path, cluster: tuple[str, dict]) -> tuple[str, list, str]:
    folder.mkdir()
    storage = f"sqlite:///{folder / 'studies.db'}"
    process = _start_on_ray(cluster, folder, space, storage, "kill", 8, "--workers", "2", "--grace-period", "2")
    wait_for(
        lambda: (
            _still_running(process)
            and study_created(folder / "studies.db", "kill")
            and len(_training(storage, "kill")) == 2
            and len(_ray_worker_pids(folder)) == 2
        ),
        timeout=180,
    )
    os.kill(_ray_worker_pids(folder)[0], signal.SIGKILL)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    return storage, trials(storage, "kill"), err


@pytest.mark.slow
def test_a_killed_ray_worker_is_replaced_and_its_trial_retried(tmp_path, ray_cluster):
    # long enough trials that both workers are seen training at once, and the survivors run on
    # past the grace period after the kill
    space = write_space(tmp_path, epochs=150)
    for attempt in range(3):
        storage, found, err = _kill_a_ray_worker_mid_trial(tmp_path / f"attempt{attempt}", space, ray_cluster)
        assert all(t.state in FINISHED for t in found), states(storage, "kill")
        failed = [t for t in found if t.state == optuna.trial.TrialState.FAIL]
        if failed:
            break
        # the victim had just finished its trial (nothing lost, nothing to retry): try again
        assert len(found) == 8, states(storage, "kill")
    assert len(failed) == 1, states(storage, "kill")  # the killed worker's trial
    assert "Ray worker" in err and "its process died" in err and "go to the worker started in its place" in err
    retries = [t for t in found if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retries) == 1
    assert retries[0].state in RAN_TO_END
    assert retries[0].params == failed[0].params
    # the killed trial's claim went back to the budget: all 8 trials ran to their end
    assert sum(t.state in RAN_TO_END for t in found) == 8
    assert len(found) == 9


@pytest.mark.slow
@pytest.mark.parametrize(
    ("send", "code", "word"),
    [
        # a terminal's Ctrl-C: SIGINT to the driver's process group (Ray's workers are in groups of their own)
        (lambda process: os.killpg(process.pid, signal.SIGINT), 130, "interrupted"),
        (lambda process: process.terminate(), 143, "terminated"),  # a scheduler's SIGTERM to the driver alone
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_stopping_the_driver_stops_the_ray_workers_and_leaves_no_trial_running(tmp_path, ray_cluster, send, code, word):
    # long, unpruned trials, so that the stop lands while the workers train (not between trials)
    space = write_space(tmp_path, epochs=300)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    process = _start_on_ray(ray_cluster, tmp_path, space, storage, "stop", 50, "--workers", "2", "--no-prune")
    wait_for(
        lambda: (
            _still_running(process)
            and study_created(tmp_path / "studies.db", "stop")
            and len(_training(storage, "stop")) == 2
        ),
        timeout=180,
    )
    send(process)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert word in err and "Traceback" not in err
    found = trials(storage, "stop")
    assert all(t.state in FINISHED for t in found), states(storage, "stop")
    stopped = [t for t in found if t.state == optuna.trial.TrialState.FAIL]
    assert stopped and all(t.user_attrs.get("fail_reason") == word for t in stopped)
    assert len(found) < 50
    # the workers have ended with the driver
    wait_for(lambda: not _ray_worker_pids(tmp_path), timeout=30)


def test_ray_flags_need_the_ray_executor(cli):
    result = cli("run", "--ray-address", "127.0.0.1:6379", "--trials", "1")
    assert_one_line_error(result, "--ray-address", "--executor ray")
    result = cli("run", "--executor", "ray", "--ray-gpus-per-worker", "-0.5")
    assert result.code == 2 and "--ray-gpus-per-worker" in result.err


def test_an_address_where_nothing_listens_is_refused_in_one_line(cli, tmp_path):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_free_port()}"
    storage = f"sqlite:///{tmp_path / 'ray.db'}"
    result = cli("run", "--executor", "ray", "--ray-address", address, "--trials", "1", "--storage", storage)
    assert_one_line_error(result, f"--ray-address {address}", "nothing answers there")


def test_a_local_ray_instance_warns_of_more_cpus_than_the_machine_has(capsys):
    pytest.importorskip("ray")
    from mtl_search.search.ray_workers import RayWorkerPool

    cores = os.cpu_count() or 1
    pool = RayWorkerPool(2, 2, print, cpus=cores)
    try:
        assert f"2 workers x {cores} CPUs on this machine's {cores} CPU cores" in capsys.readouterr().err
    finally:
        pool.ray.shutdown()


def test_without_ray_the_ray_executor_names_the_extra(tmp_path):
    # a `ray` that cannot be imported, ahead of any installed one
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-m", "mtl_search", "run", "--executor", "ray", "--trials", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "mtl-search run: error: --executor ray: Ray is not installed (pip install 'mtl-search[ray]')"
    ]
