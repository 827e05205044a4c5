"""The per-mailbox index: UIDs, flags, sizes, dates and modseqs in one small SQLite file.

Why SQLite: one file per mailbox, crash-safe transactions, concurrent readers with one writer
(WAL), and a 100,000-row SELECT answers in tens of milliseconds without touching message files.
The index is a cache of the Maildir directory, never the only copy of anything: ``reconcile``
rebuilds it from the files (new files get UIDs, vanished files are expunged). That is why the
commit mode can be ``synchronous=NORMAL``: losing the last index transaction to a power cut loses
no mail, the next reconcile finds the file again.

Every method blocks; call them from the store's thread pool.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

INDEX_NAME = "txmailhost-index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    uid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,      -- Maildir base name, before ':2,'
    subdir TEXT NOT NULL,           -- 'new' or 'cur'
    flags INTEGER NOT NULL,         -- bitmask of system flags, see FLAG_BITS
    keywords TEXT NOT NULL DEFAULT '',
    internaldate REAL NOT NULL,
    size INTEGER NOT NULL,          -- octets of the file as served (CRLF line ends)
    modseq INTEGER NOT NULL
);
"""


_local = threading.local()


def _connect(path: str) -> sqlite3.Connection:
    """One connection per thread and index file; SQLite connections aren't shareable."""
    cache = getattr(_local, "connections", None)
    if cache is None:
        cache = _local.connections = {}
    conn = cache.get(path)
    if conn is not None:
        return conn
    if len(cache) > 64:
        for old in cache.values():
            old.close()
        cache.clear()
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(_SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    if conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0:
        # UIDVALIDITY from the clock: a mailbox deleted and recreated gets a new one.
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            (("uidvalidity", int(time.time())), ("uidnext", 1), ("highestmodseq", 1)),
        )
    conn.execute("COMMIT")
    cache[path] = conn
    return conn


def forget(directory: str) -> None:
    """Drop this thread's cached connection to the index in ``directory`` (mailbox deleted)."""
    cache = getattr(_local, "connections", None)
    if cache:
        conn = cache.pop(os.path.join(directory, INDEX_NAME), None)
        if conn is not None:
            conn.close()


class MailboxIndex:
    """The index of the mailbox directory ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, INDEX_NAME)

    @property
    def _db(self) -> sqlite3.Connection:
        return _connect(self.path)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; serialises writers across threads and processes."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def meta(self, db: sqlite3.Connection | None = None) -> dict[str, int]:
        """UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ."""
        return dict((db or self._db).execute("SELECT key, value FROM meta"))

    def rows(self) -> tuple[dict[str, int], list[tuple]]:
        """The meta values and every message row in UID order, read in one transaction.

        A row is (uid, name, subdir, flags, keywords, internaldate, size, modseq).
        """
        db = self._db
        db.execute("BEGIN")
        try:
            meta = self.meta(db)
            rows = db.execute(
                "SELECT uid, name, subdir, flags, keywords, internaldate, size, modseq"
                " FROM messages ORDER BY uid"
            ).fetchall()
        finally:
            db.execute("COMMIT")
        return meta, rows

    def row(self, uid: int) -> tuple | None:
        return self._db.execute(
            "SELECT uid, name, subdir, flags, keywords, internaldate, size, modseq"
            " FROM messages WHERE uid = ?",
            (uid,),
        ).fetchone()

    def add(
        self,
        entries: Iterable[tuple[str, str, int, str, float, int]],
        db: sqlite3.Connection,
    ) -> list[int]:
        """Give each (name, subdir, flags, keywords, internaldate, size) the next UID.

        A name already indexed (a concurrent reconcile found the file first) keeps its UID.
        """
        meta = self.meta(db)
        uid, modseq = meta["uidnext"], meta["highestmodseq"] + 1
        uids = []
        for name, subdir, flags, keywords, internaldate, size in entries:
            existing = db.execute("SELECT uid FROM messages WHERE name = ?", (name,)).fetchone()
            if existing:
                uids.append(existing[0])
                continue
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, name, subdir, flags, keywords, internaldate, size, modseq),
            )
            uids.append(uid)
            uid += 1
        db.execute("UPDATE meta SET value = ? WHERE key = 'uidnext'", (uid,))
        db.execute("UPDATE meta SET value = ? WHERE key = 'highestmodseq'", (modseq,))
        return uids

    def remove(self, uids: Iterable[int], db: sqlite3.Connection) -> None:
        db.executemany("DELETE FROM messages WHERE uid = ?", ((u,) for u in uids))
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'highestmodseq'")

    def update_flags(
        self, changes: Iterable[tuple[int, str, int, str]], db: sqlite3.Connection
    ) -> int:
        """Apply (uid, subdir, flags, keywords) changes under one new modseq; returns it."""
        modseq = self.meta(db)["highestmodseq"] + 1
        db.executemany(
            "UPDATE messages SET subdir = ?, flags = ?, keywords = ?, modseq = ? WHERE uid = ?",
            ((subdir, flags, keywords, modseq, uid) for uid, subdir, flags, keywords in changes),
        )
        db.execute("UPDATE meta SET value = ? WHERE key = 'highestmodseq'", (modseq,))
        return modseq

    def relocate(self, uid: int, subdir: str, flags: int, db: sqlite3.Connection) -> None:
        """Record where another Maildir tool moved a file (e.g. mutt marking it read)."""
        db.execute("UPDATE messages SET subdir = ?, flags = ? WHERE uid = ?", (subdir, flags, uid))
