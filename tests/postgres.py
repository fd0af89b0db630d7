"""A private PostgreSQL server for the test session (fixture ``postgres_url``).

The server runs from Debian's binaries as an unprivileged user (``initdb`` and ``postgres``
refuse root), with its data directory and unix socket in a temporary folder and TCP on a free
port of 127.0.0.1 only. Without the binaries the PostgreSQL tests are skipped, unless
``MTL_SEARCH_REQUIRE_SERVICES=1`` (CI), where a missing server is a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

SERVER_USER = "postgres"  # the Debian package's system user
START_TIMEOUT = 60


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unavailable(reason: str) -> None:
    if os.environ.get("MTL_SEARCH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"PostgreSQL is required here (MTL_SEARCH_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


class PostgresServer:
    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data_dir = root / "data"
        self.port = _free_port()
        # Root may not run the server; as root we drop to the package's user, else we are it.
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", SERVER_USER, "--"]
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        self.process: subprocess.Popen | None = None

    def _command(self, program: str, *args: str) -> list[str]:
        return [*self.as_user, str(self.bin_dir / program), *args]

    def start(self) -> None:
        subprocess.run(
            self._command(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        self._launch()

    def _launch(self) -> None:
        """The server process on the data directory and port (again, after a restart)."""
        self.process = subprocess.Popen(
            self._command(
                "postgres",
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.root),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "server.log", "ab"),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'server.log').read_text()[-2000:]}")
            ready = subprocess.run(
                self._command("pg_isready", "-h", "127.0.0.1", "-p", str(self.port)), capture_output=True
            )
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("postgres did not start in time")

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        subprocess.run(
            self._command("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name),
            check=True,
            capture_output=True,
        )
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self, down_seconds: float) -> None:
        """Stop the server as an administrator's restart does (a fast shutdown: every client's
        connection is closed at once), keep it down ``down_seconds``, and start it again on
        the same port and data."""
        self.halt()
        time.sleep(down_seconds)
        self._launch()

    def halt(self) -> None:
        """A fast shutdown (the clients' connections closed at once); :meth:`resume` starts it again."""
        assert self.process is not None
        # the server runs under runuser as root, so it is told through pg_ctl, not a signal to our child
        subprocess.run(
            self._command("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-t", "30"),
            check=True,
            capture_output=True,
        )
        self.process.wait(timeout=30)

    def resume(self) -> None:
        self._launch()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: "smart" shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    yield from _server()


@pytest.fixture
def own_postgres_server():
    """A PostgreSQL server of the test's own, which it may restart or stop without disturbing
    the other tests' session server."""
    yield from _server()


def _server():
    bin_dir = _binaries()
    if bin_dir is None:
        _unavailable("PostgreSQL binaries (initdb, postgres) not found; apt-get install postgresql")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("psycopg2 is not installed (pip install psycopg2-binary)")
    root = Path(tempfile.mkdtemp(prefix="mtl-search-pg-"))
    server = None
    try:
        server = PostgresServer(bin_dir, root)
        server.start()
    except (RuntimeError, subprocess.CalledProcessError, KeyError, OSError) as error:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
        detail = getattr(error, "stderr", None) or str(error)
        _unavailable(f"could not start PostgreSQL: {str(detail).strip()[-500:]}")
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server, as a SQLAlchemy URL."""
    return postgres_server.create_database()
