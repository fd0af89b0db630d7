"""The command-line reference names every command and every flag that --help shows."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mtl_search.cli import build_parser

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md"


def _sections() -> dict[str, str]:
    """``## `command ...` `` sections of the reference, by command name."""
    text = CLI_DOC.read_text(encoding="utf-8")
    pattern = re.compile(r"^## `([a-z]+)[^`]*`\n(.*?)(?=^## |\Z)", re.S | re.M)
    return {match.group(1): match.group(2) for match in pattern.finditer(text)}


def test_every_command_and_flag_is_in_the_cli_reference():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    sections = _sections()
    missing = [name for name in commands if name not in sections]
    assert not missing, f"docs/reference/cli.md has no section for {missing}"
    undocumented = [
        f"{name} {option}"
        for name, command in commands.items()
        for action in command._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help" and f"`{option}" not in sections[name]
    ]
    assert not undocumented, f"flags missing from docs/reference/cli.md: {undocumented}"
