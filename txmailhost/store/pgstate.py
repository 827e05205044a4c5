"""One connection to the PostgreSQL database the nodes share, for small state that must agree
across nodes: the SRS keys (``srs.py``), users' Sieve scripts and what their vacation replies
remember (``sieve/shared.py``).

Why one connection behind a lock, and not one per thread as the store has: every use is one
or two statements on a primary key (a script, a key list, a "did we answer this sender"),
far shorter than the round trip that carries them, and the callers run in several thread
pools (accounts, storage, ManageSieve, delivery); a connection per thread of each would cost
the database more connections than the work is worth. A connection found closed or broken
(the database restarted), or closed by the server while idle (``pgconn.usable``), is
replaced before the next use; a statement that meets a failure raises
``psycopg.OperationalError``, which callers treat as a temporary failure.

The tables are created by the store's migrations (``postgres_schema.py``, step 7), applied
on the first connection as every other user of the database does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from txmailhost.store.pgconn import usable


class SharedState:
    """The database of ``[store] dsn``, one statement or transaction at a time."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._lock = threading.Lock()
        self._conn: Any = None
        self._upgraded = False

    def _connection(self) -> Any:
        import psycopg

        conn = self._conn
        if not usable(conn):  # closed by the server since the last use (pgconn.py)
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.close()
            self._conn = None
            conn = psycopg.connect(self.dsn, autocommit=True)
            if not self._upgraded:
                from txmailhost.store.postgres_schema import upgrade

                upgrade(conn)
                self._upgraded = True
            self._conn = conn
        return conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement (autocommit: a write is committed when this returns)."""
        with self._lock:
            cursor = self._connection().execute(sql, params or None)
            return cursor.fetchall() if cursor.description is not None else []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """The connection inside one transaction, committed when the block ends without an
        exception and rolled back otherwise; nobody else uses the connection meanwhile."""
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                yield conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
