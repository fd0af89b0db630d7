"""The version of the stored record format, and how a reader gets from an older one to it.

Each record a study stores (the study's own, and each trial's) carries ``schema_version``.
A reader takes the stored attributes through the migrations from their version up to
:data:`SCHEMA_VERSION`, one function per step, and refuses a version newer than it knows.
Records without the key were written before versioning: schema 0.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError

from mtl_search.errors import UserError

SCHEMA_VERSION = 1
SCHEMA_KEY = "schema_version"

Attributes = dict[str, Any]
Migration = Callable[[Attributes], Attributes]


class NewerFormatError(UserError):
    """A record written by a newer mtl-search, in a format this one does not know."""


class StoredRecordError(UserError):
    """A stored record that does not have the shape of its format."""


class Record(BaseModel):
    """Plain JSON data under typed names. Frozen: a record read back is not edited in place;
    keys this version does not know are kept (``extra``), so writing a record back loses
    nothing a newer minor change added."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def recorded(self, name: str) -> bool:
        """Whether ``name`` was stored (or given), rather than read as its default."""
        return name in self.model_fields_set


def stored_version(attrs: Mapping[str, Any], where: str) -> int:
    """The schema version of stored ``attrs`` (0 when unversioned); a newer one than this
    release reads, or a value that is no version, is refused in one line naming ``where``."""
    version = attrs.get(SCHEMA_KEY, 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise StoredRecordError(f"{where}: stored {SCHEMA_KEY} {version!r} is not a record format version")
    if version > SCHEMA_VERSION:
        raise NewerFormatError(
            f"{where} was stored in record format {version} by a newer mtl-search; this one "
            f"reads formats up to {SCHEMA_VERSION}: upgrade mtl-search (pip install -U mtl-search) "
            f"to open it"
        )
    return version


def migrated(attrs: Mapping[str, Any], migrations: Sequence[Migration], where: str) -> Attributes:
    """``attrs`` taken from their stored version to :data:`SCHEMA_VERSION`: ``migrations[v]``
    takes version ``v`` to ``v + 1``."""
    data = dict(attrs)
    for step in migrations[stored_version(attrs, where) :]:
        data = step(data)
    return data


def validated(model: type[Record], data: Mapping[str, Any], where: str) -> Any:
    """``data`` as a ``model``; a value of the wrong shape is one line naming its field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "record"
        raise StoredRecordError(f"{where}: stored {field} {_shown(first.get('input'))}: {first['msg']}") from None


def _shown(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
