"""`mtl-search dashboard`: the real optuna-dashboard server on the study storage, over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest

from tests.helpers import assert_one_line_error


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read()


@pytest.fixture
def dashboard(trained_study, tmp_path):
    """The dashboard of the shared study, served from a subprocess on a free loopback port."""
    url, _, _ = trained_study
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mtl_search", "dashboard", "--storage", url, "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"),
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                get(port, "/api/meta")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {process.communicate()[0]}") from None
                time.sleep(0.5)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_dashboard_shows_objectives_notes_figures_and_artifacts(dashboard, trained_study):
    url, name, _ = trained_study
    studies = json.loads(get(dashboard, "/api/studies"))["study_summaries"]
    study_id = next(s["study_id"] for s in studies if s["study_name"] == name)
    detail = json.loads(get(dashboard, f"/api/studies/{study_id}"))
    assert detail["objective_names"] == ["task1/mse", "task2/mse"]
    assert {"mtl-search:pareto-front", "mtl-search:best-per-family"} <= {
        g["id"] for g in detail["plotly_graph_objects"]
    }
    study = optuna.load_study(study_name=name, storage=url)
    trial = detail["trials"][0]
    assert trial["note"]["body"].startswith("### Trial 0")
    assert {a["filename"] for a in trial["artifacts"]} == {"architecture.json", "weights.safetensors"}
    spec = next(a for a in trial["artifacts"] if a["filename"] == "architecture.json")
    served = json.loads(get(dashboard, f"/artifacts/{study_id}/{trial['trial_id']}/{spec['artifact_id']}"))
    assert served == study.trials[0].user_attrs["candidate"]["architecture"]


def test_port_in_use_is_a_one_line_error(cli, trained_study):
    url, _, _ = trained_study
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("dashboard", "--storage", url, "--port", str(port))
    assert_one_line_error(result, f"--port {port}", "in use")
