"""A study storage on a database server that rides out a restart, a failover or a dropped connection.

:class:`ReconnectingRDBStorage` is Optuna's ``RDBStorage`` whose calls, when they fail for want
of a connection, are tried again with exponential back-off for a bounded time (``--storage-retry``,
$MTL_SEARCH_STORAGE_RETRY, default 60 s). It stays an ``RDBStorage``, so Optuna still puts its
trial cache in front of it and every caller (``study.optimize``, the heartbeat threads, the
population rounds, the reports) gets the retries without knowing. Each process prints one line
when its storage becomes unreachable, never a traceback.

A write whose connection broke after the server committed it may run twice, so each kind of
write is made safe to repeat:

- parameters, attributes, intermediate values and heartbeats overwrite what is there;
- a trial's final state: after a lost connection, finding the trial already in the state asked
  for means the earlier attempt landed;
- a new trial carries a one-off token; after a lost connection the study is searched for it
  before another is created, so no orphan trial stays RUNNING for ever;
- a new study: finding it by name means the earlier attempt landed.

When the server stays away longer than the retry time, the call raises
:class:`StorageUnreachable` (one line), and later calls give up at once so that a worker ends
promptly; the trial it was running stays RUNNING until another worker's heartbeat check fails
it and retries its candidate (search/storage.py). A missed heartbeat is only skipped: the
heartbeat thread never dies of it.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import threading
import time
import uuid
from datetime import datetime
from typing import Any, Callable

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from mtl_search.errors import UserError

STORAGE_RETRY = 60
STORAGE_RETRY_ENV = "MTL_SEARCH_STORAGE_RETRY"
FIRST_WAIT = 0.25
LONGEST_WAIT = 5.0
# The system attribute that identifies a trial to the call that created it (see the module docstring)
CREATE_TOKEN_ATTR = "mtl_search:create_token"
# Errors of the connection, not of the statement: a server down, restarting, shutting down or
# failing over, a connection it closed, a deadlock or a cancelled statement. A bad statement
# (ProgrammingError, IntegrityError, DataError) is not retried.
CONNECTION_ERRORS = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.PendingRollbackError,
)


class StorageUnreachable(UserError):
    """The study's database server stayed unreachable for the whole retry time."""

    exit_code = 1


def storage_retry_seconds(seconds: float | None = None) -> float:
    """How long a storage call is retried: ``seconds``, else $MTL_SEARCH_STORAGE_RETRY, else 60."""
    source = "--storage-retry"
    if seconds is None:
        text = os.environ.get(STORAGE_RETRY_ENV)
        if not text:
            return STORAGE_RETRY
        try:
            seconds, source = float(text), f"${STORAGE_RETRY_ENV}"
        except ValueError:
            raise UserError(f"${STORAGE_RETRY_ENV} {text!r}: expected a number of seconds") from None
    if not seconds >= 0:  # also refuses nan
        raise UserError(f"{source} {seconds}: must be 0 (no retry) or more seconds")
    return seconds


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` (or the SQLAlchemy error Optuna wrapped in it) is a lost or refused connection."""
    if isinstance(error, optuna.exceptions.StorageInternalError):
        error = error.__cause__ or error
    return isinstance(error, CONNECTION_ERRORS)


def reason_of(error: BaseException) -> str:
    """The database driver's own first line, e.g. "connection refused"."""
    if isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__ is not None:
        error = error.__cause__
    text = str(getattr(error, "orig", None) or error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _who() -> str:
    """How this process names itself in messages: "mtl-search worker 2" or "mtl-search"."""
    name = multiprocessing.current_process().name
    prefix = "mtl-search-worker-"
    return f"mtl-search worker {name[len(prefix) :]}" if name.startswith(prefix) else "mtl-search"


class _Outage:
    """One process's view of its server: reachable, unreachable since when, or given up on.

    Shared by the threads of the process (the trial's and the heartbeat's), so that an outage
    prints one line whichever thread meets it first."""

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self.since: float | None = None
        self.given_up = False
        self._lock = threading.Lock()

    def failed(self, error: BaseException) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
        print(
            f"{_who()}: storage unreachable, retrying for up to {self.retry_seconds:g} s: {reason_of(error)}",
            file=sys.stderr,
            flush=True,
        )

    def recovered(self) -> None:
        if self.since is not None or self.given_up:
            with self._lock:
                self.since, self.given_up = None, False

    def give_up(self, error: BaseException) -> StorageUnreachable:
        self.given_up = True
        return StorageUnreachable(
            f"the study's storage stayed unreachable for {self.retry_seconds:g} s ({reason_of(error)}); "
            f"a trial left running is failed and retried after the grace period (--storage-retry waits longer)"
        )


_calls = threading.local()  # depth of retried calls in this thread: only the outermost one retries


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: "ReconnectingRDBStorage", *args: Any, **kwargs: Any) -> Any:
        if getattr(_calls, "depth", 0):
            return method(self, *args, **kwargs)
        _calls.depth = 1
        try:
            return self._retry(method, args, kwargs)
        finally:
            _calls.depth = 0

    return call


class ReconnectingRDBStorage(optuna.storages.RDBStorage):
    """An ``RDBStorage`` that retries the calls a lost connection broke (see the module docstring)."""

    def __init__(self, url: str, *, retry_seconds: float = STORAGE_RETRY, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.retry_seconds = retry_seconds
        self._outage = _Outage(retry_seconds)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_outage", None)  # holds a lock; a copy in another process keeps its own view
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._outage = _Outage(self.retry_seconds)

    def _retry(self, method: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """``method(self, *args, **kwargs)``, again after each connection error until the retry time ends."""
        if self._outage.given_up:
            # one failed probe, so that a server that came back is used again at once
            try:
                result = method(self, *args, **kwargs)
            except Exception as error:
                if is_connection_error(error):
                    raise self._outage.give_up(error) from None
                raise
            self._outage.recovered()
            return result
        wait = FIRST_WAIT
        deadline: float | None = None
        retried = False
        while True:
            try:
                result = self._attempt(method, args, kwargs, retried)
            except Exception as error:
                if not is_connection_error(error):
                    raise
                self._outage.failed(error)
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.retry_seconds
                if now >= deadline:
                    raise self._outage.give_up(error) from None
                time.sleep(min(wait, deadline - now))
                wait = min(wait * 2, LONGEST_WAIT)
                retried = True
                self.scoped_session.remove()  # a session whose connection broke is not reused
                continue
            self._outage.recovered()
            return result

    def _attempt(self, method: Callable[..., Any], args: tuple, kwargs: dict, retried: bool) -> Any:
        if not retried:
            return method(self, *args, **kwargs)
        # an attempt after a lost connection: the one before may have landed on the server
        name = method.__name__
        if name == "set_trial_state_values":
            return self._state_values_again(method, *args, **kwargs)
        if name == "create_new_study":
            return self._study_again(method, *args, **kwargs)
        if name == "_create_with_token":
            study_id, _, token = args
            return self._created_before(study_id, token) or method(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    def _state_values_again(self, method: Callable[..., Any], trial_id: int, state: TrialState, values: Any = None):
        try:
            return method(self, trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            stored = super().get_trial(trial_id)
            landed = stored.state == state and (values is None or list(stored.values or []) == list(values))
            if landed:
                return True
            raise  # another worker finished it (its heartbeat check): as without a retry

    def _study_again(self, method: Callable[..., Any], directions: Any, study_name: str | None = None) -> int:
        try:
            return method(self, directions, study_name)
        except optuna.exceptions.DuplicatedStudyError:
            if study_name is None:
                raise
            return super().get_study_id_from_name(study_name)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._create_new_trial(study_id, template_trial)._trial_id

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        """A new trial, marked with a token so that a retry finds the one an interrupted attempt created."""
        token = uuid.uuid4().hex
        if template_trial is None:
            template = FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                values=None,
                datetime_start=datetime.now(),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            )
        else:
            template = FrozenTrial(
                number=template_trial.number,
                state=template_trial.state,
                value=None,
                values=template_trial.values,
                datetime_start=template_trial.datetime_start,
                datetime_complete=template_trial.datetime_complete,
                params=template_trial.params,
                distributions=template_trial.distributions,
                user_attrs=template_trial.user_attrs,
                system_attrs=dict(template_trial.system_attrs),
                intermediate_values=template_trial.intermediate_values,
                trial_id=template_trial._trial_id,
            )
        template.system_attrs[CREATE_TOKEN_ATTR] = token
        if getattr(_calls, "depth", 0):
            return super()._create_new_trial(study_id, template)
        _calls.depth = 1
        try:
            return self._retry(ReconnectingRDBStorage._create_with_token, (study_id, template, token), {})
        finally:
            _calls.depth = 0

    def _create_with_token(self, study_id: int, template: FrozenTrial, token: str) -> FrozenTrial:
        return super()._create_new_trial(study_id, template)

    def _created_before(self, study_id: int, token: str) -> FrozenTrial | None:
        """The trial an interrupted attempt created with ``token``, if it landed.

        Optuna's own retry inside one attempt may have created two; the later ones are failed at once."""
        found = [
            trial
            for trial in super().get_all_trials(
                study_id, deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
            )
            if trial.system_attrs.get(CREATE_TOKEN_ATTR) == token
        ]
        found.sort(key=lambda trial: trial.number)
        for duplicate in found[1:]:
            super().set_trial_state_values(duplicate._trial_id, TrialState.FAIL)
        return found[0] if found else None

    def record_heartbeat(self, trial_id: int) -> None:
        """One attempt: a missed beat is skipped, not retried, and never ends the heartbeat thread.
        A beat that lands within the grace period is all a running trial needs."""
        try:
            super().record_heartbeat(trial_id)
        except Exception as error:
            if not is_connection_error(error):
                raise
            self._outage.failed(error)
            self.scoped_session.remove()
        else:
            self._outage.recovered()


# Every storage call, wrapped once here, with the private ones Optuna's trial cache calls
# (a method that calls another retries only at the outermost)
for _name in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_all_studies",
    "set_trial_param",
    "_set_trial_param",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial_id_from_study_id_trial_number",
    "get_trial",
    "get_all_trials",
    "_get_trials",
    "get_best_trial",
    "_get_best_trial_id",
    "get_n_trials",
    "_get_stale_trial_ids",
):
    setattr(ReconnectingRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))
