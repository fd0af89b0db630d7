"""User-facing errors.

Anything raised as :class:`UserError` is a problem with what the user gave us (a file, a
flag, a value). The CLI prints its message on one line and exits with status 2; it never
shows a traceback unless ``--debug`` is given.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the file, field or value at fault."""

    exit_code = 2


class TrialDiverged(Exception):
    """Training produced a non-finite loss; the trial fails with this reason."""
