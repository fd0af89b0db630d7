"""Running trials: the optimisation loop, its Ctrl-C handling, and worker processes.

One loop serves every case. It claims a trial from a :class:`TrialBudget` before each
``study.optimize(n_trials=1)``, so the budget is exact however many processes share it, and
Optuna still fails stale trials (those of killed workers, via heartbeats) before each trial.

Ctrl-C never leaves a trial RUNNING: while a trial trains, the first SIGINT becomes
``KeyboardInterrupt`` and the trial is stored as FAIL with ``fail_reason`` "interrupted";
anywhere else (sampling, saving a result) the loop finishes that step and stops before the
next trial. A second Ctrl-C is ignored so that it cannot break this bookkeeping. SIGTERM is
handled alike (``fail_reason`` "terminated", :class:`mtl_search.errors.Terminated`).

A stop is never raised inside a storage call (SQLAlchemy, sqlite3, Optuna's storages): a
``KeyboardInterrupt`` there skips the session's rollback, and the open transaction makes the
trial's own FAIL record fail with "database is locked". Nor can Python raise out of a
garbage-collector callback or ``__del__``: a signal landing there would be printed as
"Exception ignored" with a traceback and dropped, and the trial would train on. Both kinds of
stop are kept and raised at the next safe point: :func:`raise_if_stopped`, which the objective
calls after every epoch and training after every optimiser step (through
:func:`mtl_search.stops.raise_pending_stop`), or the end of a :func:`shielded` block. A worker
keeps a stop that arrives while it starts (loading data, opening the study) the same way, and
its search stops before its first trial.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from types import FrameType
from typing import Any, Callable, Iterator, Protocol, Sequence

import optuna

from mtl_search.errors import StudyWarning, Terminated, UserError
from mtl_search.records.trial import TrialRecord
from mtl_search.search.reconnect import StorageUnreachable
from mtl_search.stops import exit_now, install_stop_check, noted_stop

INTERRUPTED = "interrupted"
TERMINATED = "terminated"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Code a stop must not be raised in: a KeyboardInterrupt skips its rollback (Optuna's sessions
# only roll back on Exception) and leaves a transaction open.
STORAGE_MODULES = ("sqlalchemy", "sqlite3", "optuna.storages", "alembic")
Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


class Budget(Protocol):
    # whether other processes take trials from this budget too (they then run concurrently)
    shared: bool

    def claim(self) -> bool:
        """Take one trial from the budget; False when none is left."""

    def give_back(self, count: int) -> None:
        """Return ``count`` claimed trials that did not use them (repeats of trained candidates)."""


class LocalBudget:
    """``n_trials`` trials for this process alone (``None``: until the timeout)."""

    shared = False

    def __init__(self, n_trials: int | None) -> None:
        self.left = n_trials

    def claim(self) -> bool:
        return self.claim_many(1) == 1

    def claim_many(self, count: int) -> int:
        """Take up to ``count`` trials at once; how many were taken."""
        if self.left is None:
            return count
        taken = max(0, min(count, self.left))
        self.left -= taken
        return taken

    def give_back(self, count: int) -> None:
        if self.left is not None:
            self.left += count


class TrialBudget:
    """``n_trials`` trials shared by the worker processes of one run (a counter in shared memory)."""

    shared = True

    def __init__(self, n_trials: int, context: Any = None) -> None:
        context = context or multiprocessing.get_context("spawn")
        self._left = context.Value("i", n_trials)

    def claim(self) -> bool:
        return self.claim_many(1) == 1

    def claim_many(self, count: int) -> int:
        """Take up to ``count`` trials at once (a worker's whole population); how many were taken."""
        with self._left.get_lock():
            taken = max(0, min(count, self._left.value))
            self._left.value -= taken
            return taken

    def give_back(self, count: int) -> None:
        with self._left.get_lock():
            self._left.value += count

    @property
    def left(self) -> int:
        return self._left.value


# A candidate the sampler proposes again is not trained again (CandidateObjective.repeat) and
# does not use up the budget, so that the budget buys new candidates; past this many in a row
# the space is likely exhausted for the sampler, and repeats count again so that the run ends.
MAX_FREE_REPEATS_IN_A_ROW = 10


class RepeatRefunds:
    """Gives back to ``budget`` the trials that only repeated a trained candidate (see
    ``MAX_FREE_REPEATS_IN_A_ROW``); :meth:`callback` is an Optuna callback that notes each."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.in_a_row = 0
        self.warned = False

    def callback(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if TrialRecord.read(trial, only=("repeat_of",)).repeat_of is None:
            self.in_a_row = 0
            return
        give_back = getattr(self.budget, "give_back", None)  # a budget of one's own may not take trials back
        if give_back is not None and self.in_a_row < MAX_FREE_REPEATS_IN_A_ROW:
            self.in_a_row += 1
            give_back(1)
        elif not self.warned:
            self.warned = True
            warnings.warn(
                f"the sampler proposed {MAX_FREE_REPEATS_IN_A_ROW} trained candidates in a row: the space looks "
                f"exhausted for it, and further repeats count against the trials",
                StudyWarning,
                stacklevel=2,
            )


class _Interrupts:
    """SIGINT and SIGTERM handling for :func:`optimize_study` (see the module docstring)."""

    def __init__(self, forward: Callable[[int], None] | None = None) -> None:
        self.requested: type[KeyboardInterrupt] | None = None  # what to raise once stopped
        self.armed = False  # True while a trial's objective runs
        self.forward = forward  # called with the signal's number on the first stop
        self._previous: dict[int, Any] = {}
        self._previous_unraisable_hook: Any = None
        self._previous_stop_check: Callable[[], None] | None = None

    def __enter__(self) -> "_Interrupts":
        global _active
        # a worker stopped while it started; a command's stop raised where Python dropped it
        self.requested = self.requested or _startup_stop or noted_stop()
        # Handlers can only be installed from the main thread; elsewhere Ctrl-C is Python's default.
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
            self._previous_unraisable_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
            self._previous_stop_check = install_stop_check(raise_if_stopped)  # training checks after each step
            _active = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        # A stopped worker ignores the stops still on their way (the group's Ctrl-C and the
        # parent's forwarded one both arrive): one landing while it records its trials or exits
        # would only break a cleanup with a traceback. The parent keeps its handlers, so that a
        # second Ctrl-C still ends a slow exit.
        stopped_worker = self.requested is not None and multiprocessing.parent_process() is not None
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if stopped_worker else previous)
        if self._previous_unraisable_hook is not None:
            sys.unraisablehook = self._previous_unraisable_hook
            install_stop_check(self._previous_stop_check)
            _active = None

    def _unraisable(self, unraisable: Any) -> None:
        # our own stop, raised where Python drops exceptions: raise_if_stopped raises it later
        if self.requested is not None and isinstance(unraisable.exc_value, self.requested):
            return
        self._previous_unraisable_hook(unraisable)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            return
        self.requested = _stop_for(signum)
        if self.forward is not None:
            self.forward(signum)
        if self.armed and not in_storage_call(frame):
            raise self.requested


_active: _Interrupts | None = None  # the handling of this process's optimize_study, while it runs
_startup_stop: type[KeyboardInterrupt] | None = None  # a stop a worker received before its search began


def startup_stopped() -> bool:
    """Whether this worker process was stopped before its search began."""
    return _startup_stop is not None


def _stop_for(signum: int) -> type[KeyboardInterrupt]:
    return Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def in_storage_call(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it runs storage code (see ``STORAGE_MODULES``)."""
    while frame is not None:
        module = frame.f_globals.get("__name__") or ""
        if any(module == name or module.startswith(name + ".") for name in STORAGE_MODULES):
            return True
        frame = frame.f_back
    return False


def raise_if_stopped() -> None:
    """Raise a Ctrl-C or SIGTERM that arrived during the running trial and was not raised yet.

    For code that runs inside a trial at safe points (the objective calls it after each epoch);
    a no-op outside :func:`optimize_study` and when no stop was requested.
    """
    interrupts = _active
    if interrupts is not None and interrupts.armed and interrupts.requested is not None:
        raise interrupts.requested


@contextmanager
def shielded() -> Iterator[None]:
    """Run a trial's bookkeeping (writing its epoch record) whole: a stop arriving meanwhile is
    raised when the block ends, not in the middle of a storage write. A no-op outside a trial."""
    interrupts = _active
    if interrupts is None or not interrupts.armed:
        yield
        return
    interrupts.armed = False
    try:
        yield
    finally:
        interrupts.armed = True
    if interrupts.requested is not None:
        raise interrupts.requested


class _InterruptibleObjective:
    def __init__(self, objective: Callable[[optuna.trial.Trial], Any], interrupts: _Interrupts) -> None:
        self.objective = objective
        self.interrupts = interrupts

    def __call__(self, trial: optuna.trial.Trial) -> Any:
        try:
            self.interrupts.armed = True
            if self.interrupts.requested:
                raise self.interrupts.requested
            return self.objective(trial)
        except KeyboardInterrupt as stop:
            self.interrupts.armed = False
            TrialRecord(fail_reason=TERMINATED if isinstance(stop, Terminated) else INTERRUPTED).write(trial)
            raise  # Optuna stores the trial as FAIL and re-raises
        finally:
            self.interrupts.armed = False


def optimize_study(
    study: optuna.Study,
    objective: Callable[[optuna.trial.Trial], Any],
    budget: Budget,
    *,
    timeout: float | None = None,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Sequence[Callback] = (),
) -> None:
    """Run trials while the budget lasts and ``timeout`` seconds have not passed.

    Raises ``KeyboardInterrupt`` after a Ctrl-C, once the study is consistent.
    """
    started = time.monotonic()
    refunds = RepeatRefunds(budget)
    callbacks = [*callbacks, refunds.callback]
    with _Interrupts() as interrupts:
        wrapped = _InterruptibleObjective(objective, interrupts)
        while True:
            if interrupts.requested:
                raise interrupts.requested
            if timeout is not None and time.monotonic() - started >= timeout:
                return
            if not budget.claim():
                return
            try:
                study.optimize(wrapped, n_trials=1, catch=catch, callbacks=list(callbacks), gc_after_trial=False)
            except Exception as error:
                # Optuna's own bookkeeping after a trial may fail in turn and hide the one-line cause
                unreachable = _storage_unreachable(error)
                if unreachable is None:
                    raise
                raise unreachable from None


def _storage_unreachable(error: BaseException | None) -> StorageUnreachable | None:
    """The :class:`StorageUnreachable` that ``error`` is or arose from, if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, StorageUnreachable):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


# --- worker processes --------------------------------------------------------------------

# Exit status of a worker: as the CLI's (0 done, 2 bad input, 130 interrupted, 143
# terminated), 1 otherwise.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class WorkerPool:
    """``n_workers`` spawned processes that each call ``target(*args, worker_index=, budget=, callbacks=)``.

    ``target`` loads its own data and space and runs :func:`optimize_study` with the shared
    ``budget``; each process trains with ``threads`` torch threads (None: one, see
    mtl_search/threads.py); every finished trial comes back to this process through a queue
    (for the progress bar). Spawned, not forked: a fork of a process holding torch threads or open
    database connections is unsafe.
    """

    def __init__(
        self, n_workers: int, n_trials: int, target: Callable[..., Any], args: tuple = (), threads: int | None = None
    ) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.budget = TrialBudget(n_trials, self.context)
        self.finished: Any = self.context.Queue()
        self.processes = [
            self.context.Process(
                target=_worker_main,
                args=(target, args, index, self.budget, self.finished, threads),
                name=f"mtl-search-worker-{index + 1}",
            )
            for index in range(n_workers)
        ]

    def run(self, on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> list[int]:
        """Start the workers, report finished trials until all exit; their exit codes.

        On Ctrl-C (or SIGTERM) here, the workers get the same signal (they record their
        running trials as interrupted or terminated) and are waited for; then
        ``KeyboardInterrupt`` (:class:`Terminated`) is raised. The handler only records and
        forwards the signal: raised at a random point of this loop, the stop could land where
        Python drops it (a garbage-collector callback) and the workers would never hear of it.
        """
        for process in self.processes:
            process.start()
        with _Interrupts(forward=self.interrupt) as interrupts:
            self._wait(on_trial)
        if interrupts.requested is not None:
            raise interrupts.requested
        return [process.exitcode for process in self.processes]

    def describe(self, index: int, code: int) -> str:
        """Worker ``index`` and how it ended, for the run's summary line."""
        if code is not None and code < 0:
            return f"{self.processes[index].name} (killed by {signal.Signals(-code).name})"
        return f"{self.processes[index].name} (exit status {code})"

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass

    def _wait(self, on_trial: Callable[[optuna.trial.FrozenTrial], None] | None) -> None:
        while True:
            alive = any(process.is_alive() for process in self.processes)
            try:
                trial = self.finished.get(timeout=0.5)
            except queue.Empty:
                if not alive:
                    break
                continue
            if on_trial is not None:
                on_trial(trial)
        for process in self.processes:
            process.join()


def _worker_main(
    target: Callable[..., Any], args: tuple, index: int, budget: TrialBudget, finished: Any, threads: int | None
) -> None:
    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished.put(trial)

    try:
        code = run_worker(target, args, index, budget, report, threads)
    finally:
        finished.close()
        finished.join_thread()  # everything reported reaches the parent before we exit
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        exit_now(code)  # the parent waits for this exit
    if code:
        sys.exit(code)


def run_worker(
    target: Callable[..., Any], args: tuple, index: int, budget: Budget, report: Callback, threads: int | None
) -> int:
    """The body of a worker process, local or on a Ray cluster: ``target(*args, worker_index=,
    budget=, callbacks=[report])`` with the stop handling of a worker; the exit status it ends
    with (0, 2 for bad input, :data:`EXIT_INTERRUPTED`, :data:`EXIT_TERMINATED`). A bad input is
    printed as one line; any other error propagates."""
    from mtl_search.threads import apply_threads

    apply_threads(threads, interop=True)
    # Ctrl-C reaches the whole process group; optimize_study decides what it interrupts.
    # Until its search installs its own handling, a stop is only kept: raised while the worker
    # opens the study, it could land in a storage call or a garbage-collector callback.
    keep_startup_stops()
    code = 0
    try:
        target(*args, worker_index=index, budget=budget, callbacks=[report])
        if _startup_stop is not None:  # stopped before its search began
            raise _startup_stop
    except KeyboardInterrupt as stop:
        _ignore_stop_signals()  # the parent forwards the stop too: a second one must not break the exit
        code = EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED
    except UserError as error:
        print(f"mtl-search worker {index + 1}: error: {error}", file=sys.stderr)
        code = error.exit_code
    finally:
        _ignore_stop_signals()
    return code


def keep_startup_stops() -> None:
    """Keep a stop signal that arrives before the search installs its handling (see run_worker)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _keep_startup_stop)


def _keep_startup_stop(signum: int, frame: Any) -> None:
    global _startup_stop
    _startup_stop = _startup_stop or _stop_for(signum)


def _ignore_stop_signals() -> None:
    """A worker that is done ignores further stop signals: one landing while it exits (the group's
    Ctrl-C and the parent's forwarded one both arrive) would only break an exit handler with a traceback."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
