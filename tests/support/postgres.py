"""A throwaway PostgreSQL server for the tests: Debian's postgresql 15, started by the tests.

Why a real server and not a mock: the PostgreSQL store's correctness lives in SQL the server
runs (row locks, sequences, ``LISTEN/NOTIFY``), which only the server can check. One cluster
per test process (``initdb`` + ``pg_ctl`` in a temporary directory), one fresh database per
test. PostgreSQL refuses to run as root, and tests may run as root in CI: then the cluster
belongs to ``nobody`` and its commands run through ``runuser``. It listens on no TCP port at
all, only on a unix socket in its own directory, so nothing outside the test can reach it
and parallel test processes never race for a port. ``fsync = off``: a crash of the test
machine loses a scratch database, nothing else; what the store commits is the same.

Tests skip cleanly when PostgreSQL 15 or psycopg is not installed (.ci/run installs both).
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

BINDIR = os.environ.get("TXMAILHOST_PG_BINDIR", "/usr/lib/postgresql/15/bin")
_RUN_AS = "nobody"  # when the tests run as root (PostgreSQL refuses root)


def available() -> str | None:
    """Why PostgreSQL tests can't run here, or None when they can."""
    if not os.path.exists(os.path.join(BINDIR, "initdb")):
        return f"PostgreSQL server binaries not found in {BINDIR} (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'txmailhost[postgres]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to drop to a PostgreSQL user"
    return None


class PostgresServer:
    """One running cluster; ``database()`` makes an empty database and returns its DSN."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="txmh-pg-")
        self.data = os.path.join(self.root, "data")
        self.socket_dir = self.root
        self._names = itertools.count(1)
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_RUN_AS)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._prefix = ["runuser", "-u", _RUN_AS, "--"]
        self.user = pwd.getpwuid(os.geteuid() if not self._prefix else entry.pw_uid).pw_name

    def _run(self, *argv: str) -> None:
        command = [*self._prefix, *argv]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.root, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {done.stdout}{done.stderr}")

    def start(self, durable: bool = False) -> None:
        """``durable``: keep PostgreSQL's fsync on (benchmarks); tests turn it off."""
        self._run(
            os.path.join(BINDIR, "initdb"),
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}'"
            " -c max_connections=200 -c shared_buffers=32MB"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            os.path.join(BINDIR, "pg_ctl"),
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            os.path.join(self.root, "log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} user=postgres dbname={dbname}"

    def database(self) -> str:
        """A new, empty database; its DSN."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop(self, dsn: str) -> None:
        import psycopg

        name = dsn.rsplit("dbname=", 1)[1]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            self._run(os.path.join(BINDIR, "pg_ctl"), "-D", self.data, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


_shared: list[PostgresServer] = []


def shared_server() -> PostgresServer:
    """The test process's one cluster, started on first use and stopped when the process
    exits; skips the calling test when PostgreSQL is absent."""
    why = available()
    if why is not None:
        pytest.skip(why)
    if not _shared:
        server = PostgresServer()
        try:
            server.start()
        except Exception:
            shutil.rmtree(server.root, ignore_errors=True)
            raise
        atexit.register(server.stop)
        _shared.append(server)
    return _shared[0]


_recent: list[str] = []
_KEEP = 4  # databases fresh_database leaves alive: a test may build a few worlds


def fresh_database() -> str:
    """A new database of the shared cluster, for helpers that are not fixtures
    (``tests/support/fixtures.make_world``, which can't be told when its test ends). The
    oldest of those beyond the last ``_KEEP`` is dropped (its connections closed by force),
    so a long run stays within the server's connection limit."""
    server = shared_server()
    _recent.append(server.database())
    while len(_recent) > _KEEP:
        server.drop(_recent.pop(0))
    return _recent[-1]


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The test process's PostgreSQL cluster; skips when absent."""
    return shared_server()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database for one test, dropped after it."""
    dsn = postgres_server.database()
    yield dsn
    postgres_server.drop(dsn)
