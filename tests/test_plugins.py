"""Plugins: families, weightings, data sources and stems come from entry points, the built-ins'
included, or from registrations in code; a broken one is named in one line."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from pydantic import BaseModel, ConfigDict

import mtl_search
from mtl_search.architectures import Family, Stem, build_model, build_stem, family_names, get_family, register_family
from mtl_search.architectures.blocks import validate_stem
from mtl_search.architectures.registry import FAMILIES
from mtl_search.architectures.stems import STEMS, FunctionStem, register_stem
from mtl_search.architectures.tree import TreeFamily
from mtl_search.data import DataSource, load_data, register_source, source_names
from mtl_search.data.registry import SOURCES, FunctionSource
from mtl_search.data.synthetic import make_synthetic
from mtl_search.errors import UserError
from mtl_search.plugins import PluginError, Registry, instance_of
from mtl_search.search.space import parse_space
from mtl_search.weighting import LossWeighting, get_method, make_weighting, method_names, register_method
from mtl_search.weighting.registry import WEIGHTINGS, Method
from mtl_search.weighting.static import StaticWeighting
from tests.helpers import CliResult, assert_one_line_error

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "extending.md"

BUILT_INS = {
    "mtl_search.families": {"tree", "mmoe", "ple", "cross_stitch", "sluice", "hierarchy", "dselect_k", "adatt"},
    "mtl_search.weightings": {
        *("static", "uncertainty", "gradnorm", "dwa", "pcgrad", "mgda"),
        *("upgrad", "dualproj", "aligned_mtl", "graddrop", "imtl", "config", "cagrad", "nash_mtl"),
    },
    "mtl_search.data_sources": {"synthetic", "census", "multidigits", "table", "sequences"},
    "mtl_search.stems": {"sequence"},
}
BUILT_INS["mtl_search.weightings"] |= {"famo", "rlw", "stch", "gls"}  # the loss-only methods
BUILT_INS["mtl_search.families"] |= {"mtan", "ltb"}
BUILT_INS["mtl_search.families"] |= {"aitm", "stem"}  # the funnel and embedding families
BUILT_INS["mtl_search.weightings"] |= {"db_mtl", "gradvac"}  # gradient methods written here
BASES = {
    "mtl_search.families": Family,
    "mtl_search.weightings": LossWeighting,
    "mtl_search.data_sources": DataSource,
    "mtl_search.stems": Stem,
}
REGISTRIES = (FAMILIES, WEIGHTINGS, SOURCES, STEMS)


def own_entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The entry points mtl-search's own distribution declares in ``group``."""
    return [
        entry_point
        for entry_point in importlib.metadata.entry_points(group=group)
        if re.sub(r"[-_.]+", "-", entry_point.dist.name).lower() == "mtl-search"
    ]


def test_the_entry_point_groups_list_every_built_in():
    for group, expected in BUILT_INS.items():
        assert {entry_point.name for entry_point in own_entry_points(group)} == expected, group
    # the task-relationship prior is an option of every family, not a family
    assert "relationship" not in BUILT_INS["mtl_search.families"]


def test_every_built_in_class_has_its_entry_point_and_loads_under_its_name():
    """A new family, weighting, source or stem in the package without its pyproject line fails here."""
    defined = set()
    for package in (mtl_search.architectures, mtl_search.weighting, mtl_search.data):
        for module_info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(module_info.name)
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and value.__module__ == module.__name__
                    and not inspect.isabstract(value)
                    and issubclass(value, tuple(BASES.values()))
                    and value not in (FunctionSource, FunctionStem)
                ):
                    defined.add(f"{value.__module__}:{value.__qualname__}")
    declared = {entry_point.value for group in BUILT_INS for entry_point in own_entry_points(group)}
    assert defined == declared

    assert all(
        isinstance(get_family(name), Family) and get_family(name).name == name
        for name in BUILT_INS["mtl_search.families"]
    )
    assert all(
        issubclass(get_method(name), LossWeighting) and get_method(name).name == name
        for name in BUILT_INS["mtl_search.weightings"]
    )
    assert all(SOURCES.get(name).name == name for name in BUILT_INS["mtl_search.data_sources"])
    assert STEMS.get("sequence").kind == "sequence"


def test_listing_names_imports_no_plugin_and_not_torch():
    code = (
        "import sys\nfrom mtl_search.plugins import Registry\n"
        "names = Registry('mtl_search.families', 'family', lambda v: v, lambda v: v.name).names()\n"
        "print(names, 'torch' in sys.modules, 'mtl_search.architectures' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120, cwd=REPO
    ).stdout
    assert out.strip() == f"{sorted(BUILT_INS['mtl_search.families'])} False False"


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UserError) as error:
        get_family("ring")
    assert str(error.value) == f"architecture family 'ring' is not known (known: {', '.join(family_names())})"
    with pytest.raises(UserError) as error:
        make_weighting({"method": "halving"}, ["a", "b"])
    assert str(error.value) == f"loss weighting 'halving' is not known (known: {', '.join(method_names())})"
    with pytest.raises(UserError) as error:
        load_data("clicks")
    assert str(error.value) == f"--data 'clicks': unknown data source (known: {', '.join(source_names())})"
    with pytest.raises(UserError, match=r"^input schema kind 'graph' is not known \(known: image, sequence, tabular, "):
        build_stem({"kind": "graph"})
    for names, group in (
        (family_names(), "mtl_search.families"),
        (method_names(), "mtl_search.weightings"),
        (source_names(), "mtl_search.data_sources"),
    ):
        assert BUILT_INS[group] <= set(names)


def test_an_empty_group_says_how_to_bring_the_entry_points_back():
    registry = Registry("mtl_search.nothing_here", "thing", lambda v: v, lambda v: v.name)
    with pytest.raises(
        UserError,
        match=r"^thing 'x' is not known \(known: none; no installed package provides "
        r"mtl_search.nothing_here entry points, not even mtl-search: reinstall it",
    ):
        registry.get("x")


# -- plugins written into a folder on sys.path, as pip would install them ------------------------


def write_distribution(site: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> None:
    """An installed distribution: its metadata (METADATA, entry_points.txt) and its modules."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in entries.items()) + "\n"
            for group, entries in entry_points.items()
        )
    )
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path for plugins; the registries read their groups again around the test."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    for registry in REGISTRIES:
        registry.refresh()
    yield folder
    for registry in REGISTRIES:
        registry.refresh()  # read again lazily, once this folder has left sys.path


BROKEN = {
    "broken_import": "import a_module_nobody_has\n",
    "wrong_types": (
        "from mtl_search.architectures import Family\n"
        "from mtl_search.architectures.tree import TreeFamily\n\n"
        "def not_a_class():\n    return 1\n\n"
        "class Unfinished(Family):\n    name = 'unfinished'\n\n"
        "class Misnamed(TreeFamily):\n    name = 'tree'\n\n"
        "class OtherTree(TreeFamily):\n    pass\n"
    ),
}


def test_a_plugin_that_cannot_be_used_is_named_with_its_distribution_and_entry_point(site):
    entries = {
        "ring": "broken_import:RingFamily",
        "function": "wrong_types:not_a_class",
        "unfinished": "wrong_types:Unfinished",
        "renamed": "wrong_types:Misnamed",
    }
    write_distribution(site, "broken-plugin", {"mtl_search.families": entries}, BROKEN)
    write_distribution(site, "second-tree", {"mtl_search.families": {"tree": "wrong_types:OtherTree"}}, {})

    def origin(name: str) -> str:
        return f"distribution broken-plugin 0.1.0, entry point {name} = {entries[name]!r} in group mtl_search.families"

    expected = {
        "ring": f"architecture family 'ring' could not be loaded from {origin('ring')}: ModuleNotFoundError: No module "
        f"named 'a_module_nobody_has'",
        "function": f"architecture family 'function' from {origin('function')}: function wrong_types.not_a_class "
        f"is not an architecture family (a subclass of mtl_search.architectures.base.Family)",
        "unfinished": f"architecture family 'unfinished' from {origin('unfinished')}: class wrong_types.Unfinished "
        f"is not an architecture family (a subclass of mtl_search.architectures.base.Family, which "
        f"leaves build, sample, space_model, summary, validate unimplemented)",
        "renamed": f"architecture family 'renamed' from {origin('renamed')}: the object names itself 'tree'; the entry "
        f"point's name and the object's name must be the same",
    }
    for name, message in expected.items():
        with pytest.raises(PluginError) as error:
            get_family(name)
        assert str(error.value) == message
    # two distributions giving one name: both are named, and neither is chosen silently
    with pytest.raises(
        PluginError,
        match=r"^architecture family 'tree' is provided twice \(distribution "
        r"(mtl-search|second-tree) .*; distribution (mtl-search|second-tree) .*\): "
        r"uninstall one",
    ):
        get_family("tree")
    # a registration in code is not an installed plugin: it wins, as documented
    register_family(TreeFamily())
    try:
        assert get_family("tree").name == "tree"
    finally:
        FAMILIES.unregister("tree")


@pytest.mark.slow
@pytest.mark.parametrize(
    "group, section, entry, fragments",
    [
        (
            "mtl_search.families",
            "families",
            "broken_import:RingFamily",
            (
                "architecture family 'ring' could not be loaded from distribution broken-plugin 0.1.0, entry point ring = "
                "'broken_import:RingFamily'",
                "ModuleNotFoundError: No module named 'a_module_nobody_has'",
            ),
        ),
        (
            "mtl_search.weightings",
            "loss_weighting",
            "wrong_types:not_a_class",
            (
                "loss weighting 'ring' from distribution broken-plugin 0.1.0, entry point ring = 'wrong_types:not_a_class'",
                "function wrong_types.not_a_class is not a loss weighting",
            ),
        ),
    ],
)
def test_the_command_line_names_a_broken_plugin_in_one_line(tmp_path, group, section, entry, fragments):
    site = tmp_path / "site"
    write_distribution(site, "broken-plugin", {group: {"ring": entry}}, BROKEN)
    families = "{ring: {}}" if section == "families" else "{tree: {}}"
    weighting = "\nloss_weighting: {ring: {}}" if section == "loss_weighting" else ""
    (tmp_path / "space.yaml").write_text(f"families: {families}{weighting}\n")
    result = run_cli(
        tmp_path,
        site,
        "run",
        "--space",
        "space.yaml",
        "--data-option",
        "rows=200",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--quiet",
        "--storage",
        f"sqlite:///{tmp_path / 'studies.db'}",
    )
    assert_one_line_error(result, *fragments)


def run_cli(cwd: Path, site: Path, *args: str) -> CliResult:
    """``python -m mtl_search ARGS`` with the plugins of ``site`` (and this checkout's package) importable."""
    path = os.pathsep.join(filter(None, (str(site), str(REPO), os.environ.get("PYTHONPATH"))))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    process = subprocess.run(
        [sys.executable, "-m", "mtl_search", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return CliResult(process.returncode, process.stdout, process.stderr)


# -- the guide's plugin, installed with pip and searched from a space file -----------------------


def guide_files() -> dict[str, str]:
    """The files docs/extending.md shows, by their titles (```lang title="name" blocks)."""
    blocks = re.finditer(r'^```\w+ title="([^"]+)"\n(.*?)^```$', GUIDE.read_text(), flags=re.M | re.S)
    return {match.group(1): match.group(2) for match in blocks}


@pytest.mark.slow
def test_the_guide_s_plugin_installs_with_pip_and_is_searched_by_name_from_a_space_file(tmp_path):
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("pip needs setuptools in this environment to build the plugin without network access")
    files = guide_files()
    assert {"pyproject.toml", "shared_private.py", "space.yaml"} <= set(files)
    package = tmp_path / "my-plugin"
    package.mkdir()
    for name in ("pyproject.toml", "shared_private.py"):
        (package / name).write_text(files[name])
    (tmp_path / "space.yaml").write_text(files["space.yaml"])
    site = tmp_path / "site"
    # into a folder of its own, never into this environment
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(package),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    result = run_cli(
        tmp_path,
        site,
        "run",
        "--data",
        "two_targets",
        "--space",
        "space.yaml",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--quiet",
        "--storage",
        storage,
    )
    assert result.code == 0, result

    trials = optuna.load_study(study_name="two_targets-space", storage=storage).trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    # each trial drew the plugin family's and the plugin weighting's own settings
    assert all({"shared_private.width", "inverse_loss.power"} <= set(trial.params) for trial in trials)
    pareto = run_cli(tmp_path, site, "pareto", "--storage", storage, "--format", "json", "two_targets-space")
    assert pareto.code == 0, pareto
    front = json.loads(pareto.out)
    assert front and all(
        row["family"] == "shared_private"
        and row["loss_weighting"]["method"] == "inverse_loss"
        and row["summary"].startswith("shared_private shared + own block of width")
        for row in front
    )
    assert importlib.util.find_spec("shared_private") is None  # nothing stayed installed here


# -- registrations in code -----------------------------------------------------------------------


class WideTree(TreeFamily):
    name = "wide_tree"


class HalfSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    share: float = 0.5


class HalfWeights(LossWeighting):
    """Every task's loss times ``share``."""

    name = "half"
    space_model = HalfSpace

    def __init__(self, task_names, share: float = 0.5) -> None:
        super().__init__(task_names)
        self.share = share

    def backward(self, losses, model, extra):
        total = sum(self.share * loss for loss in losses.values())
        total.backward()
        return total.detach()

    def weights(self):
        return {task: self.share for task in self.task_names}


def test_families_and_weightings_registered_in_code_are_searched_from_a_space_file():
    register_family(WideTree())
    register_method(HalfWeights)
    try:
        space = parse_space(
            {"families": {"wide_tree": {"depth": 1, "width": 4}}, "loss_weighting": {"half": {"share": 0.25}}}
        )
        candidate = space.sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask(), ["a", "b"])
        assert candidate["architecture"]["family"] == "wide_tree"
        # the default sample(): each field of the method's space model, as an argument of its class
        assert candidate["loss_weighting"] == {"method": "half", "share": 0.25}
        assert make_weighting(candidate["loss_weighting"], ["a", "b"]).weights() == {"a": 0.25, "b": 0.25}
        # the plugin's own section model checks its keys
        with pytest.raises(UserError, match=r"loss_weighting\.half\.colour"):
            parse_space({"families": {"wide_tree": {}}, "loss_weighting": {"half": {"colour": 1}}})
    finally:
        FAMILIES.unregister("wide_tree")
        WEIGHTINGS.unregister("half")
    with pytest.raises(UserError, match="architecture family 'wide_tree' is not known"):
        get_family("wide_tree")


def test_registering_an_object_of_the_wrong_kind_is_a_type_error():
    with pytest.raises(TypeError, match=r"^class mtl_search.weighting.static.StaticWeighting is not an architecture "):
        register_family(StaticWeighting)
    with pytest.raises(
        TypeError,
        match=r"is not a loss weighting \(a subclass of mtl_search.weighting.base."
        r"LossWeighting, which leaves backward unimplemented\)",
    ):
        register_method(type("Lazy", (LossWeighting,), {"name": "lazy"}))
    with pytest.raises(TypeError, match=r"has no name: a loss weighting sets its name"):
        register_method(type("Nameless", (StaticWeighting,), {"name": ""}))
    with pytest.raises(TypeError, match="space_model must be a pydantic model class"):
        register_method(type("Loose", (StaticWeighting,), {"name": "loose", "space_model": dict}))


def test_a_method_described_piece_by_piece_still_registers():
    register_method(Method("halves", HalfWeights, HalfSpace, lambda trial, section, names: {"share": 0.5}))
    try:
        method = get_method("halves")
        assert issubclass(method, HalfWeights) and method.name == "halves"
        assert method.sample(None, HalfSpace(), ["a"]) == {"share": 0.5}
        assert make_weighting({"method": "halves"}, ["a"]).describe()["method"] == "halves"
    finally:
        WEIGHTINGS.unregister("halves")


def test_data_sources_and_stems_registered_in_code(tmp_path):
    @register_source("small_synthetic")
    def small(options, data_file, task_declarations):
        return make_synthetic(dim=4, rows=60, seed=int(options.get("seed", 0)))

    class Doubled(torch.nn.Module):
        out_shape = (8,)

        def forward(self, inputs):
            return torch.cat([inputs["x"], inputs["x"]], dim=1)

    class DoublingStem(Stem):
        kind = "doubled"
        settings = ("copies",)

        def build(self, schema, spec):
            return Doubled()

    register_stem(DoublingStem())
    try:
        data = load_data("small_synthetic", {"seed": "1"})
        assert data.task_names == ["task1", "task2"] and len(data.train) + len(data.validation) + len(data.test) == 60
        spec = {"family": "tree", "widths": [4], "groups": [[data.task_names]], "stem": {"copies": 2}}
        model = build_model(spec, {"kind": "doubled"}, data.tasks)
        assert isinstance(model.stem, Doubled)
        assert set(model(data.train.inputs)) == set(data.task_names)
        with pytest.raises(UserError, match=r"stem.colour is not a known key \(known: copies, "):
            validate_stem({"colour": 1})
    finally:
        SOURCES.unregister("small_synthetic")
        STEMS.unregister("doubled")
    # a stem registered without its settings may read any key
    register_stem("anything", settings=None)(lambda schema, spec: Doubled())
    try:
        validate_stem({"colour": 1})
    finally:
        STEMS.unregister("anything")


def test_instance_of_instantiates_a_subclass_once_and_keeps_an_instance():
    accept = instance_of(Family, "an architecture family")
    made = accept(WideTree)
    assert isinstance(made, WideTree)
    assert accept(made) is made
