"""Where studies live: any SQLAlchemy URL, a SQLite file under ``studies/`` by default."""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from mtl_search.errors import UserError, check_output_path
from mtl_search.search.reconnect import ReconnectingRDBStorage, storage_retry_seconds

DEFAULT_STORAGE_DIR = Path("studies")
DEFAULT_DB_NAME = "mtl-search.db"
# Seconds between heartbeats of a running trial; a trial silent for GRACE_PERIOD is failed
# (and retried) by the next worker that starts a trial, so a killed worker loses no trial for
# good. ``--grace-period`` or $MTL_SEARCH_GRACE_PERIOD change the grace period; the interval
# follows it (a third of it, at most 10 s) so that a live trial never looks stale.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60
GRACE_PERIOD_ENV = "MTL_SEARCH_GRACE_PERIOD"
SQLITE_TIMEOUT = 120
# Workers starting at once on an empty server database all create Optuna's tables; the losers
# of that race see an integrity error and simply try again.
SCHEMA_ATTEMPTS = 5


def default_storage_url() -> str:
    return f"sqlite:///{DEFAULT_STORAGE_DIR / DEFAULT_DB_NAME}"


def storage_url(url: str | None) -> str:
    return url or os.environ.get("MTL_SEARCH_STORAGE") or default_storage_url()


def is_database_server(storage: optuna.storages.BaseStorage) -> bool:
    """Whether ``storage`` is a database server (PostgreSQL, MySQL), which other machines may
    share; a SQLite file or an in-memory storage is one machine's."""
    url = getattr(storage, "url", None)
    return url is not None and make_url(url).get_backend_name() != "sqlite"


def is_memory_url(parsed: sqlalchemy.engine.URL) -> bool:
    """Whether the parsed URL is an in-memory SQLite database (``sqlite://``, ``sqlite:///:memory:``)."""
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def is_in_memory(storage: optuna.storages.BaseStorage) -> bool:
    """Whether ``storage`` lives in this process's memory, where no other process, worker or
    dashboard can see it."""
    url = getattr(storage, "url", None)
    if url is None:
        return isinstance(storage, optuna.storages.InMemoryStorage)
    return is_memory_url(make_url(url))


def grace_period(seconds: int | None = None) -> int:
    """The heartbeat grace period: ``seconds``, else $MTL_SEARCH_GRACE_PERIOD, else 60."""
    source = "--grace-period"
    if seconds is None:
        text = os.environ.get(GRACE_PERIOD_ENV)
        if not text:
            return GRACE_PERIOD
        try:
            seconds, source = int(text), f"${GRACE_PERIOD_ENV}"
        except ValueError:
            raise UserError(f"${GRACE_PERIOD_ENV} {text!r}: expected a whole number of seconds") from None
    if seconds < 2:  # the heartbeat interval is a third of it, at least 1 s
        raise UserError(f"{source} {seconds}: must be at least 2 seconds")
    return seconds


def heartbeat_interval(grace: int) -> int:
    return max(1, min(HEARTBEAT_INTERVAL, grace // 3))


def open_storage(
    url: str | None = None,
    *,
    heartbeat: bool = True,
    create: bool = True,
    grace_seconds: int | None = None,
    retry_seconds: float | None = None,
) -> optuna.storages.RDBStorage:
    """An RDB storage for ``url`` (``None``: ``$MTL_SEARCH_STORAGE`` or the default SQLite file).

    A malformed URL, a missing driver or an unreachable server is a :class:`UserError`.
    With ``create=False`` a SQLite file that does not exist is an error rather than created.
    ``grace_seconds`` is the heartbeat grace period (see :func:`grace_period`). On a database
    server, a call that loses its connection is retried for ``retry_seconds`` (see
    :func:`mtl_search.search.reconnect.storage_retry_seconds`).
    """
    url = storage_url(url)
    grace = grace_period(grace_seconds) if heartbeat else None
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise UserError(
            f"--storage {safe_url(url)!r}: not a valid SQLAlchemy URL (for example sqlite:///studies/mtl-search.db)"
        ) from None
    engine_kwargs: dict = {}
    storage_class: type[optuna.storages.RDBStorage] = optuna.storages.RDBStorage
    extra: dict = {}
    if is_memory_url(parsed):
        # one process's database, which no other worker can watch; and SQLAlchemy gives each
        # thread its own empty in-memory database, so the heartbeat thread would find no tables
        grace = None
    if parsed.get_backend_name() == "sqlite":
        if not is_memory_url(parsed):
            path = Path(parsed.database)
            check_output_path(path, "--storage")
            if not path.exists():
                if not create:
                    raise UserError(f"--storage {url!r}: no database file at {path}")
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise UserError(f"--storage {url!r}: cannot create {path.parent} ({error.strerror})") from None
        # Several workers write to one SQLite file: wait for the lock instead of failing.
        # WAL journal (see below and docs/tutorials/many-machines.md): readers never block the writer.
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    else:
        # a server may restart or fail over: a pooled connection is tested before use, and a
        # call that loses its connection anyway is retried (search/reconnect.py)
        engine_kwargs = {"pool_pre_ping": True}
        storage_class = ReconnectingRDBStorage
        extra = {"retry_seconds": storage_retry_seconds(retry_seconds)}
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = storage_class(
                        url,
                        **extra,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=heartbeat_interval(grace) if grace else None,
                        grace_period=grace,
                        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
                        if grace
                        else None,
                    )
                if parsed.get_backend_name() == "sqlite" and not is_memory_url(parsed):
                    _use_wal_journal(storage)
                return storage
            except sqlalchemy.exc.DatabaseError as error:
                if not _lost_schema_race(error) or attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
    except ImportError as error:  # Optuna turns a missing driver module into a bare ImportError
        raise UserError(_missing_driver(url, parsed, getattr(error.__cause__, "name", None) or error.name)) from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.DatabaseError, sqlalchemy.exc.NoSuchModuleError) as error:
        reason = (
            str(getattr(error, "orig", error)).strip().splitlines()[0]
            if str(getattr(error, "orig", error)).strip()
            else type(error).__name__
        )
        raise UserError(f"--storage {safe_url(url)}: cannot open the database ({reason})") from None


# pip package of the SQLAlchemy drivers people name most, for the missing-driver message
DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "mysqldb": "mysqlclient",
}


def _missing_driver(url: str, parsed: sqlalchemy.engine.URL, module: str | None) -> str:
    """The one-line message for a URL whose database driver cannot be imported."""
    driver = parsed.get_driver_name()
    message = f"--storage {safe_url(url)}: the database driver {driver!r} is not installed (pip install {DRIVER_PACKAGES.get(driver, module or driver)})"
    if parsed.get_backend_name() == "postgresql" and driver != "psycopg2" and _importable("psycopg2"):
        # SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3; psycopg2 may be what is there
        message += f", or name the installed one: {safe_url(url).replace(parsed.drivername, 'postgresql+psycopg2', 1)}"
    return message


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _lost_schema_race(error: sqlalchemy.exc.DatabaseError) -> bool:
    """Another process created Optuna's tables between our check and our CREATE TABLE."""
    if isinstance(error, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)):
        return True  # PostgreSQL: duplicate pg_type row or "relation already exists"
    return "already exists" in str(getattr(error, "orig", error))  # SQLite


def _use_wal_journal(storage: optuna.storages.RDBStorage) -> None:
    """Switch the SQLite file to the WAL journal (once; the mode is stored in the file).

    In the default rollback journal a reader (the dashboard, a worker looking for stale
    trials) makes the writer wait, and a reader promoting itself to writer can be refused at
    once with "database is locked" whatever the timeout. With WAL, reads never block the one
    writer and writers queue on the busy timeout. Every later opener, optuna-dashboard
    included, gets WAL from the file.
    """
    with storage.engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        if str(mode).lower() != "wal":
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    # synchronous=NORMAL, SQLite's advice for WAL: a commit no longer waits for the disk. Every
    # suggest, user attribute and tell is a commit (30 to 40 a trial), and each waited 3 to 6 ms
    # (benchmarks/trial_overhead.py). The file stays consistent whatever happens; a power loss
    # (not a killed process) may undo the last commits, as if the run had stopped a moment earlier.
    sqlalchemy.event.listen(storage.engine, "connect", _commit_without_waiting_for_the_disk)
    storage.engine.dispose()  # the connections opened so far get it too


def _commit_without_waiting_for_the_disk(dbapi_connection: object, connection_record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages (also when it does not parse)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
