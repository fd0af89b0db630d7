"""Where the bundled search spaces are, without importing what reading one needs (the CLI's
``--help`` lists them)."""

from __future__ import annotations

from pathlib import Path

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


def bundled_space_names() -> list[str]:
    """The names ``--space`` takes without a path (``experts`` for search_spaces/experts.yaml)."""
    return sorted(path.stem for path in SPACES_DIR.glob("*.yaml"))
