"""``enable_wal``: switch a new SQLite connection's file to write-ahead logging, also when
another process is making the same file at that moment.

Worker processes make the same files at once: the index of a mailbox both deliver into
first, or that two sessions on two workers select first. ``PRAGMA journal_mode=WAL`` then
answers "database is locked" at once, without waiting in SQLite's busy handler: three
processes opening a new index together failed 19 times in 6,000 opens (measured), which
was a SELECT answered ``NO [SERVERBUG]`` and a delivery deferred by 30 s. It is tried again
here, briefly and for up to the connection's own busy timeout.
"""

from __future__ import annotations

import sqlite3
import time


def enable_wal(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
    """``PRAGMA journal_mode=WAL`` on ``conn``, tried again while the file is locked by a
    process making it, for up to ``timeout`` seconds; then the error is raised."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
