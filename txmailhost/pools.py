"""A thread pool that starts and stops with the application.

The server runs its blocking work (fsyncs, SQLite, scrypt, the spares' file creation, filters)
in pools of its own (DESIGN invariant 3); each is a child service of the server's
``MultiService`` through this, so it starts after the privilege drop and stops with the
reactor. Lives apart from ``service.py`` so ``delivery/`` can use it without importing the
wiring that imports it.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.python.threadpool import ThreadPool


class ThreadPoolService(Service):
    """Starts and stops a ``ThreadPool`` with the application."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()
