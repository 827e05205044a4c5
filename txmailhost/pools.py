"""A thread pool that starts and stops with the application.

The server runs its blocking work (fsyncs, SQLite, scrypt, the spares' file creation, filters)
in pools of its own (DESIGN invariant 3); each is a child service of the server's
``MultiService`` through this, so it starts after the privilege drop and stops with the
reactor. Lives apart from ``service.py`` so ``delivery/`` can use it without importing the
wiring that imports it.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

log = Logger()


class ThreadPoolService(Service):
    """Starts and stops a ``ThreadPool`` with the application.

    ``after_stop`` holds what must close once no thread of the pool can use it any more (the
    store's database connections): called in order after the pool's threads have ended."""

    def __init__(self, pool: ThreadPool) -> None:
        self.pool = pool
        self.after_stop: list[Callable[[], object]] = []

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()  # joins the threads: nothing runs in the pool after this
        for close in self.after_stop:
            try:
                close()
            except Exception:
                log.failure("closing {what} at shutdown failed", what=close)
