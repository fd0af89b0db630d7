"""Where the bundled search spaces are, and which file ``--space`` names, without importing
what reading a space needs (the CLI's ``--help`` lists them, and a missing file is refused
before torch loads)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from mtl_search.errors import UserError

# Package data, so that an installed wheel has them too. pip installs a package as a folder, so
# the resource is a real path: it is printed in messages and its name becomes the study's.
SPACES_DIR = Path(str(resources.files("mtl_search") / "spaces"))


def bundled_space_names() -> list[str]:
    """The names ``--space`` takes without a path (``experts`` for mtl_search/spaces/experts.yaml)."""
    return sorted(path.stem for path in SPACES_DIR.glob("*.yaml"))


def resolve_space_path(path: str | os.PathLike[str] | None) -> Path:
    """The space file ``--space`` names: a path, a bundled space's name, or None for the default."""
    if path is None:
        return SPACES_DIR / "default.yaml"
    candidate = Path(path)
    if not candidate.exists() and candidate.suffix == "" and (SPACES_DIR / f"{candidate}.yaml").exists():
        return SPACES_DIR / f"{candidate}.yaml"
    if not candidate.exists():
        bundled = ", ".join(bundled_space_names())
        raise UserError(f"space file {candidate}: no such file (bundled spaces, by name: {bundled})")
    return candidate
