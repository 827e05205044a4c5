"""The relay queue's records in PostgreSQL, shared by every node that reaches the database.

Why: the file spool (``spool.py``) lives on one machine; when several nodes share one
database, a message accepted by node A can be delivered by node B, and when A dies its
messages are not stranded on its disk (issue 22). The tables are step 3 of
``store/postgres_schema.py``:

- ``queue_messages``: one row per message: the envelope's message-level fields (sender,
  arrival, size, hops, the sender's ESMTP wishes, ``held``, ``delay_warned``,
  ``bounce_requested``); ``queue_chunks``: the message bytes, in chunks of at most 1 MiB;
- ``queue_recipients``: one row per recipient with the same fields as a spool envelope's
  recipient (state, attempts, next attempt, status, diagnostic, remote MTA, NOTIFY, ORCPT),
  plus its *lease*: ``lease_owner`` (the node delivering it) and ``lease_until``.

How two nodes never deliver the same recipient at once: ``claim`` selects due recipients
``FOR UPDATE SKIP LOCKED`` (a row another node is claiming is skipped, not waited for), and
in the same transaction writes this node's name and a lease expiry into them, counts the
attempt and sets the next one (recorded before dialing, as the file queue does). A claimed
row is due again only when both its next attempt and its lease have passed: a node that dies
mid-delivery holds its recipients until the lease expires, then any node takes them. A live
node renews its leases (``renew``) while its deliveries run. Results are written only where
the lease is still this node's.

Each insert and each administrator's request sends ``NOTIFY txmailhost_queue`` (at its
commit); ``queue_listener`` wakes a runner with it, so another node claims at once.

Times are the nodes' clocks (seconds since the epoch, the reactor's ``seconds()``), as in the
spool's envelopes: the nodes' clocks must agree (NTP) to within a small part of the lease.

Every method here blocks on the database: the queue runs them in its thread pool, on one
connection per thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from zope.interface import implementer

from txmailhost.delivery.interfaces import MessageOptions, RecipientOptions
from txmailhost.queue.interfaces import IQueueRecords, NotQueued
from txmailhost.queue.spool import (
    _QUEUE_ID,
    HEADER_LIMIT,
    PENDING,
    REQUEST_KINDS,
    Envelope,
    Recipient,
    count_received,
    new_queue_id,
)
from txmailhost.store.pgconn import usable
from txmailhost.store.postgres_listen import PostgresListener

T = TypeVar("T")

CHUNK = 1 << 20  # octets per queue_chunks row
CHANNEL = "txmailhost_queue"  # NOTIFY'd when work may be due: runners claim at once
_ACTIVE = "state IN ('pending', 'deferred')"
_MESSAGE = (
    "id, queue_id, sender, arrival, size, hops, delay_warned, held, body, smtputf8, ret,"
    " envid, requiretls, bounce_requested"
)
_RECIPIENT = (
    "id, message_id, address, state, attempts, next_attempt, status, diagnostic, remote_mta,"
    " notify, orcpt"
)


@dataclass
class Claimed:
    """One job this node now holds: a message, one destination domain, its due recipients.

    ``envelope`` holds every recipient of the message as it was at the claim (the DSN and the
    delay warning speak of them); ``due`` are those of ``envelope.recipients`` this node
    leased, ``rows`` their row ids by position in ``due``."""

    message_id: int
    domain: str
    envelope: Envelope
    bounce_requested: bool
    due: list[Recipient] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)


def _envelope(row: tuple[Any, ...], recipients: Iterable[tuple[Any, ...]]) -> Envelope:
    (_id, queue_id, sender, arrival, size, hops, warned, held, body, utf8, ret, envid, rtls) = row[
        :13
    ]
    return Envelope(
        queue_id=queue_id,
        sender=sender,
        arrival=arrival,
        size=size,
        recipients=[
            Recipient(
                address=r[2],
                state=r[3],
                attempts=r[4],
                next_attempt=r[5],
                status=r[6],
                diagnostic=r[7],
                remote_mta=r[8],
                notify=list(r[9]),
                orcpt=r[10],
            )
            for r in recipients
        ],
        hops=hops,
        delay_warned=warned,
        held=held,
        body=body,
        smtputf8=utf8,
        ret=ret,
        envid=envid,
        requiretls=rtls,
    )


@implementer(IQueueRecords)
class PostgresQueueStore:
    """The queue's tables in the database at ``dsn``; ``upgrade`` creates them."""

    def __init__(
        self, dsn: str, *, migrate: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        self._dsn = dsn
        self._clock = clock  # "now" for the administrator's requests
        self._local = threading.local()
        self._connections: list[Any] = []
        self._connections_lock = threading.Lock()
        if migrate:
            from txmailhost.store.postgres_schema import upgrade

            self._call(upgrade)

    # -- connections ----------------------------------------------------------------------------

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if not usable(conn):  # closed by the server meanwhile (a restart): replaced first
            import psycopg

            if conn is not None:
                conn.close()

            conn = self._local.conn = psycopg.connect(self._dsn, autocommit=True)
            with self._connections_lock:
                self._connections = [c for c in self._connections if not c.closed]
                self._connections.append(conn)
        return conn

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` on this thread's connection (made again after a break)."""
        return fn(self._connection(), *args)

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    # -- adding ---------------------------------------------------------------------------------

    def add(
        self,
        sender: str | None,
        recipients: list[str],
        source_path: str,
        now: float,
        queue_id: str | None = None,
        options: MessageOptions | None = None,
        recipient_options: Mapping[str, RecipientOptions] | None = None,
    ) -> Envelope:
        """Queue the message at ``source_path`` for ``recipients``; returns its envelope once
        the transaction has committed (PostgreSQL's commit is durable: the 250 may follow).

        The id is ``queue_id`` (the one the 250 names) or the incoming file's name when valid
        and free, else a new one, as the spool chooses."""
        options = options or MessageOptions()
        recipient_options = recipient_options or {}
        none = RecipientOptions()
        wanted = queue_id or os.path.basename(source_path)
        size = os.path.getsize(source_path)
        with open(source_path, "rb") as source:
            head = source.read(HEADER_LIMIT)
            end = head.find(b"\r\n\r\n")
            hops = count_received(head if end < 0 else head[: end + 2])
            source.seek(0)
            conn = self._connection()
            with conn.transaction():
                chosen = wanted if _QUEUE_ID.match(wanted) else new_queue_id()
                while True:
                    row = conn.execute(
                        "INSERT INTO queue_messages (queue_id, sender, arrival, size, hops,"
                        " chunks, body, smtputf8, ret, envid, requiretls)"
                        " VALUES (%s, %s, %s, %s, %s, 0, %s, %s, %s, %s, %s)"
                        " ON CONFLICT (queue_id) DO NOTHING RETURNING id",
                        (
                            chosen,
                            sender or None,
                            now,
                            size,
                            hops,
                            options.body,
                            options.smtputf8,
                            options.ret,
                            options.envid,
                            options.requiretls,
                        ),
                    ).fetchone()
                    if row is not None:
                        break
                    chosen = new_queue_id()
                message_id = row[0]
                seq = 0
                while chunk := source.read(CHUNK):
                    conn.execute(
                        "INSERT INTO queue_chunks (message_id, seq, data) VALUES (%s, %s, %s)",
                        (message_id, seq, chunk),
                    )
                    seq += 1
                conn.execute(
                    "UPDATE queue_messages SET chunks = %s WHERE id = %s", (seq, message_id)
                )
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO queue_recipients (message_id, position, address, domain,"
                        " state, next_attempt, notify, orcpt) VALUES (%s, %s, %s, %s, %s, %s,"
                        " %s, %s)",
                        [
                            (
                                message_id,
                                position,
                                address,
                                address.rpartition("@")[2].lower(),
                                PENDING,
                                now,
                                list(recipient_options.get(address, none).notify),
                                recipient_options.get(address, none).orcpt,
                            )
                            for position, address in enumerate(recipients)
                        ],
                    )
                conn.execute(f"NOTIFY {CHANNEL}")  # sent at the commit
        return Envelope(
            queue_id=chosen,
            sender=sender or None,
            arrival=now,
            size=size,
            recipients=[
                Recipient(
                    address,
                    next_attempt=now,
                    notify=list(recipient_options.get(address, none).notify),
                    orcpt=recipient_options.get(address, none).orcpt,
                )
                for address in recipients
            ],
            hops=hops,
            body=options.body,
            smtputf8=options.smtputf8,
            ret=options.ret,
            envid=options.envid,
            requiretls=options.requiretls,
        )

    def import_envelope(self, envelope: Envelope, message_path: str) -> bool:
        """Bring in a message of a file spool as it is (each recipient's state, attempts,
        next attempt; ``migrate maildir-to-postgres``); False when its id is here already
        (migrated before: a re-run skips it)."""
        conn = self._connection()
        with conn.transaction(), open(message_path, "rb") as source:
            row = conn.execute(
                "INSERT INTO queue_messages (queue_id, sender, arrival, size, hops, chunks,"
                " delay_warned, held, body, smtputf8, ret, envid, requiretls) VALUES (%s, %s,"
                " %s, %s, %s, 0, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (queue_id) DO NOTHING"
                " RETURNING id",
                (
                    envelope.queue_id,
                    envelope.sender,
                    envelope.arrival,
                    envelope.size,
                    envelope.hops,
                    envelope.delay_warned,
                    envelope.held,
                    envelope.body,
                    envelope.smtputf8,
                    envelope.ret,
                    envelope.envid,
                    envelope.requiretls,
                ),
            ).fetchone()
            if row is None:
                return False
            seq = 0
            while chunk := source.read(CHUNK):
                conn.execute(
                    "INSERT INTO queue_chunks (message_id, seq, data) VALUES (%s, %s, %s)",
                    (row[0], seq, chunk),
                )
                seq += 1
            conn.execute("UPDATE queue_messages SET chunks = %s WHERE id = %s", (seq, row[0]))
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO queue_recipients (message_id, position, address, domain, state,"
                    " attempts, next_attempt, status, diagnostic, remote_mta, notify, orcpt)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            row[0],
                            position,
                            r.address,
                            r.domain,
                            r.state,
                            r.attempts,
                            r.next_attempt,
                            r.status,
                            r.diagnostic,
                            r.remote_mta,
                            list(r.notify),
                            r.orcpt,
                        )  # fmt: skip
                        for position, r in enumerate(envelope.recipients)
                    ],
                )
        return True

    # -- claiming and recording -----------------------------------------------------------------

    def claim(
        self,
        owner: str,
        now: float,
        lease: float,
        slots: int,
        domain_slots: Callable[[str], int],
        backoff: Callable[[int], float],
    ) -> list[Claimed]:
        """Lease the due recipients of up to ``slots`` jobs (one message, one domain each),
        at most ``domain_slots(domain)`` jobs per domain; returns them.

        Due: active, its next attempt and any previous lease past, its message not held
        (unless an administrator asked for a bounce). Rows other nodes are claiming at this
        moment are skipped (``SKIP LOCKED``); rows looked at but not taken are unlocked at
        commit, untouched. Each leased recipient's attempt is counted and its next attempt
        set now, before any delivery (a crash then retries later, not at once)."""
        if slots <= 0:
            return []
        conn = self._connection()
        with conn.transaction():
            rows = conn.execute(
                "SELECT r.id, r.message_id, r.domain, r.attempts, m.bounce_requested"
                " FROM queue_recipients r"
                " JOIN queue_messages m ON m.id = r.message_id"
                f" WHERE r.{_ACTIVE} AND r.next_attempt <= %s AND r.lease_until <= %s"
                " AND (NOT m.held OR m.bounce_requested)"
                " ORDER BY r.next_attempt, r.id LIMIT %s FOR UPDATE OF r SKIP LOCKED",
                (now, now, slots * 50),
            ).fetchall()
            jobs: dict[tuple[int, str], list[tuple[int, int]]] = {}
            taken: dict[str, int] = {}
            for row_id, message_id, domain, attempts, bounce in rows:
                # An administrator's bounce: every domain in one job, so one DSN says it all
                # (no connection is made: no domain limit applies).
                job = (message_id, "" if bounce else domain)
                if job not in jobs:
                    if len(jobs) >= slots:
                        continue
                    if not bounce and taken.get(domain, 0) >= domain_slots(domain):
                        continue
                    taken[domain] = taken.get(domain, 0) + 1
                    jobs[job] = []
                jobs[job].append((row_id, attempts))
            if not jobs:
                return []
            # One backoff per job, as in the file queue: its recipients stay together.
            retry_at = {
                job: now + backoff(max(attempts for _, attempts in rows_of_job) + 1)
                for job, rows_of_job in jobs.items()
            }
            with conn.cursor() as cursor:
                cursor.executemany(
                    "UPDATE queue_recipients SET attempts = attempts + 1, next_attempt = %s,"
                    " lease_owner = %s, lease_until = %s WHERE id = %s",
                    [
                        (retry_at[job], owner, now + lease, row_id)
                        for job, rows_of_job in jobs.items()
                        for row_id, _attempts in rows_of_job
                    ],
                )
            message_ids = sorted({message_id for message_id, _ in jobs})
            messages = {
                row[0]: row
                for row in conn.execute(
                    f"SELECT {_MESSAGE} FROM queue_messages WHERE id = ANY(%s)", (message_ids,)
                )
            }
            recipients: dict[int, list[tuple[Any, ...]]] = {}
            for row in conn.execute(
                f"SELECT {_RECIPIENT} FROM queue_recipients WHERE message_id = ANY(%s)"
                " ORDER BY message_id, position",
                (message_ids,),
            ):
                recipients.setdefault(row[1], []).append(row)
        claimed: list[Claimed] = []
        for (message_id, domain), leased in jobs.items():
            message = messages[message_id]
            envelope = _envelope(message, recipients[message_id])
            job = Claimed(message_id, domain, envelope, message[13])
            wanted = {row_id for row_id, _ in leased}
            for row, recipient in zip(recipients[message_id], envelope.recipients, strict=True):
                if row[0] in wanted:
                    job.due.append(recipient)
                    job.rows.append(row[0])
            claimed.append(job)
        return claimed

    def renew(self, owner: str, until: float, rows: list[int]) -> int:
        """Extend ``owner``'s leases on ``rows`` (the recipients of its running deliveries;
        those of an attempt that crashed are left to expire)."""
        conn = self._connection()
        return conn.execute(
            "UPDATE queue_recipients SET lease_until = %s WHERE lease_owner = %s AND id = ANY(%s)",
            (until, owner, rows),
        ).rowcount

    def write_message(self, message_id: int, path: str) -> None:
        """The message's bytes into a new file at ``path`` (for the courier and the DSN)."""
        conn = self._connection()
        with open(path, "wb") as out:
            seq = 0
            while True:
                row = conn.execute(
                    "SELECT data FROM queue_chunks WHERE message_id = %s AND seq = %s",
                    (message_id, seq),
                ).fetchone()
                if row is None:
                    break
                out.write(row[0])
                seq += 1

    def record(
        self,
        owner: str,
        pairs: Iterable[tuple[int, Recipient]],
        keep: Iterable[Recipient] = (),
    ) -> list[str]:
        """Write each (row id, recipient)'s state and reply and release its lease, except
        for those in ``keep`` (failed, their DSN not yet sent). Returns the addresses whose
        lease was lost meanwhile (expired and taken by another node, or the message
        deleted): their row is left as the new holder or the administrator made it."""
        kept = {id(r) for r in keep}
        conn = self._connection()
        lost: list[str] = []
        with conn.transaction():
            for row_id, r in pairs:
                release = id(r) not in kept
                done = conn.execute(
                    "UPDATE queue_recipients SET state = %s, status = %s, diagnostic = %s,"
                    " remote_mta = %s, lease_owner = CASE WHEN %s THEN NULL ELSE lease_owner"
                    " END, lease_until = CASE WHEN %s THEN 0 ELSE lease_until END"
                    " WHERE id = %s AND lease_owner = %s",
                    (
                        r.state,
                        r.status,
                        r.diagnostic,
                        r.remote_mta,
                        release,
                        release,
                        row_id,
                        owner,
                    ),
                ).rowcount
                if not done:
                    lost.append(r.address)
        return lost

    def warn_once(self, message_id: int) -> bool:
        """Claim the message's one delay warning: True for the node that gets to send it."""
        conn = self._connection()
        return bool(
            conn.execute(
                "UPDATE queue_messages SET delay_warned = true WHERE id = %s AND NOT delay_warned",
                (message_id,),
            ).rowcount
        )

    def remove_if_done(self, message_id: int) -> bool:
        """Delete the message when none of its recipients is active any more (the last node
        to finish one of its domains does it; recipients and chunks go with it)."""
        conn = self._connection()
        return bool(
            conn.execute(
                "DELETE FROM queue_messages m WHERE id = %s AND NOT EXISTS (SELECT 1 FROM"
                f" queue_recipients r WHERE r.message_id = m.id AND r.{_ACTIVE})",
                (message_id,),
            ).rowcount
        )

    # -- reading (IQueueRecords) ----------------------------------------------------------------

    def ids(self) -> list[str]:
        """Queue ids, oldest first (ids are time-ordered)."""
        rows = self._connection().execute("SELECT queue_id FROM queue_messages ORDER BY queue_id")
        return [row[0] for row in rows]

    def load(self, queue_id: str) -> Envelope:
        conn = self._connection()
        with conn.transaction():
            message = conn.execute(
                f"SELECT {_MESSAGE} FROM queue_messages WHERE queue_id = %s", (queue_id,)
            ).fetchone()
            if message is None:
                raise NotQueued(f"no message {queue_id} in the queue")
            recipients = conn.execute(
                f"SELECT {_RECIPIENT} FROM queue_recipients WHERE message_id = %s"
                " ORDER BY position",
                (message[0],),
            ).fetchall()
        return _envelope(message, recipients)

    def envelopes(self) -> list[Envelope]:
        """Every queued message's envelope, oldest first, in two queries (``IQueueRecords``:
        ``queue list``, the metrics)."""
        conn = self._connection()
        with conn.transaction():
            messages = conn.execute(
                f"SELECT {_MESSAGE} FROM queue_messages ORDER BY queue_id"
            ).fetchall()
            recipients: dict[int, list[tuple[Any, ...]]] = {}
            for row in conn.execute(
                f"SELECT {_RECIPIENT} FROM queue_recipients ORDER BY message_id, position"
            ):
                recipients.setdefault(row[1], []).append(row)
        return [_envelope(m, recipients.get(m[0], [])) for m in messages]

    def header(self, queue_id: str) -> bytes:
        """The message's header section (up to the empty line), at most 64 KiB."""
        row = (
            self._connection()
            .execute(
                "SELECT substring(c.data FROM 1 FOR %s) FROM queue_chunks c"
                " JOIN queue_messages m ON m.id = c.message_id"
                " WHERE m.queue_id = %s AND c.seq = 0",
                (HEADER_LIMIT, queue_id),
            )
            .fetchone()
        )
        if row is None:
            raise NotQueued(f"no message {queue_id} in the queue")
        head = bytes(row[0])
        end = head.find(b"\r\n\r\n")
        return head if end < 0 else head[: end + 2]

    # -- administration (IQueueRecords.request) -------------------------------------------------

    def request(self, kind: str, queue_id: str | None = None, now: float | None = None) -> bool:
        """Apply an administrator's request at once, in the database, whichever node runs
        it: every node's runner sees the result at its next claim. ``bounce`` marks the
        message for the runners, which send the DSN (they hold the router and the
        submission). True when the message was there (``flush``: always)."""
        now = self._clock() if now is None else now
        if kind != "flush" and kind not in REQUEST_KINDS:
            raise ValueError(f"unknown queue request {kind!r}")
        conn = self._connection()
        active = f"message_id IN (SELECT id FROM queue_messages WHERE queue_id = %s) AND {_ACTIVE}"
        with conn.transaction():
            conn.execute(f"NOTIFY {CHANNEL}")  # sent at the commit
            if kind == "flush":
                conn.execute(
                    f"UPDATE queue_recipients SET next_attempt = %s WHERE {_ACTIVE}"
                    " AND next_attempt > %s",
                    (now, now),
                )
                return True
            found = conn.execute(
                "SELECT id FROM queue_messages WHERE queue_id = %s FOR UPDATE", (queue_id,)
            ).fetchone()
            if found is None:
                return False
            if kind == "delete":
                conn.execute("DELETE FROM queue_messages WHERE id = %s", (found[0],))
            elif kind in ("retry", "adopt"):
                conn.execute(
                    f"UPDATE queue_recipients SET next_attempt = %s WHERE {active}",
                    (now, queue_id),
                )
            elif kind in ("hold", "release"):
                conn.execute(
                    "UPDATE queue_messages SET held = %s WHERE id = %s",
                    (kind == "hold", found[0]),
                )
            elif kind == "requeue":
                conn.execute("UPDATE queue_messages SET held = false WHERE id = %s", (found[0],))
                conn.execute(
                    "UPDATE queue_recipients SET state = %s, attempts = 0, next_attempt = %s,"
                    f" status = '', diagnostic = '', remote_mta = '' WHERE {active}",
                    (PENDING, now, queue_id),
                )
            elif kind == "bounce":
                conn.execute(
                    "UPDATE queue_messages SET bounce_requested = true WHERE id = %s", (found[0],)
                )
                conn.execute(
                    f"UPDATE queue_recipients SET next_attempt = 0 WHERE {active}", (queue_id,)
                )
        return True


def queue_listener(dsn: str, reactor: Any, wake: Callable[[], None]) -> PostgresListener:
    """A thread in ``LISTEN txmailhost_queue`` that calls ``wake`` (in the reactor thread)
    for each notification: a message queued or an administrator's request on any node is
    claimed at once instead of at the next poll. Best effort: while the connection is down
    the runners' polls still find everything."""
    return PostgresListener(
        dsn,
        CHANNEL,
        lambda _payload: reactor.callFromThread(wake),
        name="txmailhost-queue-listen",
    )
