"""User-facing errors.

Anything raised as :class:`UserError` is a problem with what the user gave us (a file, a
flag, a value). The CLI prints its message on one line and exits with status 2; it never
shows a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input: the message names the file, field or value at fault."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``kill``, a container stopping), handled as Ctrl-C is: the
    running trial is recorded as failed with its reason, and the command exits with 143."""


def is_whole(value: Any) -> bool:
    """An int that is not a bool (JSON ``true`` must not pass for 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_output_path(path: Any, flag: str) -> None:
    """Refuse an output ``path`` below an existing file (``--out notes.txt/report.html``), with
    a message naming that file; the OS would only say "File exists" or "Not a directory"."""
    from pathlib import Path

    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
            return


class OneLineWarning(UserWarning):
    """A warning the CLI prints as one line, like its errors ("mtl-search run: warning: ...")."""


class StudyWarning(OneLineWarning):
    """A continued study differs from this run in a way that is allowed but worth knowing."""


class TrialDiverged(Exception):
    """Training produced a non-finite or blown-up loss; the trial fails with this reason."""


def describe_validation_error(error: Any, prefix: str = "") -> str:
    """The first problem of a pydantic ``ValidationError`` as 'key a.b.c: message', worded
    alike for every file the user writes (space files, table descriptions)."""
    problems: dict[str, list[dict[str, Any]]] = {}
    for item in error.errors():
        loc = [str(p) for p in item["loc"] if not _is_union_tag(p)]
        problems.setdefault(".".join(([prefix] if prefix else []) + loc), []).append(item)
    for key, items in problems.items():
        if any(item["type"] == "extra_forbidden" for item in items):
            return f"key {key}: unknown key"
    key, items = next(iter(problems.items()))
    for item in items:
        if item["type"] in ("value_error", "assertion_error"):
            message = item["msg"].removeprefix("Value error, ")
            if message.startswith("key "):
                return message
            return f"key {key}: {message}"
    if items[0]["type"] == "missing":  # its input is the whole enclosing mapping: not worth quoting
        return f"key {key}: required, but missing"
    if len(items) > 1:
        return f"key {key}: invalid value {items[0].get('input')!r} (expected a constant of the right type, {{low, high}} or {{choices: [...]}})"
    return f"key {key}: {items[0]['msg']} (got {items[0].get('input')!r})"


def _is_union_tag(part: Any) -> bool:
    text = str(part)
    return (
        text in ("int", "float", "str", "bool", "none", "constant", "range", "choice")
        or text[:1].isupper()
        and "." not in text
        or text.startswith(("function-", "literal[", "list[", "dict[", "tagged-union["))
    )
