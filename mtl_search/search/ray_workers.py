"""Worker processes as Ray tasks: the local workers' design on a Ray cluster.

Each worker is a Ray task that opens the study's storage itself and runs the same worker loop
as a ``--workers`` process (:func:`mtl_search.search.workers.run_worker`): the same trial
claiming, our own Pareto-aware pruning, Optuna's heartbeats failing and retrying the trials of
workers that died. What a local pool keeps in shared memory lives in one small Ray actor, the
:class:`Coordinator`: the ``--trials`` budget, the finished trials on their way to the progress
bar, and a stop request.

Stops. Ray runs each task in its own process group, so a terminal's Ctrl-C reaches only the
driver. The driver keeps the signal (as a local pool does) and asks the coordinator to stop; a
thread in each worker polls for that and sends the same signal to its own process, where the
worker loop's handling records the running trial as failed ("interrupted", "terminated").

Deaths. Tasks are not retried by Ray (``max_retries=0``): when a worker process dies (killed, out
of memory, its node lost), the trials it had claimed but not finished are held for a new worker
started in its place, a few times at most. The trial it left RUNNING is failed once its
heartbeat is older than the grace period, and retried, by whichever worker starts a trial next,
exactly as with local workers. The replacement waits the grace period before its first trial,
and the held claims keep budget for the retry, so it happens within the run even when the
others have used up the rest of the budget by then.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable

import optuna

from mtl_search.errors import Terminated, UserError
from mtl_search.search.workers import _Interrupts, keep_startup_stops, run_worker, startup_stopped

RAY_INSTALL = "pip install 'mtl-search[ray]'"
# a worker slot whose process died this many times is not started again
MAX_RESTARTS = 3
# exit status the driver gives a worker whose process died without reporting one
EXIT_DIED = 1
# how often the driver collects finished trials and a worker looks for a stop request (seconds)
POLL_SECONDS = 0.5
# a local instance's shared-object store: the workers pass only a few small objects through it
LOCAL_OBJECT_STORE_BYTES = 100 * 1024 * 1024
# the driver's environment the workers get too (on a cluster they start from the node's own)
FORWARDED_ENVIRONMENT_PREFIXES = ("MTL_SEARCH_", "OMP_NUM_THREADS")
# how long --ray-address may take to accept a connection: Ray itself retries an address where
# nothing listens for about 14 minutes, printing a warning every few seconds
ADDRESS_PROBE_SECONDS = 10.0


def import_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`UserError` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray: Ray is not installed ({RAY_INSTALL})") from None
    return ray


class Coordinator:
    """The run's shared state, as a Ray actor: the budget, finished trials, a stop request.

    ``outstanding`` counts, per worker, the trials it claimed and has not reported finished: what
    a worker that died took from the budget without using (:meth:`return_lost_claims`).
    """

    def __init__(self, n_trials: int) -> None:
        self.left = n_trials
        self.outstanding: dict[int, int] = {}
        # claims a dead worker left, held for the worker started in its place (its first trial
        # then retries the dead one's, which the others could otherwise leave RUNNING by using up
        # the budget first)
        self.reserved: dict[int, int] = {}
        self.finished: list[optuna.trial.FrozenTrial] = []
        self.stop_signal: int | None = None

    def claim_many(self, worker: int, count: int) -> int:
        held = min(count, self.reserved.get(worker, 0))
        if held:
            self.reserved[worker] -= held
        taken = max(0, min(count - held, self.left))
        self.left -= taken
        self.outstanding[worker] = self.outstanding.get(worker, 0) + held + taken
        return held + taken

    def give_back(self, count: int) -> None:
        # a repeat of a trained candidate: it was reported finished already, so only the budget grows
        self.left += count

    def report(self, worker: int, trial: optuna.trial.FrozenTrial) -> None:
        self.outstanding[worker] = self.outstanding.get(worker, 0) - 1
        self.finished.append(trial)

    def take_finished(self) -> list[optuna.trial.FrozenTrial]:
        finished, self.finished = self.finished, []
        return finished

    def return_lost_claims(self, worker: int, hold: bool = False) -> int:
        """The claims a dead worker did not use: held for its replacement (``hold``) or back in the budget."""
        lost = max(0, self.outstanding.pop(worker, 0)) + self.reserved.pop(worker, 0)
        if hold:
            self.reserved[worker] = lost
        else:
            self.left += lost
        return lost

    def release_held(self, worker: int) -> None:
        self.left += self.reserved.pop(worker, 0)

    def trials_left(self) -> int:
        return self.left

    def stop(self, signum: int) -> None:
        self.stop_signal = self.stop_signal or signum

    def stop_requested(self) -> int | None:
        return self.stop_signal


class RayBudget:
    """A worker's view of the coordinator's budget (see :class:`mtl_search.search.workers.Budget`)."""

    shared = True

    def __init__(self, coordinator: Any, worker: int) -> None:
        self.coordinator = coordinator
        self.worker = worker

    def claim(self) -> bool:
        return self.claim_many(1) == 1

    def claim_many(self, count: int) -> int:
        import ray

        return ray.get(self.coordinator.claim_many.remote(self.worker, count))

    def give_back(self, count: int) -> None:
        import ray

        ray.get(self.coordinator.give_back.remote(count))


class _StopWatcher(threading.Thread):
    """Polls the coordinator for a stop and sends its signal to this process (handled in the main thread)."""

    def __init__(self, coordinator: Any) -> None:
        super().__init__(name="mtl-search-stop-watcher", daemon=True)
        self.coordinator = coordinator
        self.done = threading.Event()

    def run(self) -> None:
        import ray

        while not self.done.wait(POLL_SECONDS):
            try:
                signum = ray.get(self.coordinator.stop_requested.remote(), timeout=30)
            except ray.exceptions.RayError:  # the driver and its actor are gone: Ray ends this task itself
                return
            if signum is not None and not self.done.is_set():
                os.kill(os.getpid(), signum)
                return


def search_worker(
    target: Callable[..., Any],
    args: tuple,
    index: int,
    coordinator: Any,
    threads: int | None,
    working_dir: str,
    environment: dict[str, str],
    delay: float = 0.0,
) -> int:
    """One worker, run as a Ray task: the driver's folder and environment, then (after ``delay``
    seconds, for a replacement) the worker loop."""
    import ray

    keep_startup_stops()
    # Ray's worker processes block SIGINT in every thread; this process ends with its task
    # (max_calls=1), so it may take the stop its watcher sends like a local worker.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.environ.update(environment)
    if os.path.isdir(working_dir):  # relative paths (the SQLite file, the space) mean what they mean to the driver
        os.chdir(working_dir)
    multiprocessing.current_process().name = f"mtl-search-worker-{index + 1}"  # how its messages name it
    watcher = _StopWatcher(coordinator)
    watcher.start()
    waited_until = time.monotonic() + delay
    while time.monotonic() < waited_until and not startup_stopped():  # a stop ends the wait
        time.sleep(0.25)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        ray.get(coordinator.report.remote(index, trial))

    try:
        return run_worker(target, args, index, RayBudget(coordinator, index), report, threads)
    finally:
        watcher.done.set()


def address_unreachable(address: str) -> str | None:
    """Why no connection opens to ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``), or None when
    one does or the address has another form (``auto``, ``local``: Ray resolves those)."""
    host, colon, port = address.strip().removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_PROBE_SECONDS):
            return None
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__


class RayWorkerPool:
    """``n_workers`` Ray tasks running ``target`` as :class:`mtl_search.search.workers.WorkerPool`'s
    processes do, each with ``cpus`` CPUs and ``gpus`` (possibly fractional) GPUs reserved.

    Connects to the cluster at ``address``, or starts a local instance (on 127.0.0.1, no dashboard)
    that :meth:`run` shuts down when done.
    """

    def __init__(
        self,
        n_workers: int,
        n_trials: int,
        target: Callable[..., Any],
        args: tuple = (),
        *,
        threads: int | None = None,
        address: str | None = None,
        cpus: float = 1.0,
        gpus: float = 0.0,
        replacement_delay: float = 0.0,
    ) -> None:
        self.ray = import_ray()
        # a replacement waits this long (the grace period), so that the trial its predecessor left
        # RUNNING is stale, and so failed and retried, when the replacement checks before its trial
        self.replacement_delay = replacement_delay
        self.n_workers = n_workers
        self.n_trials = n_trials
        self.target = target
        self.args = args
        self.threads = threads
        self.cpus = cpus
        self.gpus = gpus
        self.started_here = address is None
        self.died: dict[int, str] = {}  # worker index: why its last process ended without an exit status
        self._connect(address)

    def _connect(self, address: str | None) -> None:
        ray = self.ray
        options: dict[str, Any] = {"logging_level": "ERROR", "include_dashboard": False}
        if address is None:
            cores = os.cpu_count() or 1
            if self.n_workers * self.cpus > cores:
                print(
                    f"mtl-search run: warning: {self.n_workers} workers x {self.cpus:g} CPUs on this machine's "
                    f"{cores} CPU cores: Ray reserves them all the same, and the workers slow each other down",
                    file=sys.stderr,
                )
            options.update(
                address="local",
                _node_ip_address="127.0.0.1",
                # every worker is started at once, as a local pool's are (too many for the cores is warned about)
                num_cpus=max(cores, math.ceil(self.n_workers * self.cpus)),
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            )
        else:
            unreachable = address_unreachable(address)
            if unreachable is not None:
                raise UserError(
                    f"--ray-address {address}: nothing answers there ({unreachable}); give the address "
                    f"`ray start --head` printed on the cluster's head node"
                )
            options["address"] = address
        try:
            ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError) as error:
            where = f"--ray-address {address}" if address else "--executor ray"
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{where}: cannot start or reach Ray ({reason})") from None
        try:
            self._check_resources(address)
        except UserError:
            ray.shutdown()
            raise

    def _check_resources(self, address: str | None) -> None:
        """Refuse a worker the cluster could never place (it would wait for ever); note a cluster
        that holds fewer workers at once than asked."""
        resources = self.ray.cluster_resources()
        where = f"the Ray cluster at {address}" if address else "this machine's Ray instance"
        fits = math.inf
        for name, flag, wanted in (
            ("CPU", "--ray-cpus-per-worker", self.cpus),
            ("GPU", "--ray-gpus-per-worker", self.gpus),
        ):
            if wanted <= 0:
                continue
            total = resources.get(name, 0.0)
            if total < wanted:
                raise UserError(f"{flag} {wanted:g}: {where} has {total:g} {name}s in all, so no worker could start")
            fits = min(fits, math.floor(total / wanted + 1e-9))
        if fits < self.n_workers:
            print(
                f"mtl-search run: note: {where} holds {fits} of the {self.n_workers} workers at once; "
                f"the others start as resources free up",
                file=sys.stderr,
            )

    def nodes(self) -> int:
        """Nodes of the cluster that are alive."""
        return sum(1 for node in self.ray.nodes() if node.get("Alive"))

    def run(self, on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> list[int]:
        """Run the workers until all are done; their exit statuses (as :meth:`WorkerPool.run`'s).

        Ctrl-C or SIGTERM here is passed to every worker through the coordinator; once they have
        recorded their running trials and ended, ``KeyboardInterrupt`` (:class:`Terminated`) is raised.
        """
        try:
            with _Interrupts() as interrupts:
                codes = self._run(interrupts, on_trial)
        finally:
            if self.started_here:
                self.ray.shutdown()
        if interrupts.requested is not None:
            raise interrupts.requested
        return codes

    def _run(self, interrupts: _Interrupts, on_trial: Callable[[optuna.trial.FrozenTrial], None] | None) -> list[int]:
        ray = self.ray
        coordinator = ray.remote(num_cpus=0)(Coordinator).remote(self.n_trials)
        task = ray.remote(
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            max_retries=0,  # a dead worker is replaced here, once its claims are back in the budget
            max_calls=1,  # a fresh process for each worker: its own signal handlers and torch threads
        )(search_worker)
        environment = {
            key: value for key, value in os.environ.items() if key.startswith(FORWARDED_ENVIRONMENT_PREFIXES)
        }

        def start(index: int, delay: float = 0.0) -> Any:
            return task.remote(
                self.target, self.args, index, coordinator, self.threads, os.getcwd(), environment, delay
            )

        running = {start(index): index for index in range(self.n_workers)}
        codes = [0] * self.n_workers
        restarts = [0] * self.n_workers
        stop_sent = False
        while running:
            ready, _ = ray.wait(list(running), num_returns=len(running), timeout=POLL_SECONDS)
            self._report(coordinator, on_trial)
            if interrupts.requested is not None and not stop_sent:
                stop_sent = True
                ray.get(
                    coordinator.stop.remote(signal.SIGTERM if interrupts.requested is Terminated else signal.SIGINT)
                )
            for ref in ready:
                index = running.pop(ref)
                try:
                    codes[index] = ray.get(ref)
                    continue
                except ray.exceptions.RayTaskError as error:  # an error of our own code in the worker
                    self.died[index] = _last_line(error)
                except ray.exceptions.RayError as error:  # the process or its node died
                    self.died[index] = _death(error)
                codes[index] = EXIT_DIED
                lost = ray.get(coordinator.return_lost_claims.remote(index, hold=True))
                left = ray.get(coordinator.trials_left.remote())
                again = not stop_sent and (lost > 0 or left > 0) and restarts[index] < MAX_RESTARTS
                if not again:
                    ray.get(coordinator.release_held.remote(index))
                print(
                    f"mtl-search run: warning: Ray worker {index + 1} ended: {self.died[index]}; "
                    + (
                        f"its {lost} unfinished trial(s) go to the worker started in its place "
                        f"({restarts[index] + 1} of {MAX_RESTARTS}), which retries the one it was training"
                        if again
                        else f"{lost} unfinished trial(s) returned to the budget"
                    ),
                    file=sys.stderr,
                )
                if again:
                    restarts[index] += 1
                    running[start(index, self.replacement_delay)] = index
        self._report(coordinator, on_trial)
        return codes

    def _report(self, coordinator: Any, on_trial: Callable[[optuna.trial.FrozenTrial], None] | None) -> None:
        for trial in self.ray.get(coordinator.take_finished.remote()):
            if on_trial is not None:
                on_trial(trial)

    def describe(self, index: int, code: int) -> str:
        """Worker ``index`` and how it ended, for the run's summary line."""
        name = f"Ray worker {index + 1}"
        if index in self.died and code == EXIT_DIED:
            return f"{name} ({self.died[index]})"
        return f"{name} (exit status {code})"


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _death(error: BaseException) -> str:
    """Why a worker process died, in a few words (Ray's own messages run to many lines)."""
    kind = type(error).__name__
    return {
        "WorkerCrashedError": "its process died (killed, or out of memory)",
        "NodeDiedError": "its node died",
        "OutOfMemoryError": "Ray stopped it for lack of memory",
    }.get(kind, f"{kind}: {_last_line(error)[:200]}")
