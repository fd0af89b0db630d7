"""The Python entry points as docs/how-to/python.md shows them: its example runs as written."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import optuna

import mtl_search.search
import mtl_search.export

DOC = Path(__file__).resolve().parents[1] / "docs" / "how-to" / "python.md"


def test_every_documented_search_entry_point_resolves():
    for name in mtl_search.search.__all__:
        assert callable(getattr(mtl_search.search, name)), name
    for name in mtl_search.export.__all__:
        assert getattr(mtl_search.export, name) is not None


def test_the_documented_example_runs_and_its_study_is_an_ordinary_one(monkeypatch, tmp_path):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the example writes only into its own temporary folder
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    printed = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), namespace)
    study, knee, result = namespace["study"], namespace["knee"], namespace["result"]
    assert len(study.trials) == 8
    assert knee.number in {t.number for t in mtl_search.search.pareto_trials(study)}
    assert result.weights_source == "artifact"  # export found the study's artifacts by itself
    assert 0 < mtl_search.search.front_hypervolume(study) <= 1.1**2  # normalised, reference point 1.1 per objective
    lines = printed.getvalue().splitlines()
    assert lines[-1].startswith("artifact {") and "(5," in lines[-1]
    assert not list(tmp_path.iterdir())  # nothing written in the working folder


def test_a_table_made_in_python_is_searched_and_retrained_from_the_data_given(tmp_path):
    import pytest

    from mtl_search.data.table import make_table_data, targets_from_declarations
    from mtl_search.errors import UserError
    from mtl_search.export import export_trial
    from mtl_search.search import SearchSettings, parse_space, run_search
    from tests.helpers import spend_and_churn

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    frame = spend_and_churn()
    data = make_table_data(frame, targets_from_declarations(["churn:binary", "spend:regression"]))
    space = parse_space(
        {"training": {"epochs": 2}, "families": {"tree": {"depth": 1, "width": 8}}, "loss_weighting": {"static": {}}}
    )
    study = run_search(
        data, space, SearchSettings(study_name="frame", storage=f"sqlite:///{tmp_path / 's.db'}", n_trials=1)
    )
    trial = study.trials[0]
    with pytest.raises(UserError, match=r"given from Python .* export_trial\(\.\.\., data=\.\.\.\)"):
        export_trial(study, trial, tmp_path / "a", retrain=True)
    other = make_table_data(
        frame.assign(spend=frame["spend"] * 2), targets_from_declarations(["churn:binary", "spend:regression"])
    )
    with pytest.raises(UserError, match=r"data= is not the data the study was made with \(tasks\.spend\.target_mean"):
        export_trial(study, trial, tmp_path / "b", retrain=True, data=other)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    result = export_trial(study, trial, tmp_path / "c", retrain=True, data=data)
    assert result.weights_source == "retrained (train+validation)"


def test_a_search_from_python_refuses_what_the_cli_refuses(tmp_path):
    import pytest

    from mtl_search.data import load_data
    from mtl_search.errors import UserError
    from mtl_search.search import SearchSettings, load_space, run_search

    data = load_data("synthetic", {"rows": "300", "dim": "8"})
    for field, value in (("epochs", 0), ("n_trials", -1), ("timeout", 0)):
        settings = SearchSettings(study_name="bad", storage=f"sqlite:///{tmp_path / 's.db'}", **{field: value})
        with pytest.raises(UserError, match=f"^{field} {value}: must be"):
            run_search(data, load_space("default"), settings)
    for field, value, message in (
        ("device", "gpu", "--device 'gpu': not a device name"),
        ("seed_strategy", "affinty", "seed_strategy 'affinty': expected one of none, affinity"),
        ("affinity_measure", "easy hard", "affinity measure 'easy_hard' is not|affinity measure 'easy hard'"),
        ("seed_trees", "grwn", "affinity tree_shape 'grwn'"),
        ("sampler", "cmaes", "sampler 'cmaes': expected one of tpe, nsga2, random"),
        ("startup_trials", -3, "startup_trials -3: must be at least 1"),
        ("worker_index", -1, "worker_index -1: must be at least 0"),
    ):
        settings = SearchSettings(study_name="bad", storage=f"sqlite:///{tmp_path / 's.db'}", **{field: value})
        with pytest.raises(UserError, match=message):
            run_search(data, load_space("default"), settings)
    assert not (tmp_path / "s.db").exists() or optuna.get_all_study_names(f"sqlite:///{tmp_path / 's.db'}") == []


def test_the_cli_spelling_of_the_affinity_measure_works_from_python(tmp_path):
    from mtl_search.data import load_data
    from mtl_search.search import SearchSettings, parse_space, run_search

    data = load_data("synthetic", {"rows": "300", "dim": "4"})
    space = parse_space({"training": {"epochs": 1}, "families": {"tree": {"depth": 1, "width": 4}}})
    settings = SearchSettings(
        study_name="m",
        storage=f"sqlite:///{tmp_path / 's.db'}",
        n_trials=2,
        seed_strategy="affinity",
        affinity_measure="easy-hard",
        save_artifacts=False,
    )
    study = run_search(data, space, settings)
    assert len(study.trials) == 2 and study.user_attrs["affinity"]["measure"] == "easy_hard"


def test_import_mtl_search_loads_neither_torch_nor_optuna_until_a_name_is_used():
    import subprocess
    import sys

    code = (
        "import sys, mtl_search\n"
        "print(sorted(m for m in ('torch', 'optuna') if m in sys.modules))\n"
        "mtl_search.run_search\n"
        "print(sorted(m for m in ('torch', 'optuna') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.split("\n")[:2] == ["[]", "['optuna', 'torch']"], result.stderr


def test_every_top_level_name_is_the_defining_modules_own_and_documented():
    import importlib

    import mtl_search

    public = set(mtl_search.__all__) - {"__version__"}
    assert {
        "run_search",
        "SearchSettings",
        "load_space",
        "load_data",
        "pareto_trials",
        "pick_trial",
        "export_trial",
        "load",
    } <= public
    assert public <= set(dir(mtl_search))
    for name in public:
        value = getattr(mtl_search, name)
        assert value is getattr(importlib.import_module(value.__module__), name)
        assert len((value.__doc__ or "").split()) >= 12, f"{name} needs a docstring that says what it does"
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'run'"):
        _ = mtl_search.run


def test_the_package_docstring_example_runs_as_written(monkeypatch, tmp_path):
    import mtl_search

    lines = mtl_search.__doc__.split("::\n", 1)[1].splitlines()
    # the literal block: the indented lines after "::", up to the first line of prose
    end = next(i for i, line in enumerate(lines) if line and not line.startswith("    "))
    code = textwrap.dedent("\n".join(lines[:end]))
    monkeypatch.chdir(tmp_path)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    namespace: dict = {}
    exec(compile(code, "mtl_search/__init__.py", "exec"), namespace)
    assert len(namespace["study"].trials) == 3 and namespace["trial"] in namespace["front"]
    assert set(namespace["model"].task_names) == {task.name for task in namespace["data"].tasks}
