"""What users trust: nothing they load runs as code, servers stay local, paths stay where named."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mtl_search
from tests.helpers import assert_one_line_error

PACKAGE = Path(mtl_search.__file__).parent


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            yield node, owner, name


def test_no_source_unpickles_evaluates_or_loads_yaml_unsafely():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, owner, name in _calls(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and name == "load":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner in ("pickle", "dill", "cloudpickle", "marshal") and name in ("load", "loads"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "yaml" and name not in ("safe_load", "safe_dump", "dump", "YAMLError"):
                problems.append(f"{where}: yaml.{name} (use yaml.safe_load)")
            if isinstance(node.func, ast.Name) and name in ("eval", "exec"):  # not model.eval()
                problems.append(f"{where}: {name}()")
    assert problems == []


def test_a_space_file_cannot_run_code(tmp_path, cli):
    marker = tmp_path / "pwned"
    space = tmp_path / "evil.yaml"
    space.write_text(f"families: !!python/object/apply:os.system ['touch {marker}']\n")
    result = cli("run", "--space", str(space), "--storage", f"sqlite:///{tmp_path / 's.db'}")
    assert_one_line_error(result, "evil.yaml")
    assert not marker.exists()


def test_the_dashboard_listens_on_this_machine_only_by_default():
    pytest.importorskip("mtl_search.cli.dashboard")
    from mtl_search.cli import build_parser

    assert build_parser().parse_args(["dashboard"]).host == "127.0.0.1"


@pytest.mark.slow
def test_a_study_name_is_never_a_path(tmp_path, cli_process):
    """A study name full of path syntax stays a name in the database: nothing appears outside the
    folders the user named."""
    work = tmp_path / "work"
    work.mkdir()
    space = work / "tiny.yaml"
    space.write_text(
        "training: {epochs: 1, batch_size: 64}\nfamilies: {tree: {depth: 1, width: 8}}\nloss_weighting: {static: {}}\n"
    )
    before = set(tmp_path.rglob("*"))
    name = "../../escaped/..\\x"
    result = cli_process(
        "run",
        "--space",
        str(space),
        "--data-option",
        "rows=200",
        "--data-option",
        "dim=8",
        "--trials",
        "1",
        "--quiet",
        "--study-name",
        name,
        cwd=work,
    )
    assert result.code == 0, result
    created = set(tmp_path.rglob("*")) - before
    assert created and all(path.is_relative_to(work) for path in created), sorted(created)
    assert not any("escaped" in part for path in created for part in path.parts)
    import optuna

    assert optuna.get_all_study_names(f"sqlite:///{work / 'studies' / 'mtl-search.db'}") == [name]
