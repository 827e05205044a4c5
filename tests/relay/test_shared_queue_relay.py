"""Two queue runners on one PostgreSQL queue deliver over real loopback SMTP: every recipient
reaches the receiving server exactly once, and both runners take part (skipped without
PostgreSQL)."""

from __future__ import annotations

import collections
import dataclasses
import random
import time

from twisted.internet import task, threads
from twisted.python.threadpool import ThreadPool

from tests.relay.farside import ScriptedFactory, standard_reply
from tests.relay.test_courier import FAST
from tests.support.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support.syncpool import SyncThreadPool
from txmailhost.queue.claims import SharedQueue
from txmailhost.queue.postgres import PostgresQueueStore
from txmailhost.queue.scheduler import QueuePolicy
from txmailhost.relay.courier import RelayCourier, TLSPolicy
from txmailhost.relay.mx import MXResolver

MESSAGES = 200


class Sink:
    """A receiving server that records, per transaction, its recipients and its message.

    It holds its answers to DATA until both nodes have said EHLO (or ``patience`` seconds
    have passed): a node runs at most ``max_connections`` deliveries at once, so held answers
    leave work for the other node however fast the first one starts. Without the hold, on a
    loaded machine one node could claim and deliver everything before the other's first poll.
    """

    NODES = {b"a.example.test", b"b.example.test"}

    def __init__(self, reactor, patience: float = 10.0) -> None:
        self.deliveries: list[tuple[tuple[bytes, ...], bytes]] = []
        self.factory = ScriptedFactory(self.reply)
        self.seen: set[bytes] = set()
        self.held: list = []
        self.releasing = reactor.callLater(patience, self.release)

    def reply(self, command: bytes, session) -> bytes | None:
        verb = command.split(b" ", 1)[0].upper()
        if verb == b"MAIL":
            session.rcpts = []
        elif verb == b"RCPT":
            session.rcpts.append(command.split(b"<", 1)[1].split(b">", 1)[0])
        elif verb == b"EHLO":
            self.seen.add(command.split(b" ", 1)[1])
            if self.seen >= self.NODES:
                self.release()
        elif command == b"<end-of-data>":
            transaction = (tuple(session.rcpts), session.factory.messages[-1])
            if self.held is not None:
                self.held.append((session, transaction))
                return None
            self.deliveries.append(transaction)
        return standard_reply(command)

    def release(self) -> None:
        """Answer the held transactions; from now on answer at once."""
        if self.held is None:
            return
        held, self.held = self.held, None
        if self.releasing.active():
            self.releasing.cancel()
        for session, transaction in held:
            if session.transport.connected:  # else the sender timed out: not accepted
                self.deliveries.append(transaction)
                session.sendLine(standard_reply(b"<end-of-data>"))


def courier(net, dns_server, port: int, hostname: str) -> RelayCourier:
    """A node's relay client; it says ``hostname`` in its EHLO (which node delivered)."""
    resolver = MXResolver(net.reactor, SyncThreadPool(), [dns_server.address], timeout=2)
    return RelayCourier(
        net.reactor,
        SyncThreadPool(),
        resolver,
        hostname=hostname,
        port=port,
        tls=TLSPolicy("opportunistic"),
        timeouts=dataclasses.replace(FAST, data_end=30),  # outlasts the sink's hold
    )


def test_two_runners_deliver_each_recipient_exactly_once(
    net,
    dns_server,
    tmp_path,
    postgres_dsn,  # noqa: F811 - the fixture
):
    sink = Sink(net.reactor)
    port = net.listen(sink.factory, "127.0.0.2")
    for domain in ("remote.test", "other.test"):
        dns_server.add(domain, "MX", f"10 mx.{domain}.")
        dns_server.add(f"mx.{domain}", "A", "127.0.0.2")
    records = PostgresQueueStore(postgres_dsn)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    expected = collections.Counter()
    for n in range(MESSAGES):
        path = incoming / f"M{n:05d}"
        path.write_bytes(
            b"From: alice@example.test\r\nSubject: message %d\r\nX-Marker: m%d\r\n\r\nhi\r\n"
            % (n, n)
        )
        rcpts = [f"r{n}@remote.test"] + ([f"s{n}@other.test"] if n % 3 == 0 else [])
        records.add("alice@example.test", rcpts, str(path), net.reactor.seconds())
        expected.update((r.encode(), b"m%d" % n) for r in rcpts)

    pools, runners = [], []
    policy = QueuePolicy(max_connections=8, max_per_domain=4, poll_interval=0.2)
    for node in ("a", "b"):
        pool = ThreadPool(minthreads=1, maxthreads=4, name=f"node-{node}")
        pool.start()
        pools.append(pool)

        async def no_dsn(address: str, data: bytes) -> None:
            raise AssertionError("no DSN expected")

        runners.append(
            SharedQueue(
                PostgresQueueStore(postgres_dsn, migrate=False),
                courier(net, dns_server, port, f"{node}.example.test"),
                no_dsn,
                net.reactor,
                pool,
                hostname=f"{node}.example.test",
                work_dir=str(tmp_path / f"relay-{node}"),
                policy=policy,
                lease=30,
                rng=random.Random(node),
            )
        )
    try:
        for runner in runners:
            runner.start()

        async def drained() -> None:
            while await threads.deferToThreadPool(net.reactor, pools[0], records.ids):
                await task.deferLater(net.reactor, 0.1, lambda: None)

        net.run(drained(), timeout=120)
    finally:
        for runner in runners:
            runner.stop()
            runner.courier.close_idle()
        for pool in pools:
            pool.stop()
        for runner in runners:
            runner.records.close()
        records.close()

    delivered = collections.Counter()
    for rcpts, message in sink.deliveries:
        marker = message.split(b"X-Marker: ", 1)[1].split(b"\r\n", 1)[0]
        delivered.update((r, marker) for r in rcpts)
    assert delivered == expected  # every recipient, each exactly once
    by_node = collections.Counter(
        line.split(b" ", 1)[1] for line in sink.factory.commands if line.upper().startswith(b"EHLO")
    )
    assert set(by_node) == {b"a.example.test", b"b.example.test"}, by_node


def test_a_message_queued_elsewhere_is_claimed_at_once_through_notify(
    net,
    tmp_path,
    postgres_dsn,  # noqa: F811 - the fixture
):
    """The runner polls once a minute here: only the NOTIFY of the other node's insert can
    make it deliver within seconds."""
    from tests.queue.support import MESSAGE, ScriptedCourier

    pool = ThreadPool(minthreads=1, maxthreads=2, name="node-listen")
    pool.start()
    courier = ScriptedCourier()
    runner = SharedQueue(
        PostgresQueueStore(postgres_dsn),
        courier,
        None,
        net.reactor,
        pool,
        hostname="a.example.test",
        work_dir=str(tmp_path / "relay"),
        policy=QueuePolicy(poll_interval=60.0),
        listen=postgres_dsn,
    )
    other_node = PostgresQueueStore(postgres_dsn, migrate=False)
    try:
        runner.start()

        async def settle() -> None:  # the first poll done, LISTEN in place
            while not runner._listener.ready.is_set() or runner._claiming:
                await task.deferLater(net.reactor, 0.05, lambda: None)

        net.run(settle())
        source = tmp_path / "incoming"
        source.write_bytes(MESSAGE)
        other_node.add("alice@example.test", ["carol@remote.test"], str(source), time.time())

        async def delivered() -> None:
            while not courier.calls:
                await task.deferLater(net.reactor, 0.05, lambda: None)

        net.run(delivered(), timeout=10)
        assert courier.calls[0][1] == ["carol@remote.test"]
    finally:
        runner.stop()
        pool.stop()
        runner.records.close()
        other_node.close()
