"""Commands that train nothing answer without importing torch (it takes seconds to load).

Every command line runs through the CLI's ``main`` in one fresh interpreter, in order; after
each, the probe records whether torch is in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import CliResult, assert_one_line_error

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import contextlib, io, json, sys

from mtl_search.cli import main

report = []
for argv in json.loads(sys.argv[1]):
    torch_before = "torch" in sys.modules
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse: --version, --help and usage errors
            code = exit.code
    report.append({"code": code, "out": out.getvalue(), "err": err.getvalue(),
                   "torch_before": torch_before, "torch_after": "torch" in sys.modules})
print(json.dumps(report))
"""

STUDY = "tiny"  # the trained_study fixture's
ANSWERS = {  # id -> command line; STORAGE stands for the trained study's URL
    "version": ["--version"],
    "help": ["--help"],
    "run --help": ["run", "--help"],
    "studies": ["studies", "--storage", "STORAGE"],
    "pareto": ["pareto", STUDY, "--storage", "STORAGE"],
    "pareto json": ["pareto", STUDY, "--storage", "STORAGE", "--format", "json"],
    "pareto csv": ["pareto", STUDY, "--storage", "STORAGE", "--format", "csv"],
}
REFUSALS = {  # id -> (command line, what the one-line error names)
    "unknown command": (["train"], "invalid choice: 'train'"),
    "unknown flag": (["run", "--no-such-flag"], "--no-such-flag"),
    "trials not a number": (["run", "--trials", "two"], "--trials"),
    "trials below 1": (["run", "--trials", "0"], "--trials"),
    "unknown space": (["run", "--space", "no-such-space"], "space file no-such-space"),
    "bad storage URL": (["run", "--storage", "nosuchdialect://x"], "--storage"),
    "no database": (["studies", "--storage", "sqlite:///absent/studies.db"], "no database file"),
    "pareto, no such study": (["pareto", "nosuch", "--storage", "STORAGE"], "'nosuch' not found"),
    "report, no such study": (["report", "nosuch", "--storage", "STORAGE", "--out", "r.html"], "'nosuch' not found"),
    "export, no such study": (
        ["export", "nosuch", "--storage", "STORAGE", "--out", "out", "--trial", "0"],
        "'nosuch' not found",
    ),
    "refine, no such study": (["refine", "nosuch", "--storage", "STORAGE"], "'nosuch' not found"),
    "affinity, no such study": (["affinity", "nosuch", "--storage", "STORAGE"], "'nosuch' not found"),
    "pruning, no such study": (["pruning", "nosuch", "--storage", "STORAGE"], "'nosuch' not found"),
}


@pytest.fixture(scope="module")
def probed(trained_study, tmp_path_factory):
    """id -> the probe's record of that command line, all run in one interpreter in an empty folder."""
    url = trained_study[0]
    lines = dict(ANSWERS) | {name: argv for name, (argv, _) in REFUSALS.items()}
    argvs = [[url if arg == "STORAGE" else arg for arg in argv] for argv in lines.values()]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs)],
        cwd=tmp_path_factory.mktemp("empty"),
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert process.returncode == 0, process.stderr
    return dict(zip(lines, json.loads(process.stdout)))


def _without_torch(record: dict) -> None:
    assert not record["torch_before"], "an earlier command line imported torch: see the first failure"
    assert not record["torch_after"], f"imported torch: {record}"


@pytest.mark.parametrize("name", ANSWERS)
def test_a_command_that_trains_nothing_answers_without_torch(probed, name):
    record = probed[name]
    assert record["code"] == 0, record
    _without_torch(record)


def test_the_answers_are_the_real_ones(probed):
    assert probed["version"]["out"].startswith("mtl-search ")
    assert STUDY in probed["studies"]["out"]
    rows = json.loads(probed["pareto json"]["out"])
    assert rows and all(row["state"] == "COMPLETE" for row in rows)
    assert probed["pareto csv"]["out"].count("\n") == len(rows) + 1  # a header, then one line per front trial


@pytest.mark.parametrize("name", REFUSALS)
def test_a_refusal_answers_without_torch(probed, name):
    record = probed[name]
    assert_one_line_error(CliResult(record["code"], record["out"], record["err"]), REFUSALS[name][1])
    _without_torch(record)
