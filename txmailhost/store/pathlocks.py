"""Per-file locks for the threads of one process: ``PathLocks(threading.Lock)(path)``.

The folder index and the full-text index are SQLite files that many pool threads write.
Threads of this process queue on a lock per file first: SQLite's own busy handler sleeps
1, 2, 5, 10... ms between retries, which at 50 concurrent deliveries into one INBOX cost
more than the work (measured); a lock hands over at once. SQLite's lock still keeps other
processes (the CLI, a second server) out.

The table is bounded: past ``LIMIT`` paths it starts again. A lock in use stays referenced
by its holder, and a thread that gets a fresh one for the same file meanwhile is still
serialised by SQLite, only more slowly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

LIMIT = 10_000

L = TypeVar("L")


class PathLocks(Generic[L]):
    """``locks(path)``: the one lock (made by ``factory``) of ``path`` in this process."""

    def __init__(self, factory: Callable[[], L]) -> None:
        self._factory = factory
        self._locks: dict[str, L] = {}
        self._guard = threading.Lock()

    def __call__(self, path: str) -> L:
        with self._guard:
            lock = self._locks.get(path)
            if lock is None:
                if len(self._locks) > LIMIT:
                    self._locks.clear()
                lock = self._locks[path] = self._factory()
            return lock
