"""A queue over a real spool in tmp_path (or a PostgreSQL database), a scripted courier and a
Clock (no sleeps)."""

from __future__ import annotations

import os
import random

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from tests.support.syncpool import SyncReactor, SyncThreadPool
from txmailhost.queue.claims import SharedQueue
from txmailhost.queue.interfaces import DeliveryResult, ICourier
from txmailhost.queue.postgres import PostgresQueueStore
from txmailhost.queue.scheduler import Queue, QueuePolicy
from txmailhost.queue.spool import Spool

OK = DeliveryResult.delivered("250 2.0.0 ok", "mx.remote.test")
GREYLISTED = DeliveryResult.temporary("4.7.1", "451 4.7.1 greylisted", "mx.remote.test")
NO_USER = DeliveryResult.permanent("5.1.1", "550 5.1.1 no such user", "mx.remote.test")

MESSAGE = (
    b"Return-Path: <alice@example.test>\r\n"
    b"Received: from client by mx.example.test\r\n"
    b"From: alice@example.test\r\nSubject: outbound\r\n\r\nhello\r\n"
)


@implementer(ICourier)
class ScriptedCourier:
    """Answers each delivery with the next scripted result (``"hold"``: a Deferred to fire)."""

    def __init__(self, *script: DeliveryResult | str) -> None:
        self.script = list(script)
        self.calls: list[tuple] = []
        self.wishes: list[tuple] = []
        self.held: list[tuple[Deferred, list[str]]] = []

    def deliver(self, sender, recipients, message_path, domain, age, options=None, dsn=None):
        self.wishes.append((options, dsn))
        with open(message_path, "rb") as f:
            self.calls.append((sender, list(recipients), domain, age, f.read()))
        step = self.script.pop(0) if self.script else OK
        if step == "hold":
            d: Deferred = Deferred()
            self.held.append((d, list(recipients)))
            return d
        if isinstance(step, Exception):
            raise step
        return succeed({r: step for r in recipients})

    def release(self, result: DeliveryResult = OK) -> None:
        d, recipients = self.held.pop(0)
        d.callback({r: result for r in recipients})


class Harness:
    """``dsn``: the queue in that PostgreSQL database (``SharedQueue``), else the file spool;
    ``records`` reads either (``IQueueRecords``)."""

    def __init__(
        self,
        tmp_path,
        courier: ScriptedCourier | None = None,
        dsn: str | None = None,
        lease: float = 120.0,
        **policy,
    ) -> None:
        self.tmp_path = tmp_path
        self.dsn = dsn
        self.lease = lease
        self.clock = SyncReactor()
        self.clock.advance(1_000_000)  # a realistic, non-zero "now"
        self.spool = Spool(str(tmp_path / "queue"))
        self.spool.prepare()
        self.records = PostgresQueueStore(dsn, clock=self.clock.seconds) if dsn else self.spool
        self.courier = courier or ScriptedCourier()
        self.dsns: list[tuple[str, bytes]] = []
        policy.setdefault("jitter", 0.0)
        self.queue = self.make_queue(QueuePolicy(**policy))
        self.queue.start()
        self.clock.advance(0)
        self._n = 0

    def make_queue(self, policy: QueuePolicy) -> Queue:
        async def return_to_sender(address: str, data: bytes) -> None:
            self.dsns.append((address, data))

        if self.dsn:
            return SharedQueue(
                self.records,
                self.courier,
                return_to_sender,
                self.clock,
                SyncThreadPool(),
                hostname="mx.example.test",
                work_dir=str(self.tmp_path / "queue" / "relay"),
                policy=policy,
                lease=self.lease,
                rng=random.Random(1),
            )
        return Queue(
            self.spool,
            self.courier,
            return_to_sender,
            self.clock,
            SyncThreadPool(),
            hostname="mx.example.test",
            policy=policy,
            rng=random.Random(1),
        )

    def incoming(self, data: bytes = MESSAGE) -> str:
        self._n += 1
        directory = self.tmp_path / "incoming"
        directory.mkdir(exist_ok=True)
        path = directory / f"INCOMING{self._n:04d}"
        path.write_bytes(data)
        return str(path)

    def submit(self, recipients=("carol@remote.test",), sender="alice@example.test", data=MESSAGE):
        results: list = []
        self.queue.submit(sender, list(recipients), self.incoming(data)).addBoth(results.append)
        assert results and isinstance(results[0], str), results
        self.clock.advance(0)  # the first attempt is scheduled "now"
        return results[0]

    def restart(self, **policy) -> None:
        self.queue.stop()
        policy.setdefault("jitter", 0.0)
        self.queue = self.make_queue(QueuePolicy(**policy))
        self.queue.start()
        self.clock.advance(0)

    def queued_ids(self) -> list[str]:
        if self.dsn:
            return self.records.ids()
        return sorted(n[:-5] for n in os.listdir(self.spool.env_dir) if n.endswith(".json"))

    def request(self, kind: str, queue_id: str | None = None) -> None:
        """What ``txmailhost queue KIND ID`` does, then the runner's next poll."""
        self.records.request(kind, queue_id)
        self.clock.advance(self.queue.policy.poll_interval)
