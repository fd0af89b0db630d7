"""Every command, given wrong input, answers one line naming the problem and exits with 2.

One row per (command, mistake). Rows of a command whose module is not there are skipped, so
the table can name commands before they land. Placeholders in the arguments:
``{db}`` a SQLite file holding study ``s`` (one trial), ``{nodb}`` a SQLite path that does
not exist, ``{tmp}`` the test's folder, ``{busy_port}`` a port something listens on.
"""

from __future__ import annotations

import importlib
import socket
from pathlib import Path

import optuna
import pytest

from mtl_search.cli import COMMANDS
from tests.helpers import assert_one_line_error

MALFORMED_URL = "not a url::"
UNREACHABLE = "postgresql+psycopg2://nobody@127.0.0.1:1/none"  # nothing listens on port 1

STUDY_COMMANDS = ("pareto", "report", "export", "refine", "baselines", "affinity", "pruning")
# Extra arguments a study command needs before it gets to look at the study.
NEEDS = {"export": ["--trial", "0", "--out", "{tmp}/export"], "report": ["--out", "{tmp}/report.html"]}

SPACES = {
    "python_tag.yaml": "families: !!python/object/apply:os.system ['touch {tmp}/pwned']\n",
    "broken.yaml": "families: {tree: [\n",
    "unknown_key.yaml": "families: {tree: {depth: 1}}\ncolour: blue\n",
    "not_a_mapping.yaml": "- just a list\n",
    "bad_range.yaml": "families: {tree: {depth: {low: 3, high: 1}}}\n",
}

ROWS = [
    # run
    ("run", ["--trials", "0"], ["--trials", "'0'"]),
    ("run", ["--trials", "-3"], ["--trials"]),
    ("run", ["--trials", "many"], ["--trials", "'many'"]),
    ("run", ["--startup-trials", "0"], ["--startup-trials", "'0'"]),
    ("run", ["--startup-trials", "4", "--sampler", "random"], ["--startup-trials", "--sampler random"]),
    ("run", ["--workers", "0"], ["--workers"]),
    ("run", ["--grace-period", "1", "--storage", "sqlite:///{tmp}/g.db"], ["--grace-period", "at least 2"]),
    ("run", ["--storage", MALFORMED_URL], ["--storage", "not a valid"]),
    ("run", ["--storage", UNREACHABLE], ["--storage", "cannot open"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--space", "{tmp}/missing.yaml"], ["missing.yaml", "no such file"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--space", "{tmp}/python_tag.yaml"], ["python_tag.yaml"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--space", "{tmp}/broken.yaml"], ["broken.yaml", "not valid YAML"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--space", "{tmp}/unknown_key.yaml"], ["colour", "unknown key"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--space", "{tmp}/not_a_mapping.yaml"], ["not_a_mapping.yaml"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--space", "{tmp}/bad_range.yaml"], ["depth"]),
    (
        "run",
        ["--storage", "sqlite:///{tmp}/r.db", "--space", "sequences"],
        ["sequences.yaml: key stem.sequence_encoder needs sequence data, but data 'synthetic' has vector inputs"],
    ),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--data", "nowhere"], ["--data", "'nowhere'"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--data-option", "colour=blue"], ["colour"]),
    (
        "run",
        ["--storage", "sqlite:///{tmp}/r.db", "--data-option", "rows=lots"],
        ["rows=lots", "expected a whole number"],
    ),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--data-option", "novalue"], ["--data-option", "KEY=VALUE"]),
    (
        "run",
        [
            "--storage",
            "sqlite:///{tmp}/r.db",
            "--data",
            "table",
            "--data-file",
            "{tmp}/missing.csv",
            "--task",
            "y:binary",
        ],
        ["missing.csv"],
    ),
    (
        "run",
        ["--storage", "sqlite:///{tmp}/r.db", "--data-file", "{tmp}/python_tag.yaml", "--task", "y:binary"],
        ["python_tag.yaml"],
    ),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--device", "toaster"], ["--device", "toaster"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--study-name", "bad\nname"], ["--study-name"]),
    ("run", ["--storage", "sqlite:///{tmp}/r.db", "--study-name", ""], ["--study-name ''", "1 to 200"]),
    ("run", ["--storage", "{db}", "--study-name", "s", "--data-option", "rows=500"], ["study 's'", "other data"]),
    # studies
    ("studies", ["--storage", MALFORMED_URL], ["--storage", "not a valid"]),
    ("studies", ["--storage", UNREACHABLE], ["--storage", "cannot open"]),
    ("studies", ["--storage", "{nodb}"], ["--storage", "no database file"]),
    (
        "studies",
        ["--storage", "mysql+pymysql://u:secret@localhost:1/db"],
        ["--storage", "'pymysql'", "not installed", "pip install"],
    ),
    ("run", ["--storage", "sqlite://", "--workers", "2"], ["--workers 2", "in-memory"]),
    ("run", ["--storage", "sqlite:///{db_file}/x.db"], ["--storage", "studies.db is a file, not a folder"]),
    (
        "run",
        ["--storage", "sqlite:///{tmp}/r.db", "--artifacts", "{db_file}/art"],
        ["--artifacts", "studies.db is a file, not a folder"],
    ),
    (
        "export",
        ["s", "--storage", "{db}", "--trial", "0", "--artifacts", "{tmp}/nowhere", "--out", "{tmp}/e"],
        ["--artifacts", "nowhere: no such folder"],
    ),
    # dashboard
    ("dashboard", ["--storage", "{db}", "--port", "{busy_port}", "--no-figures"], ["--port", "in use"]),
    ("dashboard", ["--storage", "{db}", "--port", "99999"], ["--port"]),
    ("dashboard", ["--storage", MALFORMED_URL], ["--storage", "not a valid"]),
    ("dashboard", ["--storage", "{nodb}"], ["--storage"]),
    # export: a trial that does not exist, and a pick rule that makes no sense
    ("export", ["s", "--storage", "{db}", "--trial", "999", "--out", "{tmp}/export"], ["999"]),
    ("export", ["s", "--storage", "{db}", "--pick", "best:nosuchtask", "--out", "{tmp}/export"], ["nosuchtask"]),
    ("export", ["s", "--storage", "{db}", "--trial", "0", "--out", "{db_file}"], ["--out"]),
    # report: an output path that cannot be written (its folder would be a file)
    (
        "report",
        ["s", "--storage", "{db}", "--out", "{db_file}/report.html"],
        ["--out", "studies.db is a file, not a folder"],
    ),
    (
        "export",
        ["s", "--storage", "{db}", "--trial", "0", "--out", "{db_file}/model"],
        ["--out", "studies.db is a file, not a folder"],
    ),
    (
        "pareto",
        ["s", "--storage", "{db}", "--html", "{db_file}/front.html"],
        ["--html", "studies.db is a file, not a folder"],
    ),
    # a page written over a file that is not one (the study itself, by a slip of the tab key)
    (
        "report",
        ["s", "--storage", "{db}", "--out", "{db_file}"],
        ["--out", "studies.db: the file exists and is not an HTML page"],
    ),
    (
        "pareto",
        ["s", "--storage", "{db}", "--html", "{db_file}"],
        ["--html", "studies.db: the file exists and is not an HTML page"],
    ),
    ("refine", ["s", "--storage", "{db}", "--seeds", "0"], ["--seeds"]),
    ("run", ["--precision", "fp8"], ["--precision", "'fp8'"]),
    (
        "run",
        ["--storage", "sqlite:///{tmp}/r.db", "--space", "loss_weights", "--precision", "fp16"],
        ["--precision fp16", "loss weighting gradnorm"],
    ),
    ("refine", ["s", "--storage", "{db}", "--precision", "half"], ["--precision", "'half'"]),
]
# Each study command: an unknown study, a malformed URL, an unreachable server, a missing file.
for _command in STUDY_COMMANDS:
    _extra = NEEDS.get(_command, [])
    ROWS += [
        (_command, ["nosuch", "--storage", "{db}", *_extra], ["'nosuch'", "not found"]),
        (_command, ["s", "--storage", MALFORMED_URL, *_extra], ["--storage", "not a valid"]),
        (_command, ["s", "--storage", UNREACHABLE, *_extra], ["--storage", "cannot open"]),
        (_command, ["s", "--storage", "{nodb}", *_extra], ["--storage", "no database file"]),
    ]
# An unknown flag after a command is that command's mistake, and the message names the command.
for _command in COMMANDS:
    _study = ["s"] if _command in STUDY_COMMANDS else []
    ROWS.append(
        (
            _command,
            [*_study, *NEEDS.get(_command, []), "--bogus"],
            [f"mtl-search {_command}: error: unrecognized arguments: --bogus"],
        )
    )

# The dashboard would serve (and block) if a check were missing: run it in a child process.
IN_CHILD = {"dashboard"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder with a one-trial study ``s``, the bad space files and a busy port."""
    from mtl_search.data.synthetic import make_synthetic
    from mtl_search.search.runner import SearchSettings, run_search
    from mtl_search.search.space import parse_space

    tmp = tmp_path_factory.mktemp("bad-input")
    for name, text in SPACES.items():
        (tmp / name).write_text(text.replace("{tmp}", str(tmp)))
    db = f"sqlite:///{tmp / 'studies.db'}"
    space = parse_space(
        {
            "training": {"epochs": 1, "batch_size": 64},
            "families": {"tree": {"depth": 1, "width": 8}},
            "loss_weighting": {"static": {}},
        }
    )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    data = make_synthetic(dim=8, rows=300)
    run_search(data, space, SearchSettings(study_name="s", storage=db, n_trials=1, sampler="random"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    values = {
        "tmp": str(tmp),
        "db": db,
        "db_file": str(tmp / "studies.db"),
        "nodb": f"sqlite:///{tmp / 'none' / 'absent.db'}",
        "busy_port": str(listener.getsockname()[1]),
    }
    yield values
    listener.close()


def _row_id(row) -> str:
    command, args, _ = row
    return f"{command}:{' '.join(args)[:60]}"


@pytest.mark.parametrize("command,args,fragments", ROWS, ids=[_row_id(row) for row in ROWS])
def test_bad_input_is_one_line_and_exit_2(command, args, fragments, world, cli, cli_process):
    pytest.importorskip(f"mtl_search.cli.{command}", reason=f"command {command} not written yet")
    filled = [arg.format(**world) for arg in args]
    if command in IN_CHILD:
        result = cli_process(command, *filled, timeout=120)
    else:
        result = cli(command, *filled)
    assert_one_line_error(result, *fragments)
    assert not (Path(world["tmp"]) / "pwned").exists()  # nothing in a space file ran as code


def test_the_table_covers_every_command():
    covered = {row[0] for row in ROWS}
    present = {name for name in COMMANDS if importlib.util.find_spec(f"mtl_search.cli.{name}") is not None}
    assert present - covered == set(), "add bad-input rows for these commands"
