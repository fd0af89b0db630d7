"""Options and output shared by several commands."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mtl_search.errors import UserError


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="SQLAlchemy URL of the study database (default: $MTL_SEARCH_STORAGE, else sqlite:///studies/mtl-search.db)",
    )


def add_study_arguments(parser: argparse.ArgumentParser, formats: tuple[str, ...] = ()) -> None:
    """STUDY and --storage, and with ``formats`` an output --format (the first is the default)."""
    parser.add_argument("study", metavar="STUDY", help="study name (see `mtl-search studies`)")
    add_storage_option(parser)
    if formats:
        parser.add_argument(
            "--format", choices=formats, default=formats[0], help=f"output format (default: {formats[0]})"
        )


def parse_key_values(pairs: list[str] | None, flag: str) -> dict[str, str]:
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} {pair!r}: expected KEY=VALUE")
        result[key.strip()] = value.strip()
    return result


# width of tables written to a pipe or a log file ($COLUMNS still wins): rich's 80 columns
# folded study names and headers mid-word
PIPED_WIDTH = 200


class _Console(Console):
    def on_broken_pipe(self) -> None:
        raise BrokenPipeError  # rich would exit with 1; the CLI ends quietly with 141 (cli/__init__.py)


def console() -> Console:
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS")
    return _Console(highlight=False, soft_wrap=False, width=PIPED_WIDTH if piped else None)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1e4:  # a count stored as a float (the params objective): every digit
            return str(int(value))
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def print_rows_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[format_value(v) for v in row])
    console().print(table)


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


def whole_number(minimum: int, maximum: int | None = None):
    """An argparse type: a whole number of at least ``minimum`` (and at most ``maximum``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(
                f"{text!r} must be at least {minimum}"
                if maximum is None
                else f"{text!r} must be between {minimum} and {maximum}"
            )
        return value

    return parse


# training/precision.py's PRECISIONS, spelt here so that --help does not import torch
PRECISION_CHOICES = ("fp32", "bf16", "fp16")


def add_precision_option(parser: argparse.ArgumentParser | Any, default: str | None, help: str) -> None:
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=default, help=help)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):  # nan slipped past "value <= 0"
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of at least 0")
    return value


def share_below_one(text: str) -> float:
    """An argparse type: a share from 0 up to, but not including, 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 0 and less than 1")
    return value


def share(text: str) -> float:
    """An argparse type: a share from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to 1")
    return value


def warn_of_trials_without_limits(study: Any, command: str) -> None:
    """On stderr: complete trials that a run of an earlier release trained without the
    study's limits (they may stand on the front the command shows)."""
    from mtl_search.search.costs import trained_without_limits

    note = trained_without_limits(study)
    if note:
        print(f"mtl-search {command}: warning: study {study.study_name!r}: {note}", file=sys.stderr)


# in the head of every HTML page mtl-search writes, so that it may replace its own pages
GENERATOR_META = "<meta name='generator' content='mtl-search'>"


def write_html_page(path: str, page: str, flag: str) -> Path:
    """Write ``page`` to ``path``, refusing a folder, a path below a file, and an existing file
    that is neither an HTML file nor a page mtl-search wrote (``--out data.csv`` by mistake
    must not replace the data)."""
    from mtl_search.errors import UserError, check_output_path

    target = Path(path)
    if target.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file name such as report.html")
    check_output_path(path, flag)
    if target.is_file() and target.suffix.lower() not in (".html", ".htm") and not _written_by_us(target):
        raise UserError(f"{flag} {path}: the file exists and is not an HTML page; give a file name ending in .html")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot write ({error.strerror})") from None
    return target


def _written_by_us(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return GENERATOR_META.encode() in file.read(4096)
    except OSError:
        return False
