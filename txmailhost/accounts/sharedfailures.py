"""Failed logins (and unknown recipients) counted across every node of a PostgreSQL store.

Why: ``throttle.py`` counts failures in the process, so a guesser that spreads its attempts
over several nodes would get ``ip_limit`` guesses per node. With ``[store] backend =
"postgres"`` each node writes its failures to ``throttle_failures`` (step 3 of
``store/postgres_schema.py``) and adds the other nodes' to its own ``LoginThrottle``.

Consistency, deliberately loose: a check never waits for the database (the counts stay in
the process, so a login costs no query), failures are written in batches and read every
``interval`` seconds (1 s), so another node's failure counts here within about a second.
A burst faster than that can go a few guesses past a limit on each node; what the limits
are for — a guesser does not get ``ip_limit`` guesses per node per window — holds. A node
that starts reads the failures of the last window from every node, its own included (they
were lost with its memory). Rows older than the longest window are deleted as they go.
Failures a node could not write for a while (the database down) are written when it can,
stamped no older than half of ``SLACK``, so that the other nodes, which read from their
last read on, still count them.

Failures of a node's worker processes reach each other through the workers' bus; here each
worker writes its own and reads those of *other nodes* only (``origin`` names the node: its
host name and data directory), so nothing is counted twice.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from twisted.application.service import Service
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from txmailhost.accounts.throttle import LoginThrottle
from txmailhost.outage import OutageLog
from txmailhost.store.pgconn import usable

log = Logger()

SLACK = 10.0  # seconds a failure may take to be written and seen (batching, clock skew)


def node_origin(data_dir: str) -> str:
    """The name this node's failures carry: host and data directory (two nodes on one
    machine have two data directories; a node's worker processes share one)."""
    return f"{socket.gethostname()}:{data_dir}"


class SharedFailures(Service):
    """Writes this node's failures of each throttle (by kind) and reads the others'."""

    def __init__(
        self,
        dsn: str,
        throttles: dict[str, LoginThrottle],
        reactor: Any,
        pool: Any,
        origin: str,
        interval: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._throttles = throttles
        self._reactor = reactor
        self._pool = pool
        self.origin = origin
        self.interval = interval
        self._outbox: list[tuple[str, str | None, str | None, float]] = []
        self._seen: dict[int, float] = {}  # row id -> its time, while it can still turn up
        self._since: float | None = None  # None: the first read takes the whole window
        self._local = threading.local()
        self._call: Any = None
        self._busy = False
        # a database outage: one traceback, then a line a minute, then "works again"
        self._outage = OutageLog(
            log, reactor.seconds, "login failures: exchanging them through the shared database"
        )
        self.window = max(t.window for t in throttles.values())
        for kind, throttle in throttles.items():
            throttle.publish = lambda client, account, kind=kind: self._outbox.append(
                (kind, client, account, self._reactor.seconds())
            )

    def startService(self) -> None:
        super().startService()
        self._call = self._reactor.callLater(0, self._tick)

    def stopService(self) -> Any:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        return None

    def _tick(self) -> None:
        self._call = None
        if self._busy:
            return
        self._busy = True
        outbox, self._outbox = self._outbox, []
        now = self._reactor.seconds()
        d = threads.deferToThreadPool(self._reactor, self._pool, self.exchange, outbox, now)
        d.addCallback(self._count)
        d.addErrback(self._failed, outbox)
        d.addBoth(self._next)

    def _failed(self, failure: Any, outbox: list[Any]) -> None:
        self._outage.failed(failure)
        self._outbox[:0] = outbox[-1000:]  # try again with the next batch, within reason

    def _next(self, _: object) -> None:
        self._busy = False
        if self.running:
            self._call = self._reactor.callLater(self.interval, self._tick)

    def _count(self, rows: list[tuple[int, str, str | None, str | None, float]]) -> None:
        """Add the other nodes' new failures to this node's throttles (reactor thread)."""
        self._outage.succeeded()
        for row_id, kind, client, account, at in rows:
            if row_id in self._seen:
                continue
            self._seen[row_id] = at
            throttle = self._throttles.get(kind)
            if throttle is not None:
                throttle.record(client, account)
        if self._since is not None:
            forget = self._since - SLACK
            self._seen = {i: at for i, at in self._seen.items() if at >= forget}

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if not usable(conn):  # closed by the server meanwhile (a restart): replaced first
            import psycopg

            if conn is not None:
                conn.close()

            conn = self._local.conn = psycopg.connect(self._dsn, autocommit=True)
        return conn

    def exchange(
        self, outbox: list[tuple[str, str | None, str | None, float]], now: float
    ) -> list[tuple[int, str, str | None, str | None, float]]:
        """Write ``outbox``; read what other nodes wrote since the last read (all nodes'
        failures of the last window at the first); delete rows past the window. Blocking:
        runs in the pool."""
        conn = self._connection()
        with conn.transaction():
            # Read before writing: this batch is counted here already.
            if self._since is None:
                rows = conn.execute(
                    "SELECT id, kind, client, account, at FROM throttle_failures"
                    " WHERE at >= %s ORDER BY id",
                    (now - self.window,),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT id, kind, client, account, at FROM throttle_failures"
                    " WHERE at >= %s AND origin <> %s ORDER BY id",
                    (self._since - SLACK, self.origin),
                ).fetchall()
            # Written late (kept through an outage, or a slow round), a failure keeps a time
            # the other nodes still read past (they read from their last read, less SLACK):
            # stamped with its own time, it was never counted anywhere but here. One past
            # the window counts nowhere any more and is left out.
            recent = now - SLACK / 2
            batch = [
                (kind, client, account, max(at, recent), self.origin)
                for kind, client, account, at in outbox
                if at >= now - self.window
            ]
            if batch:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO throttle_failures (kind, client, account, at, origin)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        batch,
                    )
            conn.execute(
                "DELETE FROM throttle_failures WHERE at < %s", (now - self.window - SLACK,)
            )
        self._since = now
        return rows

    def flush(self) -> Deferred[None]:
        """Write and read now (tests, and a clean stop)."""
        outbox, self._outbox = self._outbox, []
        now = self._reactor.seconds()
        d = threads.deferToThreadPool(self._reactor, self._pool, self.exchange, outbox, now)
        return d.addCallback(self._count)
