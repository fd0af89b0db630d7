"""A stop (Ctrl-C, SIGTERM) that is waiting to be raised, for code below the search layer.

The search's signal handling (``mtl_search/search/workers.py``) raises a stop at once where
that is safe and otherwise keeps it for the next safe point. Training loops call
:func:`raise_pending_stop` after each optimiser step, so that a kept stop waits one step, not
the rest of an epoch. The search installs the check while it runs; elsewhere (training called
from Python, export's retraining) it does nothing. A stopped command or worker process then
ends with :func:`exit_now`.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Callable, NoReturn

_check: Callable[[], None] | None = None
# a stop the command's own handling noted as it raised it (see note_stop)
_noted: type[KeyboardInterrupt] | None = None


def install_stop_check(check: Callable[[], None] | None) -> Callable[[], None] | None:
    """Make ``check`` (raising the waiting stop, if any) what :func:`raise_pending_stop` calls; the previous one."""
    global _check
    previous, _check = _check, check
    return previous


def raise_pending_stop() -> None:
    """Raise a stop that arrived where it could not be raised; a no-op when none waits."""
    check = _check
    if check is not None:
        check()
    elif _noted is not None:
        raise _noted()


def note_stop(stop: type[KeyboardInterrupt]) -> None:
    """Remember a stop as its signal handler raises it.

    Python drops an exception raised in a finaliser or a garbage-collector callback (it prints
    "Exception ignored" and goes on), and a signal handler runs wherever the main thread is, so
    a Ctrl-C can land there, while a table loads for example. A noted stop is raised again at
    the next safe point (:func:`raise_pending_stop`, the start of a search)."""
    global _noted
    _noted = _noted or stop


def noted_stop() -> type[KeyboardInterrupt] | None:
    """The stop noted since :func:`forget_noted_stop`, if any."""
    return _noted


def forget_noted_stop() -> None:
    global _noted
    _noted = None


def exit_now(code: int) -> NoReturn:
    """End a stopped process at once, once what it had to record is recorded (its running
    trial, its files): a normal exit would wait for threads still parsing a table (pandas',
    pyarrow's) and spend seconds freeing torch's objects. Exit handlers still run (logging's
    flush, multiprocessing's clean-up, temporary folders) and the output is flushed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone, a stream closed: nothing left to show
            pass
    atexit._run_exitfuncs()
    os._exit(code)
