"""One registry mechanism for what a package can add: architecture families, loss weightings,
data sources and input stems.

Each kind has an entry-point group, and the built-ins are registered in ``pyproject.toml``
exactly as another package registers its own::

    [project.entry-points."mtl_search.families"]
    tree = "mtl_search.architectures.tree:TreeFamily"

    [project.entry-points."mtl_search.weightings"]
    static = "mtl_search.weighting.static:StaticWeighting"

A :class:`Registry` reads its group lazily: :meth:`Registry.names` reads only the installed
distributions' metadata (no plugin module is imported, and neither is torch); :meth:`Registry.get`
imports the one entry asked for, checks it is what the group expects, and keeps it. Code that
is not packaged registers in Python instead (``register_family(MyFamily())`` and the like);
such a registration wins over an entry point of the same name.

Every failure is one line: an unknown name lists the known ones; a plugin whose module fails
to import, or whose object is not of the group's base class, is named with its distribution
and entry point (``--debug`` shows the original traceback).
"""

from __future__ import annotations

import importlib.metadata
import threading
from typing import Any, Callable, Generic, TypeVar

from mtl_search.errors import UserError

T = TypeVar("T")

FAMILIES_GROUP = "mtl_search.families"
WEIGHTINGS_GROUP = "mtl_search.weightings"
DATA_SOURCES_GROUP = "mtl_search.data_sources"
STEMS_GROUP = "mtl_search.stems"


class PluginError(UserError):
    """An installed plugin could not be used: its module failed to import, or its object is
    not what its entry-point group expects."""


def instance_of(base: type, what: str) -> Callable[[Any], Any]:
    """An ``accept`` for a :class:`Registry` whose entries are instances of ``base``: a
    subclass of ``base`` is instantiated without arguments, an instance is kept as it is."""

    def accept(value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, base) and not getattr(value, "__abstractmethods__", None):
            return value()
        if isinstance(value, base):
            return value
        raise TypeError(
            f"{describe_object(value)} is not {what} (a subclass of {base.__module__}.{base.__qualname__}"
            f"{unimplemented(value, base)})"
        )

    return accept


def subclass_of(base: type, what: str) -> Callable[[Any], Any]:
    """An ``accept`` for a :class:`Registry` whose entries are classes: a subclass of ``base``
    that implements every abstract method, kept as it is (instantiated later, per use)."""

    def accept(value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, base) and not getattr(value, "__abstractmethods__", None):
            return value
        raise TypeError(
            f"{describe_object(value)} is not {what} (a subclass of {base.__module__}.{base.__qualname__}"
            f"{unimplemented(value, base)})"
        )

    return accept


def unimplemented(value: Any, base: type) -> str:
    """', which leaves x and y abstract' for a subclass of ``base`` missing methods, else ''."""
    if not (isinstance(value, type) and issubclass(value, base)):
        return ""
    missing = sorted(getattr(value, "__abstractmethods__", ()))
    return f", which leaves {', '.join(missing)} unimplemented" if missing else ""


def describe_object(value: Any) -> str:
    """A short readable name of what a plugin's entry point refers to."""
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"function {getattr(value, '__module__', '?')}.{value.__qualname__}"
    return f"{type(value).__name__} {value!r:.60}"


class Registry(Generic[T]):
    """The entries of one kind, by name: those of an entry-point group and those registered in code.

    ``accept`` turns what an entry point refers to (or what is registered in code) into an
    entry, raising TypeError with the reason when it is of the wrong kind (see
    :func:`instance_of`). ``name_of`` reads an entry's own name, which must match its
    entry point's. ``what`` names the kind in messages ("architecture family").
    """

    def __init__(
        self,
        group: str,
        what: str,
        accept: Callable[[Any], T],
        name_of: Callable[[T], str],
        unknown: str = "{what} {name!r} is not known (known: {known})",
    ) -> None:
        self.group = group
        self.what = what
        self._accept = accept
        self._name_of = name_of
        self._unknown = unknown
        self._registered: dict[str, T] = {}
        self._loaded: dict[str, T] = {}
        self._entry_points: dict[str, list[importlib.metadata.EntryPoint]] | None = None
        # search threads may ask for the same entry at once; it is imported and checked once
        self._lock = threading.RLock()

    def register(self, value: Any) -> T:
        """Make ``value`` known by its own name (it replaces an entry of that name); TypeError
        if it is not of this registry's kind."""
        entry = self._accept(value)
        name = self._own_name(entry, value)
        with self._lock:
            self._registered[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Forget the entry registered in code as ``name`` (an installed entry point of that name
        becomes visible again)."""
        with self._lock:
            self._registered.pop(name, None)

    def names(self) -> list[str]:
        """Every known name, sorted; imports no plugin."""
        return sorted(set(self._available()) | set(self._registered))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._registered or name in self._available())

    def get(self, name: Any) -> T:
        """The entry named ``name``, its plugin imported on first use; a UserError listing the
        known names if there is none, a :class:`PluginError` if its plugin cannot be used."""
        if isinstance(name, str) and name in self._registered:
            return self._registered[name]
        if not isinstance(name, str) or name not in self._available():
            raise UserError(self._unknown.format(what=self.what, name=name, known=self._known_text()))
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def load_all(self) -> dict[str, T]:
        """Every entry, each plugin imported (for questions about all of them at once)."""
        return {name: self.get(name) for name in self.names()}

    def refresh(self) -> None:
        """Read the group again (after installing a package in a running interpreter); entries
        registered in code stay."""
        with self._lock:
            self._entry_points = None
            self._loaded.clear()

    def _own_name(self, entry: T, value: Any) -> str:
        try:
            name = self._name_of(entry)
        except AttributeError:
            name = None
        if not isinstance(name, str) or not name:
            raise TypeError(f"{describe_object(value)} has no name: a {self.what} sets its name as a non-empty string")
        return name

    def _available(self) -> dict[str, list[importlib.metadata.EntryPoint]]:
        if self._entry_points is None:
            found: dict[str, list[importlib.metadata.EntryPoint]] = {}
            for entry_point in importlib.metadata.entry_points(group=self.group):
                found.setdefault(entry_point.name, []).append(entry_point)
            self._entry_points = found
        return self._entry_points

    def _known_text(self) -> str:
        known = self.names()
        if known:
            return ", ".join(known)
        # the built-ins are entry points too: none at all means stale or missing package metadata
        return (
            f"none; no installed package provides {self.group} entry points, not even mtl-search: reinstall it "
            f"(pip install -e . in a clone) so that its entry points are written"
        )

    def _load(self, name: str) -> T:
        candidates = self._available()[name]
        if len({entry_point.value for entry_point in candidates}) > 1:
            providers = "; ".join(_origin(entry_point) for entry_point in candidates)
            raise PluginError(f"{self.what} {name!r} is provided twice ({providers}): uninstall one of them")
        entry_point = candidates[0]
        try:
            value = entry_point.load()
        except Exception as error:  # whatever a plugin's module raises on import, it is the plugin's fault
            raise PluginError(
                f"{self.what} {name!r} could not be loaded from {_origin(entry_point)}: "
                f"{type(error).__name__}: {_first_line(error)}"
            ) from error
        try:
            entry = self._accept(value)
        except TypeError as error:
            raise PluginError(f"{self.what} {name!r} from {_origin(entry_point)}: {_first_line(error)}") from error
        except Exception as error:  # the class's own constructor failed
            raise PluginError(
                f"{self.what} {name!r} from {_origin(entry_point)} could not be created: "
                f"{type(error).__name__}: {_first_line(error)}"
            ) from error
        try:
            own = self._own_name(entry, value)
        except TypeError as error:
            raise PluginError(f"{self.what} {name!r} from {_origin(entry_point)}: {_first_line(error)}") from error
        if own != name:
            raise PluginError(
                f"{self.what} {name!r} from {_origin(entry_point)}: the object names itself {own!r}; "
                f"the entry point's name and the object's name must be the same"
            )
        return entry


def _origin(entry_point: importlib.metadata.EntryPoint) -> str:
    """'distribution foo 1.0, entry point bar = foo.mod:Bar in group g'."""
    dist = getattr(entry_point, "dist", None)
    where = f"distribution {dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"{where}, entry point {entry_point.name} = {entry_point.value!r} in group {entry_point.group}"


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "(no message)"
