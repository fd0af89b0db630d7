"""How many CPU threads torch uses while candidates train.

One thread per process unless told otherwise. The networks a search trains are small
(thousands of parameters, batches of a few hundred rows), so a second thread saves little on
an idle machine; on a machine whose cores are busy with other work, torch's threads wait for
each other at every operation and the same search took many times the CPU and wall time
(``benchmarks/threads_busy.py`` measures it). Several workers or a population sharing the
cores each get one thread for the same reason. ``--threads N`` (``SearchSettings.threads``)
asks for more; ``OMP_NUM_THREADS``, when set, is honoured as the user's own choice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Any, Callable, Iterator

from mtl_search.errors import UserError, is_whole

DEFAULT_THREADS = 1
# far above any machine's cores; torch fails without a message when asked for vastly more
MAX_THREADS = 1024
THREADS_HELP = (
    "torch CPU threads of each process (default: 1, or $OMP_NUM_THREADS; more rarely helps the small "
    "networks a search trains and slows training badly when other work shares the cores)"
)


def chosen_threads(threads: int | None = None) -> int:
    """``threads`` when given (checked), else ``$OMP_NUM_THREADS`` when it holds a whole number
    from 1 to ``MAX_THREADS``, else 1."""
    if threads is not None:
        if not is_whole(threads) or not 1 <= threads <= MAX_THREADS:
            raise UserError(f"threads {threads!r}: expected a whole number from 1 to {MAX_THREADS}")
        return int(threads)
    from_environment = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_environment.isdigit() and 1 <= int(from_environment) <= MAX_THREADS:
        return int(from_environment)
    return DEFAULT_THREADS


def apply_threads(threads: int | None = None, *, interop: bool = False) -> int:
    """Set torch's intra-op threads to :func:`chosen_threads`; the number set.

    ``interop``: also one inter-op thread (a training loop runs no operations concurrently).
    Torch accepts that only before any parallel work in the process, so only a fresh process
    (a command, a worker) asks for it; where it is too late the setting is left as it is.
    """
    import torch

    count = chosen_threads(threads)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    if interop:
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    return count


@contextlib.contextmanager
def threads_while(threads: int | None = None, *, interop: bool = False) -> Iterator[int]:
    """Train with :func:`chosen_threads` threads inside the block, then give the caller's count back."""
    import torch

    before = torch.get_num_threads()
    try:
        yield apply_threads(threads, interop=interop)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def with_threads(command: Callable[[Any], int]) -> Callable[[Any], int]:
    """A command's ``main(args)`` run with ``args.threads`` threads (set before it reads any data)."""

    @functools.wraps(command)
    def main(args: Any) -> int:
        if "torch" in sys.modules:
            with threads_while(args.threads, interop=True):
                return command(args)
        # torch not imported yet, and a command that refuses its input should not import it
        # (seconds): torch takes its thread count from the environment when it loads
        count = chosen_threads(args.threads)
        before = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(count)
        try:
            return command(args)
        finally:
            if before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = before

    return main
