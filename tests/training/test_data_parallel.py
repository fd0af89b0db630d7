"""One candidate trained data-parallel by 2 processes (gloo on the CPU) is the candidate one
process trains on the same batches; the CLI under torchrun runs a search; what cannot combine
with it is refused in one line."""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtl_search.data.synthetic import make_synthetic
from mtl_search.errors import UserError
from mtl_search.training import train_candidate

WORLD = 2
HARD_SHARING = {"family": "tree", "widths": [16], "groups": [[["task1", "task2"]]], "tower": {"widths": [8]}}
TREE = {
    "family": "tree",
    "widths": [16, 16],
    "groups": [[["task1", "task2"]], [["task1"], ["task2"]]],
    "tower": {"widths": [8]},
}
# loss-only weightings (linear, non-linear in the losses, with learned parameters, with state
# kept between batches) and gradient methods (per-task gradients of parameters, of the shared
# representation, and gradient norms)
WEIGHTINGS = {
    "static": ({"method": "static", "weights": {"task1": 1.0, "task2": 0.5}}, TREE),
    "gls": ({"method": "gls"}, TREE),
    "uncertainty": ({"method": "uncertainty"}, TREE),
    "famo": ({"method": "famo"}, TREE),
    "dwa": ({"method": "dwa"}, TREE),
    "rlw": ({"method": "rlw"}, TREE),
    "stch": ({"method": "stch"}, TREE),
    "pcgrad": ({"method": "pcgrad"}, TREE),
    "mgda": ({"method": "mgda", "normalization": "l2"}, HARD_SHARING),
    "gradnorm": ({"method": "gradnorm", "alpha": 1.5}, TREE),
    "db_mtl": ({"method": "db_mtl"}, TREE),
    "gradvac": ({"method": "gradvac"}, TREE),
}
if all(importlib.util.find_spec(module) for module in ("torchjd", "quadprog")):  # the jd extra
    WEIGHTINGS["upgrad"] = ({"method": "upgrad"}, TREE)


def tiny_data():
    """Seeded, with a third of task2's training labels missing: shards then hold unequal
    numbers of labelled rows, which the whole batch's loss must weigh right."""
    data = make_synthetic(dim=6, rows=260, correlation=0.5, seed=3)
    data.train.targets["task2"][::3] = math.nan
    return data


def candidate(name: str) -> dict:
    weighting, spec = WEIGHTINGS[name]
    # 37 rows a batch: shards of 19 and 18 rows
    training = {"epochs": 3, "learning_rate": 5e-3, "batch_size": 37, "seed": 4}
    return {"architecture": spec, "training": training, "loss_weighting": weighting}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train_in_process(rank: int, port: int, names: list[str], folder: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from mtl_search.training.data_parallel import DataParallel

    ranks = DataParallel.start(torch.device("cpu"))
    try:
        data = tiny_data()
        refused = candidate("static") | {"loss_weighting": {"method": "graddrop"}}
        try:
            train_candidate(data, refused, device="cpu", data_parallel=ranks)
        except UserError as error:
            (Path(folder) / f"refused-{rank}.txt").write_text(str(error))
        for name in names:
            result = train_candidate(data, candidate(name), device="cpu", data_parallel=ranks)
            state = {key: value.detach().clone() for key, value in result.model.state_dict().items()}
            torch.save(
                {"state": state, "history": result.history, "validation": result.validation},
                Path(folder) / f"{name}-{rank}.pt",
            )
    finally:
        ranks.close()


@pytest.fixture(scope="module")
def data_parallel_results(tmp_path_factory):
    """Every weighting of WEIGHTINGS trained by 2 processes (one start of the processes for all)."""
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("data-parallel")
    context = mp.start_processes(
        _train_in_process,
        args=(free_port(), list(WEIGHTINGS), str(folder)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = 240
    started = time.monotonic()
    while not context.join(timeout=5):
        if time.monotonic() - started > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"data-parallel training did not finish in {deadline} s")
    results = {
        name: [torch.load(folder / f"{name}-{rank}.pt", weights_only=False) for rank in range(WORLD)]
        for name in WEIGHTINGS
    }
    results["refused"] = [(folder / f"refused-{rank}.txt").read_text() for rank in range(WORLD)]
    return results


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WEIGHTINGS))
def test_two_processes_train_the_candidate_one_process_trains(name, data_parallel_results):
    alone = train_candidate(tiny_data(), candidate(name), device="cpu")
    lead, other = data_parallel_results[name]
    for key, value in alone.model.state_dict().items():
        torch.testing.assert_close(lead["state"][key], value, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
        # the other process took the same steps (its batch normalisation buffers are averaged too)
        torch.testing.assert_close(other["state"][key], lead["state"][key], rtol=1e-5, atol=1e-6)
    for together, single in zip(lead["history"], alone.history):
        for task, loss in single["train_loss"].items():
            assert together["train_loss"][task] == pytest.approx(loss, rel=1e-4), (name, task)
        for task, weight in single["weights"].items():
            assert together["weights"][task] == pytest.approx(weight, rel=1e-3, abs=1e-6), (name, task)
        assert together["steps"] == single["steps"]
    for task, metrics in alone.validation.items():
        for metric, value in metrics.items():
            assert lead["validation"][task][metric] == pytest.approx(value, rel=1e-3, abs=1e-6), (name, task, metric)
    assert other["validation"] == {}  # rank 0 alone scores the epochs


@pytest.mark.slow
def test_a_weighting_drawing_from_the_global_generator_is_refused(data_parallel_results):
    for message in data_parallel_results["refused"]:  # on every process, before they exchange anything
        assert message.startswith("loss weighting graddrop: draws its random masks"), message
        assert "cannot train data-parallel" in message


REPO = Path(__file__).resolve().parents[2]
QUICK = ("--data-option", "rows=300", "--data-option", "dim=8", "--epochs", "2", "--quiet", "--device", "cpu")


@pytest.mark.slow
def test_a_search_under_torchrun_completes_its_trials(tmp_path):
    from mtl_search.search.storage import open_storage

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    # a space offering a weighting that cannot train data-parallel among others: searched without it
    space = tmp_path / "space.yaml"
    space.write_text("families: {tree: {depth: 1, width: 16}}\nloss_weighting: {static: {}, graddrop: {}, dwa: {}}\n")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD)]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "mtl_search"]
    command += ["run", "--trials", "2", "--storage", url, "--study-name", "together", "--sampler", "random", *QUICK]
    command += ["--space", str(space)]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONUNBUFFERED="1")
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    import optuna

    study = optuna.load_study(study_name="together", storage=open_storage(url))
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE"]
    assert {trial.params["loss_weighting"] for trial in study.trials} <= {"static", "dwa"}
    assert "loss weighting graddrop cannot train data-parallel" in done.stderr
    assert "left out of this search" in done.stderr
    assert "Pareto front of together" in done.stdout  # printed once, by rank 0
    assert done.stdout.count("Pareto front of together") == 1


def _as_torchrun_would_start(*args: str, tmp_path: Path) -> list[subprocess.CompletedProcess]:
    """The command in 2 processes with torchrun's environment (a refusal comes before they meet)."""
    port = str(free_port())
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mtl_search", *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(
                os.environ,
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(WORLD),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
        )
        for rank in range(WORLD)
    ]
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragment",
    [
        (("run", "--workers", "2"), "--workers 2: under torchrun"),
        (("run", "--population", "2"), "--population 2"),
        (("run", "--device", "cuda:1"), "--device cuda:1"),
        (("pareto", "some-study"), "only `run` trains data-parallel"),
    ],
)
def test_what_cannot_run_data_parallel_is_refused_in_one_line(args, fragment, tmp_path):
    lead, other = _as_torchrun_would_start(*args, "--storage", f"sqlite:///{tmp_path / 's.db'}", tmp_path=tmp_path)
    assert lead.returncode == other.returncode == 2, (lead.stderr, other.stderr)
    lines = [line for line in lead.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], lead.stderr
    assert other.stderr.strip() == ""  # said once, by rank 0


@pytest.mark.slow
def test_a_space_of_ensembles_is_refused_before_any_trial(tmp_path):
    space = tmp_path / "ensembles.yaml"
    space.write_text("families: {tree: {depth: 1, width: 8}}\nensemble: {members: {choices: [1, 3]}}\n")
    storage = f"sqlite:///{tmp_path / 's.db'}"
    args = ("run", "--space", str(space), "--data-option", "rows=300", "--trials", "2", "--study-name", "e")
    lead, _ = _as_torchrun_would_start(*args, "--storage", storage, tmp_path=tmp_path)
    assert lead.returncode == 2, lead.stderr
    assert "key ensemble.members: a deep ensemble" in lead.stderr
    import optuna

    names = optuna.get_all_study_names(storage)  # refused before the study was created, or before a trial
    assert names == [] or optuna.load_study(study_name="e", storage=storage).trials == []
