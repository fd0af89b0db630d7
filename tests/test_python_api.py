"""The Python entry points as docs/python_api.md shows them: its example runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import optuna

import mtl_search.search
import mtl_search.export

DOC = Path(__file__).resolve().parents[1] / "docs" / "python_api.md"


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
    assert 0 < mtl_search.search.front_hypervolume(study) <= 1.1 ** 2  # normalised, reference point 1.1 per objective
    lines = printed.getvalue().splitlines()
    assert lines[-1].startswith("artifact {") and "(5," in lines[-1]
    assert not list(tmp_path.iterdir())  # nothing written in the working folder
