"""The command-line reference names every command and every flag that --help shows."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mtl_search.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
CLI_DOC = REPO / "docs" / "reference" / "cli.md"


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


def _documented_run_commands() -> list[tuple[str, str]]:
    """(file, command) for every `run` command line of the docs and README, continuations joined."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")
        for line in text.splitlines():
            if re.search(r"(mtl-search|-m mtl_search) run\b", line):
                found.append((str(page.relative_to(REPO)), line.strip()))
    return found


def test_every_documented_census_run_names_the_census_file():
    commands = _documented_run_commands()
    assert any("--data census" in command for _, command in commands)
    without_file = [
        (page, command) for page, command in commands if "--data census" in command and "--data-file" not in command
    ]
    assert not without_file, f"census runs without --data-file (refused as written): {without_file}"
