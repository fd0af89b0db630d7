"""Where studies live: any SQLAlchemy URL, a SQLite file under ``studies/`` by default."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from mtl_search.errors import UserError

DEFAULT_STORAGE_DIR = Path("studies")
DEFAULT_DB_NAME = "mtl-search.db"
# Seconds between heartbeats of a running trial; a trial silent for GRACE_PERIOD is failed
# (and retried) by the next worker that looks, so a killed worker loses no trial for good.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 60
SQLITE_TIMEOUT = 120


def default_storage_url() -> str:
    return f"sqlite:///{DEFAULT_STORAGE_DIR / DEFAULT_DB_NAME}"


def storage_url(url: str | None) -> str:
    return url or os.environ.get("MTL_SEARCH_STORAGE") or default_storage_url()


def open_storage(url: str | None = None, *, heartbeat: bool = True, create: bool = True) -> optuna.storages.RDBStorage:
    """An RDB storage for ``url`` (``None``: ``$MTL_SEARCH_STORAGE`` or the default SQLite file).

    A malformed URL, a missing driver or an unreachable server is a :class:`UserError`.
    With ``create=False`` a SQLite file that does not exist is an error rather than created.
    """
    url = storage_url(url)
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise UserError(f"--storage {url!r}: not a valid SQLAlchemy URL (for example sqlite:///studies/mtl-search.db)") from None
    engine_kwargs: dict = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            path = Path(database)
            if not path.exists():
                if not create:
                    raise UserError(f"--storage {url!r}: no database file at {path}")
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise UserError(f"--storage {url!r}: cannot create {path.parent} ({error.strerror})") from None
        # Several workers write to one SQLite file: wait for the lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_INTERVAL if heartbeat else None,
                grace_period=GRACE_PERIOD if heartbeat else None,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3) if heartbeat else None,
            )
    except ModuleNotFoundError as error:
        raise UserError(f"--storage {_safe(url)}: the database driver {error.name!r} is not installed (pip install {error.name})") from None
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.DatabaseError, sqlalchemy.exc.NoSuchModuleError) as error:
        reason = str(getattr(error, "orig", error)).strip().splitlines()[0] if str(getattr(error, "orig", error)).strip() else type(error).__name__
        raise UserError(f"--storage {_safe(url)}: cannot open the database ({reason})") from None


def _safe(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url
