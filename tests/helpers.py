"""Helpers the tests import (fixtures live in conftest.py)."""

from __future__ import annotations


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-2000:]!r}, err={self.err[-2000:]!r})"


def assert_one_line_error(result: CliResult, *fragments: str) -> None:
    """A clean user error: non-zero exit, one line on stderr naming the fault, no traceback."""
    assert result.code == 2, result
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def require_chromium() -> str:
    """The chromium executable; skips the test without one, fails when CI requires services."""
    import os
    import shutil

    import pytest

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("MTL_SEARCH_REQUIRE_SERVICES") == "1":
        pytest.fail("chromium is not installed but MTL_SEARCH_REQUIRE_SERVICES=1 (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium)")
