"""Which psycopg 3 driver the PostgreSQL store should use: sync in a thread pool, or async.

Issue 22 left the choice to measurement: psycopg's synchronous connections in the store's
thread pool (what ``txmailhost/store/postgres.py`` does), or ``AsyncConnection`` on Twisted's
asyncio reactor. This bench measures both on the store's hot transactions, as the server runs
them, from a running reactor:

``deliver``
    SMTP's local delivery: a 4 KiB message appended to a mailbox (one per chain), UID and
    MODSEQ allocated, body and index row inserted, other nodes notified, committed with
    ``synchronous_commit`` on (``PostgresStore.deliver``).
``select``
    IMAP SELECT's folder image: ``open_selected`` of a shared ``--mailbox-messages`` INBOX,
    claiming \\Recent as a read-write SELECT does (so the mailbox row is locked).
``fetch``
    ``UID FETCH n:m (FLAGS BODY.PEEK[])`` of ``--fetch`` messages: the index and headers,
    then the bodies (the two ``messages()`` reads ``imap/messages.py`` makes).
``store``
    ``UID STORE n +FLAGS/-FLAGS (\\Flagged)``, one message per chain, in the shared mailbox.

Variants, each in a fresh process so that each gets the reactor it names:

``sync``
    Today's code: the default (epoll) reactor, the real ``PostgresStore`` methods in a
    ``ThreadPool`` of 8 (``[store] threads``' default), one connection per thread.
``async``
    Twisted's asyncio reactor, the same SQL and the same Python work around it on
    ``psycopg.AsyncConnection``: 8 connections handed out from a queue (the cheapest pool
    there is), awaited through ``Deferred.fromFuture``, and one connection in ``LISTEN``
    reading the notifications, as the store's listener thread does.
``sync-asyncio``
    Today's store on the asyncio reactor: what the reactor alone changes.
``async-pool``
    ``async`` with ``psycopg_pool.AsyncConnectionPool`` (when psycopg_pool is installed).

Every operation is a Twisted coroutine awaiting a Deferred, as the protocol code does. Each
measurement runs ``--seconds`` with 1 and with 50 chains of operations in flight: operations
per second, latency p50/p99, CPU of the client process per operation (``getrusage``: the
reactor thread, the pool threads, libpq) and of PostgreSQL's processes (``/proc``). The
variants alternate round by round (the order rotates each round), so the load of the shared
machine falls on all of them alike; medians and ranges over the rounds are reported.

``--server`` measures the whole server instead: two ``twistd txmailhost`` on PostgreSQL
(store, accounts and queue), one on the default reactor and one with ``--reactor=asyncio``,
loaded in alternation: SMTP (bench/smtp_load.py, 4 KiB messages, 1 and 50 connections) and
50 IMAP sessions doing SELECT + ``UID FETCH 1:* (FLAGS)`` (bench/imap_load.py), with the
server's CPU per message. The store is the same sync one in both: what the asyncio reactor
costs the protocol side, which an async driver would bring along.

Run by hand: ``python -m bench.pg_driver [--rounds 5] [--seconds 2.5] [--server]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bench.server import cpu_seconds, process_tree
from bench.stats import median, percentile

VARIANTS = ("sync", "async", "sync-asyncio", "async-pool")
WORKLOADS = ("deliver", "select", "fetch", "store")
READER = "reader@bench.test"  # the shared mailbox of select/fetch/store
POOL_SIZE = 8  # [store] threads' default: the sync store's connections; the async pool's size
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def message(index: int, size: int = 4096) -> bytes:
    """A ``size``-octet mail with CRLF line ends, distinct per ``index``."""
    head = (
        f"From: bench@client.test\r\nTo: {READER}\r\nSubject: bench {index}\r\n"
        f"Message-ID: <{index}.bench@client.test>\r\n\r\n"
    ).encode()
    line = b"x" * 70 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    return head + body + b"y" * (size - len(head) - len(body))


def deliver_user(chain: int) -> str:
    return f"d{chain}@bench.test"


# -- the async side: the store's SQL on psycopg.AsyncConnection ------------------------------


class QueuePool:
    """``size`` open AsyncConnections handed out one at a time: the least a pool can cost."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn, self._size = dsn, size
        self._idle: asyncio.Queue[Any] = asyncio.Queue()
        self._all: list[Any] = []

    async def open(self) -> None:
        import psycopg

        for _ in range(self._size):
            conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
            self._all.append(conn)
            self._idle.put_nowait(conn)

    @asynccontextmanager
    async def connection(self) -> Any:
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()


class AsyncStore:
    """The four operations with the SQL of ``PostgresStore`` and the same Python around it,
    awaited on an async pool. Kept beside the store's code by the test, which checks both
    give the same answers on the same database."""

    def __init__(self, pool: Any, origin: str) -> None:
        self.pool = pool
        self.origin = origin

    async def _mailbox_id(self, conn: Any, user: str, name: str) -> int:
        from txmailhost.store.memory import _canonical, _owner

        cur = await conn.execute(
            "SELECT b.id FROM mailboxes b JOIN mail_users u ON u.id = b.user_id"
            " WHERE u.address = %s AND b.name = %s",
            (_owner(user), _canonical(name)),
        )
        row = await cur.fetchone()
        if row is None:
            raise LookupError(f"no mailbox {name!r} of {user} (provisioned by the parent)")
        return row[0]

    async def deliver(self, user: str, data: bytes) -> int:
        """``PostgresStore.deliver`` to one mailbox of a one-chunk message (``_add_small``)."""
        from txmailhost.store.interfaces import INBOX, MessageSource
        from txmailhost.store.postgres import CHANNEL, PostgresStore, _key

        body, header = PostgresStore._small(MessageSource.from_bytes(data))  # type: ignore[misc]
        async with self.pool.connection() as conn:
            box = await self._mailbox_id(conn, user, INBOX)
            cur = await conn.execute(
                "WITH b AS (UPDATE mailboxes SET uidnext = uidnext + 1,"
                "   highestmodseq = highestmodseq + 1, size = size + %(size)s WHERE id = %(box)s"
                "   RETURNING id, uidvalidity, uidnext - 1 AS uid, highestmodseq),"
                " m AS (INSERT INTO messages (mailbox_id, uid, modseq, flags, size, internaldate,"
                "   chunks, header) SELECT b.id, b.uid, b.highestmodseq, %(flags)s, %(size)s,"
                "   %(date)s, 1, %(header)s FROM b RETURNING id),"
                " c AS (INSERT INTO message_chunks (message_id, seq, data)"
                "   SELECT m.id, 0, %(data)s FROM m)"
                " SELECT b.uidvalidity, b.uid, pg_notify(%(channel)s, %(payload)s) FROM b",
                {
                    "box": box,
                    "flags": [],
                    "size": len(body),
                    "date": time.time(),
                    "header": header,
                    "data": body,
                    "channel": CHANNEL,
                    "payload": f"{self.origin}\t{_key(user, INBOX)}",
                },
            )
            row = await cur.fetchone()
        return row[1]

    async def select(self, user: str) -> Any:
        """``PostgresStore.open_selected(user, INBOX, claim_recent=True)``."""
        from array import array

        from txmailhost.store.interfaces import INBOX, SEEN, MailboxSelection

        async with self.pool.connection() as conn:
            box = await self._mailbox_id(conn, user, INBOX)
            async with conn.transaction():
                cur = await conn.execute(
                    "SELECT uidvalidity, uidnext, highestmodseq, recent_uid FROM mailboxes"
                    " WHERE id = %s FOR UPDATE",
                    (box,),
                )
                uidvalidity, uidnext, highestmodseq, first_recent = await cur.fetchone()
                if uidnext > first_recent:
                    await conn.execute(
                        "UPDATE mailboxes SET recent_uid = %s WHERE id = %s", (uidnext, box)
                    )
                cur = await conn.execute(
                    "SELECT uid, flags FROM messages WHERE mailbox_id = %s ORDER BY uid", (box,)
                )
                rows = await cur.fetchall()
                cur = await conn.execute("SELECT objectid FROM mailboxes WHERE id = %s", (box,))
                (mailboxid,) = await cur.fetchone()
        uids = array("I")
        unseen, first_unseen = 0, 0
        keywords: set[str] = set()
        for position, (uid, flags) in enumerate(rows, 1):
            uids.append(uid)
            if SEEN not in flags:
                unseen += 1
                first_unseen = first_unseen or position
            keywords.update(f for f in flags if not f.startswith("\\"))
        return MailboxSelection(
            uidvalidity=uidvalidity,
            uidnext=uidnext,
            highestmodseq=highestmodseq,
            uids=uids,
            first_unseen=first_unseen,
            unseen=unseen,
            first_recent=first_recent,
            keywords=frozenset(keywords),
            mailboxid=mailboxid,
        )

    async def messages(self, box: int, uids: list[int], content: bool) -> list[Any]:
        """``PostgresMailbox.messages(uids, header=True, content=content)``."""
        from txmailhost.store.postgres import _INDEX, _Flags, _stored

        flags = _Flags()
        wanted = sorted(set(uids))
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT {_INDEX}, header, id FROM messages"
                " WHERE mailbox_id = %s AND uid = ANY (%s) ORDER BY uid"
                + (" FOR SHARE" if content else ""),
                (box, wanted),
            )
            rows = await cur.fetchall()
            bodies: dict[int, list[bytes]] = {}
            if content and rows:
                cur = await conn.execute(
                    "SELECT message_id, data FROM message_chunks"
                    " WHERE message_id = ANY (%s) ORDER BY message_id, seq",
                    ([r[6] for r in rows],),
                )
                async for message_id, data in cur:
                    bodies.setdefault(message_id, []).append(data)
        return [
            _stored(r, flags)._replace(
                header=bytes(r[5]),
                content=b"".join(bodies.get(r[6], ())) if content else None,
            )
            for r in rows
        ]

    async def store_flags(self, box: int, uids: list[int], flags: list[str], mode: str) -> list:
        """``PostgresMailbox.store_flags`` (its notification included)."""
        from txmailhost.store.interfaces import INBOX, MessageInfo
        from txmailhost.store.postgres import CHANNEL, _key

        given = frozenset(f for f in flags if f != "\\Recent")
        wanted = sorted(set(uids))
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT uidvalidity, uidnext, highestmodseq, recent_uid FROM mailboxes"
                " WHERE id = %s FOR UPDATE",
                (box,),
            )
            highest = (await cur.fetchone())[2]
            cur = await conn.execute(
                "SELECT uid, flags, size, internaldate FROM messages"
                " WHERE mailbox_id = %s AND uid = ANY (%s) ORDER BY uid",
                (box, wanted),
            )
            changed = []
            for uid, old, size, internaldate in await cur.fetchall():
                current = frozenset(old)
                new = current | given if mode == "+" else current - given
                if new != current:
                    changed.append((uid, new, size, internaldate))
            if not changed:
                return []
            modseq = highest + 1
            await conn.execute(
                "UPDATE mailboxes SET highestmodseq = %s WHERE id = %s", (modseq, box)
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    "UPDATE messages SET flags = %s, modseq = %s WHERE mailbox_id = %s AND uid = %s",
                    [(sorted(new), modseq, box, uid) for uid, new, _s, _d in changed],
                )
            await conn.execute(
                "SELECT pg_notify(%s, %s)", (CHANNEL, f"{self.origin}\t{_key(READER, INBOX)}")
            )
        return [MessageInfo(uid, new, size, date, modseq) for uid, new, size, date in changed]


async def _listen(dsn: str, origin: str, stop: asyncio.Event) -> None:
    """The async counterpart of the store's listener thread: read every notification."""
    import psycopg

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await conn.execute("LISTEN txmailhost_changes")
        heard = 0
        while not stop.is_set():
            async for notice in conn.notifies(timeout=0.5):  # then look at ``stop``
                if notice.payload.partition("\t")[0] != origin:  # PostgresStore._heard
                    heard += 1
    finally:
        await conn.close()


# -- one measurement, in a child process -------------------------------------------------------


def _operations(
    variant: str, dsn: str, reactor: Any, fetch: int, chains: int
) -> tuple[Any, Any, Callable]:
    """(setup, teardown, make) for a variant: ``make(workload, chain)`` returns a coroutine
    function of the operation number that performs one operation and returns a witness.
    Setup clears \\Flagged of the messages ``store`` toggles, so each STORE changes one."""
    from twisted.internet.defer import Deferred, succeed

    from txmailhost.store.interfaces import INBOX, MessageSource

    state: dict[str, Any] = {}

    if variant.startswith("sync"):
        from twisted.python.threadpool import ThreadPool

        from txmailhost.store.postgres import PostgresStore

        pool = ThreadPool(minthreads=1, maxthreads=POOL_SIZE, name="bench-storage")
        pool.start()
        store = PostgresStore(dsn, reactor, pool, migrate=False)

        async def setup() -> None:
            state["box"] = await store.open(READER, INBOX)
            state["count"] = len((await store.open_selected(READER, INBOX, False))[1].uids)
            await state["box"].store_flags(range(1, chains + 1), ["\\Flagged"], "-")

        def teardown() -> Deferred:
            store.close()
            pool.stop()
            return succeed(None)

        def make(workload: str, chain: int) -> Callable[[int], Awaitable[Any]]:
            box = state.get("box")
            if workload == "deliver":

                async def op(n: int) -> Any:
                    source = MessageSource.from_bytes(message(n))
                    done = await store.deliver([(deliver_user(chain), INBOX)], source)
                    return next(iter(done.values()))
            elif workload == "select":

                async def op(n: int) -> Any:
                    selection = (await store.open_selected(READER, INBOX, True))[1]
                    return len(selection.uids), selection.unseen

            elif workload == "fetch":

                async def op(n: int) -> Any:
                    uids = _window(state["count"], fetch, chain + n)
                    await box.messages(uids, True, False)
                    found = await box.messages(uids, True, True)
                    return sum(len(m.content) for m in found)
            else:

                async def op(n: int) -> Any:
                    changed = await box.store_flags([chain + 1], ["\\Flagged"], "+-"[n % 2])
                    return len(changed)

            return op

        return setup, teardown, make

    loop = asyncio.get_event_loop()
    if variant == "async-pool":
        from psycopg_pool import AsyncConnectionPool

        aio_pool: Any = AsyncConnectionPool(
            dsn, min_size=POOL_SIZE, max_size=POOL_SIZE, kwargs={"autocommit": True}, open=False
        )
        opener = aio_pool.open(wait=True)
    else:
        aio_pool = QueuePool(dsn, POOL_SIZE)
        opener = aio_pool.open()
    origin = os.urandom(6).hex()
    astore = AsyncStore(aio_pool, origin)
    stop = asyncio.Event()

    def on_loop(coro: Awaitable[Any]) -> Deferred:
        return Deferred.fromFuture(asyncio.ensure_future(coro, loop=loop))

    async def setup() -> None:
        await on_loop(opener)
        state["listener"] = on_loop(_listen(dsn, origin, stop))
        state["box"] = await on_loop(_reader_box(astore))
        state["count"] = len((await on_loop(astore.select(READER))).uids)
        flagged = list(range(1, chains + 1))
        await on_loop(astore.store_flags(state["box"], flagged, ["\\Flagged"], "-"))

    def teardown() -> Deferred:
        stop.set()
        d = state["listener"]
        d.addCallback(lambda _: on_loop(aio_pool.close()))
        return d

    def make(workload: str, chain: int) -> Callable[[int], Awaitable[Any]]:
        box = state.get("box")
        if workload == "deliver":

            async def op(n: int) -> Any:
                return await on_loop(astore.deliver(deliver_user(chain), message(n)))
        elif workload == "select":

            async def op(n: int) -> Any:
                selection = await on_loop(astore.select(READER))
                return len(selection.uids), selection.unseen
        elif workload == "fetch":

            async def op(n: int) -> Any:
                uids = _window(state["count"], fetch, chain + n)
                await on_loop(astore.messages(box, uids, False))
                found = await on_loop(astore.messages(box, uids, True))
                return sum(len(m.content) for m in found)
        else:

            async def op(n: int) -> Any:
                changed = await on_loop(
                    astore.store_flags(box, [chain + 1], ["\\Flagged"], "+-"[n % 2])
                )
                return len(changed)

        return op

    return setup, teardown, make


async def _reader_box(astore: AsyncStore) -> int:
    from txmailhost.store.interfaces import INBOX

    async with astore.pool.connection() as conn:
        return await astore._mailbox_id(conn, READER, INBOX)


def _window(count: int, size: int, start: int) -> list[int]:
    """``size`` consecutive UIDs of a mailbox holding 1..count, starting at ``start``."""
    first = 1 + (start * size) % max(1, count - size + 1)
    return list(range(first, min(count, first + size - 1) + 1))


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run one (variant, workload, concurrency) measurement in this process; its figures."""
    if args.variant != "sync":
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        from twisted.internet import asyncioreactor

        asyncioreactor.install(loop)
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, gatherResults

    setup, teardown, make = _operations(
        args.variant, args.dsn, reactor, args.fetch, args.concurrency
    )
    made = [0] * args.concurrency  # operations per chain, warm-up included
    latencies: list[float] = []
    witnesses: list[Any] = []
    outcome: dict[str, Any] = {"reactor": type(reactor).__name__}

    async def chain(index: int, deadline: float, timed: bool) -> int:
        op = make(args.workload, index)
        done = 0
        while True:
            started = time.perf_counter()
            witness = await op(made[index])
            if timed:
                latencies.append(time.perf_counter() - started)
                witnesses.append(witness)
            done += 1
            made[index] += 1
            if time.perf_counter() >= deadline:
                return done

    async def main() -> None:
        await setup()
        warm = time.perf_counter() + min(0.5, args.seconds)
        await gatherResults(
            [Deferred.fromCoroutine(chain(i, warm, False)) for i in range(args.concurrency)]
        )
        pg = process_tree(args.postmaster) if args.postmaster else []
        pg_cpu = cpu_seconds(pg)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        deadline = started + args.seconds
        counts = await gatherResults(
            [Deferred.fromCoroutine(chain(i, deadline, True)) for i in range(args.concurrency)]
        )
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
        pg_used = cpu_seconds(set(pg) | set(process_tree(args.postmaster))) - pg_cpu if pg else 0
        ops = sum(counts)
        outcome.update(
            ops=ops,
            ops_per_s=ops / elapsed,
            p50_ms=1000 * percentile(latencies, 50),
            p99_ms=1000 * percentile(latencies, 99),
            cpu_ms_per_op=1000 * cpu / ops,
            pg_cpu_ms_per_op=1000 * pg_used / ops if pg else None,
            all_ops=sum(made),
            witness=witnesses[-1],
        )
        await teardown()

    def run() -> None:
        d = Deferred.fromCoroutine(main())
        d.addErrback(lambda f: outcome.update(error=f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    if "error" in outcome:
        raise RuntimeError(outcome["error"])
    return outcome


# -- the parent: a database, the rounds, the table ---------------------------------------------


def prepare(dsn: str, mailbox_messages: int, chains: int) -> None:
    """Schema, the shared mailbox of ``mailbox_messages`` 4 KiB messages, and one user per
    delivering chain (made now: lazy provisioning is not what is measured)."""
    from txmailhost.store.interfaces import INBOX, MessageSource
    from txmailhost.store.postgres import PostgresStore

    store = PostgresStore(dsn)  # no pool: each call runs before it returns
    try:
        for chain in range(chains):
            _now(store.provision(deliver_user(chain)))
        box = _now(store.open(READER, INBOX))
        for start in range(0, mailbox_messages, 200):
            batch = range(start, min(mailbox_messages, start + 200))
            _now(box.append_many([(MessageSource.from_bytes(message(i)), [], None) for i in batch]))
    finally:
        store.close()


def _now(d: Any) -> Any:
    """The result of a Deferred that has fired (a store without a pool), or its error."""
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    if hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    return outcome[0]


def _postmaster(server: Any) -> int:
    with open(os.path.join(server.data, "postmaster.pid")) as f:
        return int(f.readline())


def measure_once(
    variant: str, workload: str, concurrency: int, dsn: str, opts: argparse.Namespace
) -> dict[str, Any]:
    """One measurement in a fresh interpreter (a reactor can be installed once a process)."""
    argv = [
        sys.executable, "-m", "bench.pg_driver", "--child", "--variant", variant,
        "--workload", workload, "--concurrency", str(concurrency), "--dsn", dsn,
        "--seconds", str(opts.seconds), "--fetch", str(opts.fetch),
        "--postmaster", str(opts.postmaster or 0),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=_REPO, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {workload} x{concurrency} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_driver(
    dsn: str, opts: argparse.Namespace, log: Callable[[str], None] = print
) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    """Every variant × workload × concurrency, ``opts.rounds`` times in rotating order."""
    prepare(dsn, opts.mailbox_messages, max(opts.concurrency))
    results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    variants = list(opts.variants)
    for rnd in range(opts.rounds):
        order = variants[rnd % len(variants) :] + variants[: rnd % len(variants)]
        log(f"# round {rnd + 1}: load average {os.getloadavg()[0]:.2f}, order {' '.join(order)}")
        for workload in opts.workloads:
            for concurrency in opts.concurrency:
                for variant in order:
                    figures = measure_once(variant, workload, concurrency, dsn, opts)
                    figures["load"] = os.getloadavg()[0]
                    results.setdefault((variant, workload, concurrency), []).append(figures)
                    log(
                        f"  {variant:13} {workload:8} x{concurrency:<3}"
                        f" {figures['ops_per_s']:9.1f} ops/s  p50 {figures['p50_ms']:7.2f} ms"
                        f"  p99 {figures['p99_ms']:7.2f} ms  cpu {figures['cpu_ms_per_op']:.3f}"
                        f" ms/op  pg {figures['pg_cpu_ms_per_op'] or 0:.3f} ms/op"
                    )
    return results


def _cell(values: list[float], digits: int) -> str:
    """``median (low-high)``."""
    return f"{median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table(results: dict[tuple[str, str, int], list[dict[str, Any]]]) -> str:
    """The medians and ranges over the rounds, one line per measurement."""
    lines = [
        f"{'workload':8} {'conc':>4} {'variant':13} {'ops/s':>22} {'p50 ms':>20}"
        f" {'p99 ms':>20} {'CPU ms/op':>20} {'PG CPU ms/op':>20}"
    ]
    for (variant, workload, concurrency), runs in sorted(
        results.items(), key=lambda item: (WORKLOADS.index(item[0][1]), item[0][2], item[0][0])
    ):
        pg = [r["pg_cpu_ms_per_op"] or 0.0 for r in runs]
        lines.append(
            f"{workload:8} {concurrency:>4} {variant:13}"
            f" {_cell([r['ops_per_s'] for r in runs], 1):>22}"
            f" {_cell([r['p50_ms'] for r in runs], 2):>20}"
            f" {_cell([r['p99_ms'] for r in runs], 2):>20}"
            f" {_cell([r['cpu_ms_per_op'] for r in runs], 3):>20}"
            f" {_cell(pg, 3):>20}"
        )
    return "\n".join(lines)


# -- the whole server on each reactor ----------------------------------------------------------

USER, PASSWORD = "u1@bench.test", "bench-password-1"


def run_server(server: Any, opts: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    """SMTP at 1 and 50 connections and IMAP with 50 sessions, default reactor against
    asyncio reactor, alternating; msgs/s (or seconds) and the server's CPU ms per message."""
    from bench.imap_load import concurrent
    from bench.smtp_load import SmtpLoad
    from bench.smtp_load import run as smtp_run
    from tests.support.server import ServerProcess

    workdir = tempfile.mkdtemp(prefix="bench-pgdriver-")
    nodes: dict[str, Any] = {}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for name, reactor in (("default", None), ("asyncio", "asyncio")):
            dsn = server.database()
            extra = (
                f'[store]\nbackend = "postgres"\naccounts = "postgres"\ndsn = "{dsn}"\n'
                '[queue]\nbackend = "postgres"\n[security]\nmax_connections_per_ip = 200\n'
            )
            node = ServerProcess(f"{workdir}/{name}", extra_config=extra, reactor=reactor)
            nodes[name] = node.start()
            node.add_user(USER, PASSWORD)
            asyncio.run(smtp_run(SmtpLoad("127.0.0.1", node.ports["smtp"], messages=20)))
        names = list(nodes)
        for rnd in range(opts.rounds):
            order = names if rnd % 2 == 0 else names[::-1]
            log(f"# server round {rnd + 1}: load average {os.getloadavg()[0]:.2f}")
            sessions = opts.imap_sessions
            for load in ("smtp 1", "smtp 50", f"imap {sessions}"):
                for name in order:
                    node = nodes[name]
                    pids = process_tree(node.process.pid)
                    cpu = cpu_seconds(pids)
                    if load.startswith("imap"):
                        took = asyncio.run(
                            concurrent("127.0.0.1", node.ports["imap"], USER, PASSWORD, sessions)
                        )
                        figures = {"seconds": took, "cpu_ms": 1000 * (cpu_seconds(pids) - cpu)}
                    else:
                        connections = int(load.split()[1])
                        count = opts.smtp_messages if connections > 1 else opts.smtp_messages // 4
                        outcome = asyncio.run(
                            smtp_run(
                                SmtpLoad(
                                    "127.0.0.1",
                                    node.ports["smtp"],
                                    messages=count,
                                    connections=connections,
                                    per_connection=max(1, count // connections),
                                    recipient=USER,
                                )
                            )
                        )
                        if outcome.failed:
                            raise RuntimeError(f"{name}: {outcome.summary()}")
                        figures = {
                            "msgs_per_s": outcome.rate,
                            "cpu_ms_per_msg": 1000 * (cpu_seconds(pids) - cpu) / outcome.accepted,
                            "p50_ms": 1000 * percentile(outcome.transaction_latency, 50),
                            "p99_ms": 1000 * percentile(outcome.transaction_latency, 99),
                        }
                    results.setdefault((name, load), []).append(figures)
                    log(
                        f"  {name:8} {load:8} "
                        + "  ".join(f"{k} {v:.2f}" for k, v in figures.items())
                    )
    finally:
        for node in nodes.values():
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def server_table(results: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    lines = []
    for (name, load), runs in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        cells = "  ".join(f"{key} {_cell([r[key] for r in runs], 2)}" for key in runs[0])
        lines.append(f"{load:8} {name:8} {cells}")
    return "\n".join(lines)


# -- command line ------------------------------------------------------------------------------


def options(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, defaults filled in (the tests build their tiny runs with it)."""
    parser = argparse.ArgumentParser(prog="python -m bench.pg_driver", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.5, help="per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--variants", nargs="+", default=None, choices=VARIANTS)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--mailbox-messages", type=int, default=1000)
    parser.add_argument("--fetch", type=int, default=20, help="messages per UID FETCH")
    parser.add_argument("--server", action="store_true", help="the whole server instead")
    parser.add_argument("--smtp-messages", type=int, default=1000)
    parser.add_argument("--imap-sessions", type=int, default=50)
    parser.add_argument("--json", help="write every round's figures here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)  # the child's database
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--postmaster", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variants is None:
        args.variants = ["sync", "async", "sync-asyncio"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    if args.child:
        args.concurrency = args.concurrency[0]
        print(json.dumps(child(args)))
        return 0
    from tests.support.postgres import PostgresServer

    server = PostgresServer()
    server.start(durable=True)
    try:
        print(
            f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()},"
            f" {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f};"
            f" PostgreSQL 15, fsync and synchronous_commit on",
            flush=True,
        )
        if args.server:
            found = run_server(server, args, lambda line: print(line, flush=True))
            print(server_table(found))
            dump = {f"{k[0]} {k[1]}": v for k, v in found.items()}
        else:
            args.postmaster = _postmaster(server)
            dsn = server.database()
            got = run_driver(dsn, args, lambda line: print(line, flush=True))
            print(table(got))
            dump = {f"{k[0]} {k[1]} {k[2]}": v for k, v in got.items()}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dump, f, indent=1)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
