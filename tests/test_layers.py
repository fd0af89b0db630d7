"""The package's layers run one way: a module imports only from its own layer or lower ones.

The layers, lowest first (the first name after ``mtl_search.`` decides a module's layer)::

    errors, values, records, version,     exceptions, searched-value types, stored names and records,
    plugins, threads, stops               the registry of entry-point plugins, torch's thread count,
                                          a Ctrl-C waiting to be raised
    tasks                                 what a task is and how it is scored
    data                                  data sources and MultiTaskData
    architectures, weighting              the network families and the loss weightings
    training                              training one candidate
    search                                running a study: space, study, objective, pruning, affinity,
                                          and what a run stores as it goes (costs, hypervolume, notes)
    analysis                              computed from a finished study: front, outcomes, refine, replay
    export, visualization, dashboard      what a user takes away: bundles, figures, the report, the server
    cli, __main__, the package root       commands, and the lazy public API of ``mtl_search``

Every import counts: at module level, inside functions, under ``if TYPE_CHECKING:``, and
``importlib.import_module`` of a literal (or an f-string's literal prefix), which is how the
command line loads its commands. ``LAYERS`` below is the one place the order is written; a new
top-level module or package must be added to it, or the test fails naming it. And no two
modules may import each other, not even through a function-level import.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import mtl_search

LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "values", "records", "version", "learned", "plugins", "threads", "stops"),
    ("tasks",),
    ("data",),
    ("architectures", "weighting"),
    ("training",),
    ("search",),
    ("analysis",),
    ("export", "visualization", "dashboard"),
    ("cli", "__main__", ""),  # "": the package root, whose __getattr__ re-exports the public API
)


@dataclasses.dataclass(frozen=True)
class Violation:
    module: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.imported}, a higher layer"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root``: dotted name -> file."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(
    module: str,
    path: Path,
    modules: dict[str, Path],
    package: str,
    dynamic: bool = True,
) -> list[tuple[str, int]]:
    """The package's modules that ``module`` imports, anywhere in its file, with line numbers
    (``dynamic``: ``importlib.import_module`` calls too)."""
    is_package = path.name == "__init__.py"
    found = []

    def add(target: str, line: int) -> None:
        if target == package or target.startswith(package + "."):
            found.append((target, line))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - (node.level - (1 if is_package else 0))]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # `from package.sub import name`: the module package.sub.name when there is one
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in modules else source, node.lineno)
        elif dynamic and isinstance(node, ast.Call) and _called_name(node) == "import_module":
            argument = node.args[0] if node.args else None
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                add(argument.value, node.lineno)
            elif isinstance(argument, ast.JoinedStr) and isinstance(next(iter(argument.values), None), ast.Constant):
                prefix = str(argument.values[0].value)
                add(prefix.rsplit(".", 1)[0] if "." in prefix else prefix, node.lineno)
    return found


def _called_name(call: ast.Call) -> str | None:
    return getattr(call.func, "attr", getattr(call.func, "id", None))


def layer_of(module: str, package: str, layers: tuple[tuple[str, ...], ...]) -> int | None:
    top = module.split(".")[1] if "." in module else ""
    return next((index for index, names in enumerate(layers) if top in names), None)


def layer_violations(
    root: Path,
    package: str,
    layers: tuple[tuple[str, ...], ...],
) -> tuple[list[str], list[Violation]]:
    """Modules no layer names, and every import of a higher layer, for the package under ``root``."""
    modules = module_names(root, package)
    unplaced = sorted(name for name in modules if layer_of(name, package, layers) is None)
    violations = []
    for module, path in modules.items():
        own = layer_of(module, package, layers)
        for imported, line in imports_of(module, path, modules, package):
            theirs = layer_of(imported, package, layers)
            if own is not None and theirs is not None and theirs > own:
                violations.append(Violation(module, imported, line))
    return unplaced, violations


def test_every_module_imports_only_its_own_layer_or_lower_ones():
    root = Path(mtl_search.__file__).parent.parent
    unplaced, violations = layer_violations(root, "mtl_search", LAYERS)
    assert not unplaced, f"modules in no layer (add them to LAYERS in {__name__}): {', '.join(unplaced)}"
    assert not violations, "imports against the layer order:\n" + "\n".join(map(str, violations))


def test_the_check_reports_an_upward_import_anywhere_in_a_module(tmp_path):
    package = tmp_path / "toy"
    (package / "search").mkdir(parents=True)
    for name in ("__init__.py", "search/__init__.py", "search/study.py"):
        (package / name).write_text("")
    (package / "values.py").write_text("import json\n")
    # hidden inside a function and behind a relative import: still an import of a higher layer
    (package / "errors.py").write_text("def late():\n    from .search import study\n    return study\n")
    (package / "tasks.py").write_text(
        "import importlib\n\ndef load(name):\n    return importlib.import_module(f'toy.search.{name}')\n"
    )
    toy_layers = (("errors", "values"), ("tasks",), ("search",), ("",))

    unplaced, violations = layer_violations(tmp_path, "toy", toy_layers)
    assert unplaced == []
    assert sorted(map(str, violations)) == [
        "toy.errors (line 2) imports toy.search.study, a higher layer",
        "toy.tasks (line 4) imports toy.search, a higher layer",
    ]
    # and a module no layer names is reported, not silently allowed
    (package / "extra.py").write_text("")
    assert layer_violations(tmp_path, "toy", toy_layers)[0] == ["toy.extra"]


def test_no_two_modules_import_each_other_even_inside_functions():
    """A cycle hidden in a function-level import is a layer inside a layer gone both ways.

    ``import_module`` is left out: it loads a module chosen at run time, not a dependency.
    """
    root = Path(mtl_search.__file__).parent.parent
    modules = module_names(root, "mtl_search")
    graph = {
        name: {imported for imported, _ in imports_of(name, path, modules, "mtl_search", dynamic=False)} - {name}
        for name, path in modules.items()
    }
    cycles = []
    for start in graph:
        # depth-first from each module: a path back to it is a cycle
        stack = [(start, (start,))]
        seen = set()
        while stack:
            name, trail = stack.pop()
            for imported in graph.get(name, ()):
                if imported == start:
                    cycles.append(" -> ".join((*trail, start)))
                elif imported not in seen:
                    seen.add(imported)
                    stack.append((imported, (*trail, imported)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))
