"""Per-thread SQLite connections, one per database file, reopened when the file is replaced.

SQLite connections can't be shared between threads, and the store's worker threads each
open the index files of the mailboxes they touch. A mailbox renamed away, or deleted and
created again (possibly by another thread or process), has a new file at the same path: a
connection to the old file must never be written through again, so each cached connection
remembers the inode it was opened on and is dropped when the path now names another one.
The cache of a thread holds at most ``LIMIT`` files; beyond that it starts again.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable

LIMIT = 64


class ThreadConnections:
    """``get(path)``: this thread's connection to ``path``, made by ``opener`` when needed."""

    def __init__(self, opener: Callable[[str], sqlite3.Connection]) -> None:
        self._opener = opener
        self._local = threading.local()

    def _cache(self) -> dict[str, tuple[sqlite3.Connection, int | None]]:
        cache = getattr(self._local, "connections", None)
        if cache is None:
            cache = self._local.connections = {}
        return cache

    def get(self, path: str) -> sqlite3.Connection:
        cache = self._cache()
        try:
            inode: int | None = os.stat(path).st_ino
        except FileNotFoundError:
            inode = None
        cached = cache.get(path)
        if cached is not None:
            if cached[1] == inode:
                return cached[0]
            cached[0].close()
            del cache[path]
        if len(cache) > LIMIT:
            for conn, _inode in cache.values():
                conn.close()
            cache.clear()
        conn = self._opener(path)
        # The inode seen before opening: if the file was replaced in between, the next
        # ``get`` reopens, where one taken after could pair the new inode with the old file.
        cache[path] = (conn, inode if inode is not None else os.stat(path).st_ino)
        return conn

    def inode(self, path: str) -> int | None:
        """The inode of the file this thread's connection to ``path`` was opened on (None
        without one): which file a query that failed read."""
        cached = self._cache().get(path)
        return None if cached is None else cached[1]

    def in_transaction(self, path: str) -> bool:
        cached = self._cache().get(path)
        return cached is not None and cached[0].in_transaction

    def close(self, path: str) -> None:
        """Drop this thread's connection to ``path`` (its file is going away)."""
        cached = self._cache().pop(path, None)
        if cached is not None:
            cached[0].close()
