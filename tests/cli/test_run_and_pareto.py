"""The walking skeleton end to end: run a search, continue it, read its front."""

import csv
import io
import json

import optuna
import pytest

from tests.helpers import assert_one_line_error

QUICK = ("--data-option", "rows=300", "--data-option", "dim=8", "--epochs", "2", "--quiet")


def test_three_trial_search_gives_trials_and_a_front(cli, storage_url):
    result = cli("run", "--trials", "3", "--storage", storage_url, "--study-name", "s", *QUICK)
    assert result.code == 0, result
    assert "Pareto front of s" in result.out
    study = optuna.load_study(study_name="s", storage=storage_url)
    assert len(study.trials) == 3
    assert study.metric_names == ["task1/mse", "task2/mse"]
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert study.best_trials
    trial = study.best_trials[0]
    from mtl_search.architectures import family_names

    assert trial.user_attrs["candidate"]["architecture"]["family"] in family_names()
    assert len(trial.user_attrs["history"]) == 2
    assert set(trial.user_attrs["test"]) == {"task1", "task2"}
    assert study.user_attrs["mtl_search"]["data"]["source"] == "synthetic"


def test_a_population_run_gives_its_trials_a_front_and_says_how_they_trained(cli, storage_url):
    result = cli("run", "--trials", "5", "--population", "3", "--storage", storage_url, "--study-name", "pop", *QUICK)
    assert result.code == 0, result
    assert "Pareto front of pop" in result.out
    study = optuna.load_study(study_name="pop", storage=storage_url)
    assert len(study.trials) == 5 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    fused = sum(t.user_attrs["population_size"] > 1 for t in study.trials)
    assert f"trained to the end: {fused} fused with others" in result.out
    assert result.out.count("trained to the end: ") == 1


def test_a_run_whose_every_trial_failed_exits_1_and_a_later_good_run_exits_0(cli, storage_url, tmp_path):
    diverging = tmp_path / "diverging.yaml"  # Adam at learning rate 1e4: every trial diverges
    diverging.write_text("families: {tree: {}}\ntraining: {learning_rate: 10000.0}\n")
    result = cli(
        "run", "--trials", "2", "--storage", storage_url, "--study-name", "f", "--space", str(diverging), *QUICK
    )
    assert result.code == 1, result
    assert (
        result.err.strip().splitlines()[-1]
        == "mtl-search run: error: all 2 trial(s) of this run failed (reasons above)"
    )
    assert "trial 0 failed: " in result.out and "trial 1 failed: " in result.out and "training loss" in result.out
    # every trial over a hard limit: nothing could enter the front either
    result = cli(
        "run", "--trials", "2", "--storage", storage_url, "--study-name", "f-limits", "--max-params", "1", *QUICK
    )
    assert result.code == 1, result
    assert result.err.strip().splitlines()[-1] == (
        "mtl-search run: error: none of the 2 trial(s) of this run could enter the "
        "front: 0 failed, 2 over a hard limit (reasons above)"
    )
    # the failures stay in the study; a run that completes a trial is a success again
    result = cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "f", *QUICK)
    assert result.code == 0, result
    assert len(optuna.load_study(study_name="f", storage=storage_url).trials) == 3


def test_running_again_with_the_same_name_adds_trials(cli, storage_url):
    assert cli("run", "--trials", "2", "--storage", storage_url, "--study-name", "again", *QUICK).code == 0
    assert cli("run", "--trials", "2", "--storage", storage_url, "--study-name", "again", *QUICK).code == 0
    study = optuna.load_study(study_name="again", storage=storage_url)
    assert len(study.trials) == 4
    assert len(optuna.get_all_study_names(storage_url)) == 1


def test_continuing_with_another_space_warns_and_the_study_keeps_every_space(cli, storage_url):
    assert cli("run", "--trials", "2", "--storage", storage_url, "--study-name", "sp", "--no-prune", *QUICK).code == 0
    same = cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "sp", "--no-prune", *QUICK)
    assert same.code == 0 and "warning" not in same.err
    other = cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "sp", "--space", "branching", *QUICK)
    assert other.code == 0, other
    warning = [line for line in other.err.splitlines() if "another search space" in line]
    assert len(warning) == 1 and warning[0].startswith(
        "mtl-search run: warning: study 'sp' continues with another search space"
    )
    assert "families" in warning[0] and "pruning" in warning[0] and "trials from 3 on" in warning[0]
    study = optuna.load_study(study_name="sp", storage=storage_url)
    spaces = study.user_attrs["spaces"]
    assert [entry["from_trial"] for entry in spaces] == [0, 3]
    assert study.user_attrs["mtl_search"]["space"] == spaces[1]["space"]  # the space the study searches now
    assert spaces[0]["space"]["pruning"]["enabled"] is False and spaces[1]["space"]["pruning"]["enabled"] is True
    from mtl_search.visualization.report import report_html

    page = report_html(study)
    assert "<h3>Search space of trials 0 to 2</h3>" in page and "<h3>Search space of trials 3 on</h3>" in page
    # a space with other choices for a searched parameter (the families): Optuna cannot store
    # two sets of choices under one name, so the run draws it under a name of its own
    experts = cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "sp", "--space", "experts", *QUICK)
    assert experts.code == 0, experts
    last = optuna.load_study(study_name="sp", storage=storage_url).trials[-1]
    assert last.state == optuna.trial.TrialState.COMPLETE
    assert last.user_attrs["candidate"]["architecture"]["family"] in ("mmoe", "ple")
    assert any(name.startswith("family~") for name in last.params)


def test_continuing_with_other_data_is_refused(cli, storage_url):
    assert cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "d", *QUICK).code == 0
    result = cli(
        "run",
        "--trials",
        "1",
        "--storage",
        storage_url,
        "--study-name",
        "d",
        *QUICK,
        "--data-option",
        "correlation=0.9",
    )
    assert_one_line_error(result, "study 'd' was made with other data (options.correlation: 0.5 in the study, 0.9 now)")


def test_epochs_from_the_command_line_are_stored_and_kept_when_continuing(cli, storage_url):
    """--epochs is what the trials train, so it is what the study stores (and its report
    shows); a front must not mix trials trained for different lengths."""
    assert cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "e", *QUICK).code == 0  # --epochs 2
    study = optuna.load_study(study_name="e", storage=storage_url)
    assert study.user_attrs["mtl_search"]["space"]["training"]["epochs"] == 2
    result = cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "e", *QUICK, "--epochs", "3")
    assert_one_line_error(result, "study 'e' trained its trials for 2 epochs and this run would train 3", "--epochs 2")
    assert cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "e", *QUICK).code == 0
    assert len(optuna.load_study(study_name="e", storage=storage_url).trials) == 2


def test_a_continued_study_and_its_space_agree_on_searching_the_epochs(cli, storage_url, tmp_path):
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text("training: {epochs: 2}\nfamilies: {tree: {depth: 1, width: 8}}\nloss_weighting: {static: {}}\n")
    searched = tmp_path / "searched.yaml"
    searched.write_text(fixed.read_text().replace("epochs: 2", "epochs: {choices: [1, 2]}"))
    quick = [a for a in QUICK if a not in ("--epochs", "2")]  # the space files say
    assert (
        cli(
            "run", "--trials", "1", "--storage", storage_url, "--study-name", "fixed", *quick, "--space", str(fixed)
        ).code
        == 0
    )
    result = cli(
        "run", "--trials", "1", "--storage", storage_url, "--study-name", "fixed", *quick, "--space", str(searched)
    )
    assert_one_line_error(
        result, "study 'fixed' trained its trials for 2 epochs and this space searches training.epochs"
    )
    # a study that searches its epochs goes on searching them
    assert (
        cli(
            "run",
            "--trials",
            "2",
            "--storage",
            storage_url,
            "--study-name",
            "searched",
            *quick,
            "--space",
            str(searched),
        ).code
        == 0
    )
    assert (
        cli(
            "run",
            "--trials",
            "1",
            "--storage",
            storage_url,
            "--study-name",
            "searched",
            *quick,
            "--space",
            str(searched),
        ).code
        == 0
    )
    # a study with no trained trial yet is held to its stored number (two machines starting it together agree)
    from mtl_search.data.synthetic import make_synthetic
    from mtl_search.errors import UserError
    from mtl_search.search.runner import SearchSettings, run_search
    from mtl_search.search.space import load_space

    data, space = make_synthetic(rows=300, dim=8), load_space(fixed)
    run_search(data, space, SearchSettings("empty", storage=storage_url, n_trials=0, save_artifacts=False))
    with pytest.raises(UserError, match="study 'empty' trained its trials for 2 epochs and this run would train 3"):
        run_search(
            data, space, SearchSettings("empty", storage=storage_url, n_trials=1, epochs=3, save_artifacts=False)
        )


def test_continuing_with_another_checkpoint_policy_is_refused(cli, storage_url, tmp_path):
    """A front of last-epoch values must not fill up with best-epoch ones (studies made before
    training.checkpoint existed kept the last epoch)."""
    last = tmp_path / "last.yaml"
    last.write_text(
        "training: {epochs: 1, checkpoint: last}\nfamilies: {tree: {depth: 1, width: 8}}\nloss_weighting: {static: {}}\n"
    )
    best = tmp_path / "best.yaml"
    best.write_text(last.read_text().replace("checkpoint: last", "checkpoint: best"))
    assert (
        cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "c", *QUICK, "--space", str(last)).code
        == 0
    )
    result = cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "c", *QUICK, "--space", str(best))
    assert_one_line_error(result, "study 'c'", "last epoch", "training.checkpoint: last")
    study = optuna.load_study(study_name="c", storage=storage_url)
    assert len(study.trials) == 1 and study.trials[0].user_attrs["kept_epoch"] == 2  # --epochs 2, the last kept


def test_a_study_from_before_training_checkpoint_continues_only_with_last(cli, storage_url, tmp_path):
    last = tmp_path / "last.yaml"
    last.write_text(
        "training: {epochs: 1, checkpoint: last}\nfamilies: {tree: {depth: 1, width: 8}}\nloss_weighting: {static: {}}\n"
    )
    assert (
        cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "old", *QUICK, "--space", str(last)).code
        == 0
    )
    # what a study made before the option stored: a space without training.checkpoint
    study = optuna.load_study(study_name="old", storage=storage_url)
    meta = study.user_attrs["mtl_search"]
    del meta["space"]["training"]["checkpoint"]
    study.set_user_attr("mtl_search", meta)
    assert_one_line_error(
        cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "old", *QUICK),
        "study 'old'",
        "last epoch",
        "training.checkpoint: last",
    )
    assert (
        cli("run", "--trials", "1", "--storage", storage_url, "--study-name", "old", *QUICK, "--space", str(last)).code
        == 0
    )


def test_same_seed_same_study_results(cli, tmp_path):
    values = []
    for name in ("one", "two"):
        url = f"sqlite:///{tmp_path / name}.db"
        assert cli("run", "--trials", "2", "--storage", url, "--study-name", "s", "--seed", "3", *QUICK).code == 0
        values.append([t.values for t in optuna.load_study(study_name="s", storage=url).trials])
    assert values[0] == values[1]


@pytest.fixture
def finished_study(cli, storage_url):
    assert cli("run", "--trials", "4", "--storage", storage_url, "--study-name", "f", *QUICK).code == 0
    return storage_url


def test_pareto_formats(cli, finished_study, tmp_path):
    study = optuna.load_study(study_name="f", storage=finished_study)
    front = sorted(t.number for t in study.best_trials)

    as_json = json.loads(cli("pareto", "f", "--storage", finished_study, "--format", "json").out)
    assert [row["number"] for row in as_json] == front
    for row in as_json:
        assert set(row["values"]) == {"task1/mse", "task2/mse"}
        assert row["architecture"]["family"] == row["family"] and row["summary"].startswith(row["family"])
        assert "params" in row

    rows = list(csv.DictReader(io.StringIO(cli("pareto", "f", "--storage", finished_study, "--format", "csv").out)))
    assert [int(r["number"]) for r in rows] == front
    # the epoch whose weights each trial returns (the default space keeps the best of --epochs 2)
    assert [int(r["kept_epoch"]) for r in rows] == [study.trials[n].user_attrs["kept_epoch"] for n in front]
    assert all(1 <= int(r["kept_epoch"]) <= 2 for r in rows) and all(row["kept_epoch"] for row in as_json)

    table = cli("pareto", "f", "--storage", finished_study)
    assert table.code == 0 and "Pareto front of f" in table.out and "epoch" in table.out

    html = tmp_path / "front.html"
    assert cli("pareto", "f", "--storage", finished_study, "--html", str(html)).code == 0
    text = html.read_text()
    assert "Pareto front" in text and "plotly" in text.lower()
    # its own page it replaces, whatever the name; another file that is not HTML it refuses
    page = tmp_path / "front.txt"
    assert cli("pareto", "f", "--storage", finished_study, "--html", str(page)).code == 0
    assert cli("pareto", "f", "--storage", finished_study, "--html", str(page)).code == 0
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    assert cli("pareto", "f", "--storage", finished_study, "--html", str(data)).code == 2
    assert data.read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("output", [[], ["--format", "json"], ["--format", "csv"]])
def test_a_reader_that_goes_away_ends_the_output_quietly(finished_study, output):
    # `mtl-search pareto f | head -c 1`: no traceback or error when head closes the pipe, whether
    # the table (rich) or plain prints hit it, buffered as in a normal shell
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"COLUMNS": "60"}
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails
    try:
        writer = subprocess.run(
            [sys.executable, "-m", "mtl_search", "pareto", "f", "--storage", finished_study, *output],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    finally:
        os.close(write_end)
    assert writer.stderr == "", writer.stderr
    assert writer.returncode == 141


def test_studies_lists_counts_and_front_size(cli, finished_study, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    study = optuna.load_study(study_name="f", storage=finished_study)
    study.enqueue_trial({"family": "tree"})  # waiting, as affinity seeding's trees are before they run
    result = cli("studies", "--storage", finished_study)
    assert result.code == 0
    header = next(line for line in result.out.splitlines() if "study" in line and "waiting" in line)
    row = next(line for line in result.out.splitlines() if line.strip("│┃ ").startswith("f "))
    cells = dict(
        zip([c.strip() for c in header.split("┃") if c.strip()], [c.strip() for c in row.split("│") if c.strip()])
    )
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert cells["trials"] == str(len(states)) and cells["waiting"] == "1"
    assert cells["complete"] == str(states.count(optuna.trial.TrialState.COMPLETE))
    assert cells["front"] == str(len(study.best_trials))


def test_bad_space_file_is_one_line(cli, storage_url, tmp_path):
    for text, key in (
        ("families: {tree: {}}\nbogus: 1\n", "key bogus: unknown key"),
        ("families: {tree: {depth: deep}}\n", "key families.tree.depth"),
        ("families: {tree: {width: {low: 9, high: 3}}}\n", "empty range"),
    ):
        space = tmp_path / "bad.yaml"
        space.write_text(text)
        assert_one_line_error(cli("run", "--space", str(space), "--storage", storage_url, *QUICK), str(space), key)


@pytest.mark.parametrize("url", ["not a url", "sqlite:/:/x", "postgresql://u:p@host:notaport/db", "nosuchdb://x"])
def test_malformed_storage_url_is_one_line(cli, url):
    assert_one_line_error(cli("run", "--storage", url, *QUICK), "--storage")
    assert_one_line_error(cli("studies", "--storage", url), "--storage")


def test_a_password_in_a_storage_url_never_reaches_the_terminal(cli):
    # a port that is not a number: the URL does not parse, and its text used to be printed whole
    for url in (
        "postgresql://mtl:s3cret@db-host:notaport/mtl",
        "postgresql+nosuchdriver://mtl:s3cret@db-host:5432/mtl",
    ):
        result = cli("studies", "--storage", url)
        assert result.code == 2 and "--storage" in result.err and "s3cret" not in result.err + result.out, result
        assert "mtl:***@db-host" in result.err


def test_unknown_study_is_one_line(cli, finished_study):
    assert_one_line_error(cli("pareto", "nope", "--storage", finished_study), "study 'nope' not found")


def test_usage_errors_are_one_line(cli):
    assert_one_line_error(cli("run", "--trials", "zero"), "--trials")
    assert_one_line_error(cli("run", "--sampler", "bogus"), "--sampler")
    assert_one_line_error(cli("run", "--data-option", "noequals"), "--data-option")
    # the samplers' and numpy's seeds are 32-bit unsigned: outside, Optuna raised a traceback
    assert_one_line_error(cli("run", "--seed", "-1"), "--seed", "'-1' must be between 0 and 4294967295")
    assert_one_line_error(cli("run", "--seed", str(2**32)), "--seed")
    assert_one_line_error(cli("run", "--timeout", "nan"), "--timeout", "'nan' must be a positive finite number")
    assert_one_line_error(cli("run", "--max-latency-ms", "inf"), "--max-latency-ms")


def test_ctrl_c_before_a_command_starts_is_one_line(tmp_path):
    # building the parser imports every command (torch among them: about 2 s); a Ctrl-C
    # then came out of the console script as a traceback. In a process of its own: a stopped
    # command ends its process at once (mtl_search.stops.exit_now)
    import subprocess
    import sys

    script = (
        "import mtl_search.cli as cli\n"
        "def interrupted_import():\n"
        "    raise KeyboardInterrupt\n"
        "cli.build_parser = interrupted_import\n"
        "cli.console_script()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stderr == "mtl-search: interrupted\n"


def test_real_console_script_help_and_errors(cli_process, tmp_path):
    assert cli_process("--help").code == 0
    for command in ("run", "studies", "pareto"):
        result = cli_process(command, "--help")
        assert result.code == 0 and "usage: mtl-search " + command in result.out
    bad = cli_process("run", "--storage", "bogus url", "--quiet")
    assert_one_line_error(bad, "--storage")


def test_a_given_that_names_no_task_stores_no_study(cli, storage_url, tmp_path):
    """The data is checked before the study is written: the fixed file then runs under the same name."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=150), "b": rng.normal(size=150)})
    frame["big"], frame["small"] = (frame.a > 0).astype(int), ((frame.a > 0) & (frame.b > 0)).astype(int)
    frame.to_csv(tmp_path / "t.csv", index=False)
    description = tmp_path / "d.yaml"
    description.write_text(
        "file: t.csv\ntasks:\n  - {name: big, kind: binary}\n  - {name: small, kind: binary, given: bigg}\n"
    )
    space = tmp_path / "s.yaml"
    space.write_text("training: {epochs: 1}\nfamilies: {tree: {depth: 1, width: 8}}\nloss_weighting: {static: {}}\n")
    run = (
        "run",
        "--data-file",
        str(description),
        "--space",
        str(space),
        "--trials",
        "1",
        "--storage",
        storage_url,
        "--study-name",
        "err_d3",
        "--quiet",
    )
    assert_one_line_error(cli(*run), "task 'small': given=bigg is not a task of the data (tasks: big, small)")
    assert "no studies yet" in cli("studies", "--storage", storage_url).out
    description.write_text(description.read_text().replace("bigg", "big"))
    assert cli(*run).code == 0
    # the front says that small's metrics are conditional on big
    shown = cli("pareto", "err_d3", "--storage", storage_url).out
    assert "small: metrics of P(small = 1 | big = 1), on the rows where big = 1 (given=big)" in shown


def test_help_answers_without_importing_torch_and_offers_what_the_search_takes():
    import subprocess
    import sys

    code = (
        "import sys\nfrom mtl_search.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch loaded' if 'torch' in sys.modules else 'no torch')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().endswith("no torch"), result.stderr  # torch takes about 2 s to import
    from mtl_search.cli import run
    from mtl_search.search import pruning, study

    assert run.SAMPLER_CHOICES == study.SAMPLERS and run.PRUNE_RULE_CHOICES == pruning.RULES
