"""The ``mtl-search`` command line.

Each command lives in its own module with ``add_parser(subparsers)`` and ``main(args)``.
Every problem with the user's input is a :class:`UserError`, printed as one line on stderr
with exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
import warnings
from typing import Any, Iterator, Sequence

from mtl_search.errors import Terminated, UserError
from mtl_search.stops import exit_now, forget_noted_stop, note_stop
from mtl_search.version import __version__

COMMANDS = (
    "run",
    "studies",
    "pareto",
    "report",
    "export",
    "dashboard",
    "refine",
    "baselines",
    "affinity",
    "pruning",
)


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one line and exit status 2, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class CommandParser(OneLineParser):
    """A command's parser: it rejects what it does not know itself.

    Everything after the command name reaches the command's parser, so an unknown argument
    there is the command's; argparse would hand it up and report it as the top level's.
    """

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mtl-search",
        description="Search the sharing structure of a multi-task network and keep the Pareto front across tasks.",
    )
    parser.add_argument("--version", action="version", version=f"mtl-search {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mtl_search.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"mtl_search.cli.{name}":
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command != "run" and os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        # torchrun started this command in several processes: they would each do the same work
        if os.environ.get("RANK", "0") == "0":
            print(
                f"mtl-search {args.command}: error: only `run` trains data-parallel under torchrun "
                f"(WORLD_SIZE={os.environ['WORLD_SIZE']}); run `mtl-search {args.command}` without torchrun",
                file=sys.stderr,
            )
        return 2
    try:
        with warnings.catch_warnings(), _stops_raised_and_noted():  # both restore the caller's settings afterwards
            _warnings_on_one_line(args.command)
            code = int(args.handler(args) or 0)
        sys.stdout.flush()  # here, so that a reader gone by now is handled below, not at exit
        return code
    except UserError as error:
        if args.debug:
            raise
        print(f"mtl-search {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(f"mtl-search {args.command}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return 143 if terminated else 130  # 128 + the signal's number, as a shell reports it
    except BrokenPipeError:
        if args.debug:
            raise
        # the reader went away (`mtl-search pareto STUDY | head`): stop quietly, as Unix tools do;
        # stdout goes to /dev/null so that the interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE


@contextlib.contextmanager
def _stops_raised_and_noted() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, as Python's own handler does, and SIGTERM stops a
    command as Ctrl-C does (see :class:`Terminated`) instead of killing it mid-write and leaving
    its trial RUNNING until the grace period. Each stop is also noted (:func:`note_stop`): one
    raised where Python drops exceptions is raised again at the next safe point."""
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raised = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        note_stop(raised)
        raise raised()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        forget_noted_stop()


def _warnings_on_one_line(command: str) -> None:
    """Data and study warnings (an identifier column, a text column with many values, a study
    continued with another space) as one line each, like errors: Python's default adds the file, line and source of the warn() call."""
    from mtl_search.errors import OneLineWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 (warnings' own signature)
        if not issubclass(category, OneLineWarning):
            return default(message, category, filename, lineno, file, line)
        print(f"mtl-search {command}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def console_script() -> None:
    """The `mtl-search` command. (Not named `run`: importing the `run` command's module would
    replace a package attribute of that name.)"""
    try:
        code = main()
    except KeyboardInterrupt:  # Ctrl-C before a command started (while torch imports): nothing to tidy
        print("mtl-search: interrupted", file=sys.stderr)
        code = 130
    if code in (130, 143):
        exit_now(code)  # stopped: what it had to record is recorded
    sys.exit(code)
