"""The spam package's SQLite files (Bayes tokens, greylist triplets): one connection per
thread, since the filters run in the filters' thread pool and ``sqlite3`` connections must not
cross threads; WAL so a reader never waits for the writer."""

from __future__ import annotations

import os
import sqlite3
import threading

from txmailhost.sqlitewal import enable_wal

MMAP_SIZE = 1 << 30  # octets of a file read through mmap (SQLite's own default: none)


def thread_connection(
    local: threading.local, path: str, schema: str, mmap_size: int = 0
) -> sqlite3.Connection:
    """This thread's connection to ``path`` (kept on ``local``), the file and its directory
    (mode 0700) and ``schema`` created on first use. ``mmap_size`` (``MMAP_SIZE``, say):
    read the file through a mapping rather than SQLite's own 2 MiB page cache. A token store
    outgrows that cache after a few hundred messages learned, and then each lookup of a
    message's 500-odd tokens copied pages in with read() (a sixth of the lookups' time). The
    pages are the kernel's page cache, shared and reclaimable, but they count in the
    process's resident size as they are read: the scoring process maps its store, the
    server's own threads don't."""
    db = getattr(local, "db", None)
    if db is None:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        enable_wal(db, 10.0)
        db.execute("PRAGMA synchronous=NORMAL")
        if mmap_size:
            db.execute(f"PRAGMA mmap_size={int(mmap_size)}")
        db.executescript(schema)
        local.db = db
    return db
