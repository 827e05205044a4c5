"""The PostgreSQL store against the Maildir store, through the path the server uses.

What it measures: APPENDs per second into one mailbox (the UID allocation serialises them on
the mailbox row) and into one mailbox per writer, with ``--concurrency`` appends in flight from
a running reactor through the store's thread pool (sync psycopg in the pool, the pattern
``txmailhost/store/postgres.py`` uses), then SELECT + ``columns(1:*)`` of the mailbox (what an
IMAP client's resync costs). Maildir runs the same on the data directory's disk for comparison.

PostgreSQL runs with its durable defaults (fsync and synchronous_commit on): an APPEND is
answered only after its commit is on disk, as Maildir's after its fsyncs. Without ``--dsn`` a
server is started for the run in a temporary directory (Debian's postgresql 15, the tests'
harness), on the same machine: on this 2-core box client and database share the cores.

``--smtp`` measures the server instead: ``twistd txmailhost`` on each backend (the tests'
``ServerProcess``), 4 KiB messages to one local user over 1 and ``--concurrency`` SMTP
connections (bench/smtp_load.py), each counted when its ``250`` arrives.

``--s3`` adds "postgres+s3": the PostgreSQL store with the bodies in an object store
(``[store] blobs = "s3"``), moto's S3 server on loopback (tests/support/s3.py). moto is a
Python server answering from memory on the same cores: it costs more CPU per request than a
real store and none of a real one's network latency, so the figure is a measure of the
client's path (one PUT per message before the commit), not of S3.

Run alone: ``python -m bench.pg_store [--dsn DSN] [--messages 400] [--concurrency 8]
[--smtp] [--s3]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from typing import Any

_MESSAGE = (
    b"From: bench@example.test\r\nTo: alice@example.test\r\nSubject: bench\r\n\r\n"
    + b"x" * 72
    + b"\r\n"
) * 12  # ~1 KiB, a typical short mail


def _drive(reactor: Any, store: Any, users: list[str], messages: int, concurrency: int) -> float:
    """Appends per second: ``concurrency`` chains, each appending to its user's INBOX."""
    from twisted.internet import defer

    from txmailhost.store.interfaces import INBOX, MessageSource

    @defer.inlineCallbacks
    def chain(user: str, count: int) -> Any:
        box = yield store.open(user, INBOX)
        for _ in range(count):
            yield box.append(MessageSource.from_bytes(_MESSAGE), [], None)

    per_chain = messages // concurrency
    started = time.perf_counter()
    done = defer.gatherResults(
        [chain(users[i % len(users)], per_chain) for i in range(concurrency)],
        consumeErrors=True,
    )
    outcome: list[Any] = []
    done.addBoth(outcome.append)
    while not outcome:
        reactor.iterate(0.001)
    if hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    return per_chain * concurrency / (time.perf_counter() - started)


def _resync(reactor: Any, store: Any, user: str) -> float:
    """Seconds for SELECT + columns(every UID) of the user's INBOX."""
    from txmailhost.store.interfaces import INBOX

    started = time.perf_counter()
    d = store.open_selected(user, INBOX, False)
    d.addCallback(lambda pair: pair[0].columns(list(pair[1].uids)))
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    while not outcome:
        reactor.iterate(0.001)
    if hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    return time.perf_counter() - started


def _s3(server: Any, dsn: str) -> tuple[Any, Any, str]:
    """(moto's S3 server, its settings on a new bucket, a database for the S3 variant: a new
    one of the bench's server, else the one given)."""
    from tests.support.s3 import S3Server

    s3 = S3Server()
    return s3, s3.settings(s3.bucket()), server.database() if server is not None else dsn


def run(
    dsn: str | None, messages: int, concurrency: int, s3: bool = False
) -> dict[str, dict[str, float]]:
    from twisted.internet import reactor
    from twisted.python.threadpool import ThreadPool

    from txmailhost.store.maildir import MaildirStore
    from txmailhost.store.postgres import PostgresStore

    server = None
    if dsn is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer()
        server.start(durable=True)
        dsn = server.database()
    workdir = tempfile.mkdtemp(prefix="bench-pg-")
    pool = ThreadPool(minthreads=1, maxthreads=8, name="bench-storage")
    pool.start()
    figures: dict[str, dict[str, float]] = {}
    s3_server = None
    try:
        stores = [
            ("postgres", PostgresStore(dsn, reactor, pool)),
            ("maildir", MaildirStore(workdir + "/mail", reactor, pool)),
        ]
        if s3:
            from txmailhost.store.s3blobs import S3Blobs

            s3_server, settings, s3_dsn = _s3(server, dsn)
            blobs = S3Blobs(settings)
            stores.append(("pg+s3", PostgresStore(s3_dsn, reactor, pool, blobs=blobs)))
        for name, store in stores:
            one = ["one@example.test"]
            many = [f"u{i}@example.test" for i in range(concurrency)]
            for user in one + many:
                d = store.provision(user)
                while not d.called:
                    reactor.iterate(0.001)
            figures[name] = {
                "append/s 1 writer": _drive(reactor, store, one, messages // 4, 1),
                f"append/s {concurrency} writers, one mailbox": _drive(
                    reactor, store, one, messages, concurrency
                ),
                f"append/s {concurrency} writers, own mailboxes": _drive(
                    reactor, store, many, messages, concurrency
                ),
            }
            count = messages // 4 + (messages // concurrency) * concurrency
            figures[name][f"SELECT+FETCH 1:* of {count} s"] = _resync(reactor, store, one[0])
            if hasattr(store, "close"):
                store.close()
    finally:
        pool.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if s3_server is not None:
            s3_server.stop()
        if server is not None:
            server.stop()
    return figures


def run_smtp(
    dsn: str | None, messages: int, concurrency: int, s3: bool = False
) -> dict[str, dict[str, float]]:
    """SMTP msgs/s into the real server, Maildir then PostgreSQL."""
    import asyncio

    from bench.smtp_load import SmtpLoad
    from bench.smtp_load import run as smtp_run
    from tests.support.server import ServerProcess

    server = None
    if dsn is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer()
        server.start(durable=True)
        dsn = server.database()
    workdir = tempfile.mkdtemp(prefix="bench-pg-smtp-")
    figures: dict[str, dict[str, float]] = {}
    s3_server = None
    try:
        variants = [
            ("maildir", ""),
            ("postgres", f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\n'),
        ]
        if s3:
            s3_server, settings, s3_dsn = _s3(server, dsn)
            secret = f"{workdir}/s3-secret"
            with open(secret, "w") as f:
                f.write(settings.secret_key + "\n")
            variants.append(
                (
                    "pg+s3",
                    f'[store]\nbackend = "postgres"\ndsn = "{s3_dsn}"\nblobs = "s3"\n'
                    f's3_endpoint = "{settings.endpoint}"\ns3_bucket = "{settings.bucket}"\n'
                    f's3_region = "{settings.region}"\ns3_access_key = "{settings.access_key}"\n'
                    f's3_secret_key_file = "{secret}"\n',
                )
            )
        for name, extra in variants:
            proc = ServerProcess(f"{workdir}/{name}", extra_config=extra).start()
            try:
                proc.add_user("u1@bench.test", "bench-password-1")
                figures[name] = {}
                for connections in (1, concurrency):
                    load = SmtpLoad(
                        "127.0.0.1",
                        proc.ports["smtp"],
                        messages=messages,
                        connections=connections,
                        per_connection=max(1, messages // connections),
                    )
                    outcome = asyncio.run(smtp_run(load))
                    if outcome.failed:
                        raise RuntimeError(outcome.summary())
                    figures[name][f"SMTP msgs/s, {connections} conn"] = outcome.rate
            finally:
                proc.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if s3_server is not None:
            s3_server.stop()
        if server is not None:
            server.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_store", description=__doc__)
    parser.add_argument("--dsn", help="an existing database (default: start a server)")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--smtp", action="store_true", help="the server over SMTP instead")
    parser.add_argument("--s3", action="store_true", help="and with bodies in moto's S3 server")
    args = parser.parse_args(argv)
    measure = run_smtp if args.smtp else run
    for store, values in measure(args.dsn, args.messages, args.concurrency, args.s3).items():
        for label, value in values.items():
            print(f"{store:9} {label:40} {value:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
