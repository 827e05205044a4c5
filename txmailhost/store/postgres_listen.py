"""One thread holding a PostgreSQL connection in ``LISTEN channel``, for every part that
shares a database between nodes: the mail store (``txmailhost_changes``: IMAP IDLE on node B
hears a delivery on node A) and the relay queue (``txmailhost_queue``: a message queued on
any node is claimed at once).

Why a thread: psycopg's ``notifies()`` blocks, and the reactor never does (DESIGN invariant
3). The thread waits at most half a second at a time, so ``stop()`` (or the owner going away,
``alive``) ends it promptly. A dropped connection is made again; notices sent while it was
away are lost, so ``listened`` runs after every LISTEN is in place, and the owner looks at
what it may have missed. Best effort by design: each owner has its own way of finding work
without a notice (a watcher's next look, the queue runners' polls).

Lives beside the store's PostgreSQL backend, as ``postgres_schema.py`` does, because the
store may not import the queue; the queue, accounts and greylist already read the schema here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

log = Logger()


def listening(dsn: str, channel: str) -> Any:
    """A new autocommit connection in ``LISTEN channel`` (blocking; psycopg's errors pass)."""
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)
    try:
        conn.execute(f"LISTEN {channel}")
    except BaseException:
        conn.close()
        raise
    return conn


def _always() -> bool:
    return True


def _nothing() -> None:
    pass


class PostgresListener:
    """A daemon thread in ``LISTEN channel`` that calls ``heard(payload)`` (in this thread)
    for each notification.

    ``connection``: one already in LISTEN (made blocking by the caller, so nothing can change
    unheard between its start and its first reader), or None to connect in the thread.
    ``listened()`` runs in the thread each time the thread itself puts LISTEN in place (not
    for ``connection``); ``alive()`` is asked between waits: the thread ends once it is
    false (an owner held weakly was dropped without ``stop()``).
    """

    def __init__(
        self,
        dsn: str,
        channel: str,
        heard: Callable[[str], None],
        *,
        name: str,
        connection: Any = None,
        listened: Callable[[], None] = _nothing,
        alive: Callable[[], bool] = _always,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._heard = heard
        self._listened = listened
        self._alive = alive
        self._listening = connection
        self._stopping = threading.Event()
        self.ready = threading.Event()  # set once LISTEN is in place (tests wait on it)
        if connection is not None:
            self.ready.set()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _running(self) -> bool:
        return not self._stopping.is_set() and self._alive()

    def _loop(self) -> None:
        while self._running():
            conn, self._listening = self._listening, None
            try:
                if conn is None:
                    conn = listening(self._dsn, self._channel)
                    # What changed before LISTEN took effect (at the start, or while
                    # reconnecting) sent no notice here: the owner looks once.
                    self._listened()
                    self.ready.set()
            except Exception as e:
                if conn is not None:
                    conn.close()
                log.warn(
                    "LISTEN {channel} connection failed ({error}); retrying",
                    channel=self._channel,
                    error=str(e),
                )
                self._stopping.wait(2.0)
                continue
            try:
                while self._running():
                    for notice in conn.notifies(timeout=0.5):  # then look at _running
                        self._heard(notice.payload)
            except Exception as e:
                if self._running():
                    log.warn(
                        "LISTEN {channel} connection lost ({error}); reconnecting",
                        channel=self._channel,
                        error=str(e),
                    )
                    self._stopping.wait(1.0)
            finally:
                conn.close()
        if self._listening is not None:  # stopped before the loop took it
            self._listening.close()
