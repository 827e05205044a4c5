"""The relay queue shared by several nodes: each runner claims due recipients from PostgreSQL.

Why not the file queue's model (every message in memory, one timer each): with one database
and several nodes, no node may hold the schedule alone — a message queued on node A must be
delivered by B when A is gone. So a runner keeps nothing but its deliveries in flight, and
every ``poll_interval`` (and at once when this node queues a message or a delivery ends)
asks the database for due work: ``PostgresQueueStore.claim`` leases the due recipients of
up to as many jobs (one message, one domain) as it has free connections, skipping rows
another node is claiming (``FOR UPDATE SKIP LOCKED``). While deliveries run it renews its
leases every third of ``lease``; a node that dies stops renewing, and its recipients are
claimed again by any node once both their lease and their next attempt have passed.

Every node's runner also listens (``LISTEN txmailhost_queue``): a message queued, or an
administrator's request, on any node is claimed within milliseconds, not at the next poll.

Everything else is the file queue's (``scheduler.Queue``, which this extends): the retry
backoff, the courier call, the loop limit, what counts as expired, the DSNs and the delay
warning, the per-domain limit (here per node). The message is written from the database to a
file under ``DATA/queue/relay/`` for the courier and removed after the attempt.

Exactly once: a recipient's result is written only while this node holds its lease
(``record``), and a lease outlives every attempt while its node lives. What no queue avoids
remains: a node that dies after the remote server accepted and before the result was written
delivers that recipient again when another node retakes it (RFC 5321 6.1 accepts duplicates
over losses).

Administration goes straight to the database (``PostgresQueueStore.request``): any node, or
the CLI, changes the rows, and every runner's next claim sees the change. A requested bounce
is carried out by the runner that claims the message next: it fails the recipients with 5.0.0
and sends the DSN, without calling the courier.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from txmailhost.ops import metrics
from txmailhost.outage import OutageLog
from txmailhost.queue import bounce
from txmailhost.queue.interfaces import (
    DeliveryResult,
    ICourier,
    IRelayQueue,
    MessageOptions,
    Outcome,
    RecipientOptions,
)
from txmailhost.queue.postgres import Claimed, PostgresQueueStore, queue_listener
from txmailhost.queue.scheduler import Queue, QueuePolicy, ReturnToSender
from txmailhost.queue.spool import BOUNCED, DEFERRED, Envelope, Recipient

log = Logger()

SNAPSHOT_AGE = 15.0  # seconds the envelopes shown to the metrics may be old
RECORD_RETRY = 0.5  # seconds before writing a job's results is tried again (doubling)


def node_name() -> str:
    """This runner's lease owner: host, process, and a token new at each start (a restarted
    node does not mistake its predecessor's leases for its own)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@implementer(IRelayQueue)
class SharedQueue(Queue):
    """The relay queue in PostgreSQL; any number of nodes run one each."""

    def __init__(
        self,
        records: PostgresQueueStore,
        courier: ICourier,
        return_to_sender: ReturnToSender | None,
        reactor: Any,
        pool: Any,
        *,
        hostname: str,
        work_dir: str,
        policy: QueuePolicy | None = None,
        lease: float = 120.0,
        owner: str | None = None,
        rng: Any = None,
        listen: str = "",
    ) -> None:
        super().__init__(
            None,  # type: ignore[arg-type]  # no spool: the records are in the database
            courier,
            return_to_sender,
            reactor,
            pool,
            hostname=hostname,
            policy=policy,
            rng=rng,
        )
        self.records = records
        self.work_dir = work_dir
        self.lease = lease
        self.owner = owner or node_name()
        self._paths: dict[int, str] = {}  # id(envelope) -> its message file during a job
        self._leased: dict[int, list[int]] = {}  # id(job) -> its rows, while it runs
        self._claiming = False
        self._again = False
        # a database outage: one traceback a poller, then a line a minute, then "works again"
        self._claim_outage = OutageLog(
            log, reactor.seconds, "queue: claiming from the shared queue"
        )
        self._read_outage = OutageLog(log, reactor.seconds, "queue: reading the shared queue")
        self._renew_outage = OutageLog(log, reactor.seconds, "queue: renewing leases")
        self._renew_call: Any = None
        self._snapshot: list[Envelope] = []
        self._snapshot_time = float("-inf")
        self._refreshing = False
        # ``listen``: the database's DSN, to be woken by other nodes' NOTIFY (the server);
        # "": polls only (tests on a Clock).
        self._listener = queue_listener(listen, reactor, self._kick) if listen else None

    # -- IRelayQueue ----------------------------------------------------------------------------

    def submit(
        self,
        sender: str | None,
        recipients: list[str],
        source_path: str,
        queue_id: str | None = None,
        options: MessageOptions | None = None,
        recipient_options: Mapping[str, RecipientOptions] | None = None,
    ) -> Deferred[str]:
        """Insert the message and its recipients in one transaction; fires after the COMMIT
        (durable: ``synchronous_commit``), so the SMTP server's 250 follows it."""
        now = self._reactor.seconds()
        d = self._in_pool(
            self.records.add,
            sender,
            list(recipients),
            source_path,
            now,
            queue_id,
            options,
            recipient_options,
        )
        return d.addCallback(self._queued, recipients)

    def start(self) -> Deferred[None]:
        self._stopped = False
        if not self.runner:
            return succeed(None)
        os.makedirs(self.work_dir, exist_ok=True)
        for name in os.listdir(self.work_dir):  # files of attempts cut short by a crash
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.work_dir, name))
        log.info("queue: runner {owner} claims from the shared queue", owner=self.owner)
        self._poll_call = self._reactor.callLater(0, self._poll)
        self._renew_call = self._reactor.callLater(self.lease / 3, self._renew)
        if self._listener is not None:
            self._listener.start()
        return succeed(None)

    def stop(self) -> None:
        super().stop()
        if self._renew_call is not None and self._renew_call.active():
            self._renew_call.cancel()
        if self._listener is not None:
            self._listener.stop()

    def adopt(self, queue_id: str) -> Deferred[None]:
        """Another worker process queued a message: claim now rather than at the next poll."""
        self._kick()
        return succeed(None)

    def envelopes(self) -> list[Envelope]:
        """The queue as read at most ``SNAPSHOT_AGE`` seconds ago (the metrics read this in
        the reactor thread, which must not wait for the database); refreshed behind."""
        now = self._reactor.seconds()
        if now - self._snapshot_time > SNAPSHOT_AGE and not self._refreshing:
            self._refreshing = True

            def keep(envelopes: list[Envelope]) -> None:
                self._snapshot, self._snapshot_time = envelopes, self._reactor.seconds()

            d = self._in_pool(self.records.envelopes).addCallback(keep)
            d.addCallbacks(lambda _: self._read_outage.succeeded(), self._read_outage.failed)
            d.addBoth(lambda _: setattr(self, "_refreshing", False))
        return list(self._snapshot)

    # -- administration: straight to the database -----------------------------------------------

    def _ask(self, kind: str, queue_id: str | None) -> Deferred[bool]:
        d = self._in_pool(self.records.request, kind, queue_id, self._reactor.seconds())
        return d.addCallback(lambda found: (self._kick(), found)[1])

    def flush(self) -> None:  # type: ignore[override]
        self._ask("flush", None)

    def retry(self, queue_id: str) -> Deferred[bool]:  # type: ignore[override]
        return self._ask("retry", queue_id)

    def delete(self, queue_id: str) -> Deferred[bool]:
        return self._ask("delete", queue_id)

    def bounce(self, queue_id: str) -> Deferred[bool]:
        return self._ask("bounce", queue_id)

    def hold(self, queue_id: str) -> Deferred[bool]:
        return self._ask("hold", queue_id)

    def release(self, queue_id: str) -> Deferred[bool]:
        return self._ask("release", queue_id)

    def requeue(self, queue_id: str) -> Deferred[bool]:
        return self._ask("requeue", queue_id)

    # -- claiming -------------------------------------------------------------------------------

    def _poll(self) -> None:
        """Every ``poll_interval``: claim what is due (the file queue reads CLI requests here)."""
        d = Deferred.fromCoroutine(self._claim())
        d.addCallbacks(lambda _: self._claim_outage.succeeded(), self._claim_outage.failed)
        d.addBoth(self._next_poll)

    def _adopt(self, envelope: Envelope) -> None:
        """A message this node queued: the database holds the schedule, so claim now."""
        self._kick()

    def _kick(self) -> None:
        if self._stopped or not self.runner:
            return
        d = Deferred.fromCoroutine(self._claim())
        d.addCallbacks(lambda _: self._claim_outage.succeeded(), self._claim_outage.failed)

    def _domain_slots(self, domain: str) -> int:
        return self.policy.max_per_domain - self._per_domain.get(domain, 0)

    async def _claim(self) -> None:
        """Claim jobs while there are free connections and due work; one claim at a time."""
        if self._claiming:
            self._again = True
            return
        self._claiming = True
        try:
            while not self._stopped:
                self._again = False
                free = self.policy.max_connections - len(self._running)
                if free <= 0:
                    break
                jobs = await self._in_pool(
                    self.records.claim,
                    self.owner,
                    self._reactor.seconds(),
                    self.lease,
                    free,
                    self._domain_slots,
                    self._backoff,
                )
                for job in jobs:
                    self._start_job(job)
                if not jobs and not self._again:
                    break
        finally:
            self._claiming = False

    def _start_job(self, job: Claimed) -> None:
        # Keyed by the job's first row too: a message's recipients in one domain can come in
        # two claims (the claim's row limit), each its own job, counted apart.
        key: Any = (job.envelope.queue_id, job.domain, job.rows[0])
        self._running.add(key)
        self._per_domain[job.domain] = self._per_domain.get(job.domain, 0) + 1
        self._leased[id(job)] = job.rows
        d = Deferred.fromCoroutine(self._run_job(job))
        d.addErrback(
            lambda f: log.failure("queue job {job} crashed; its lease will expire", f, job=key)
        )
        d.addBoth(lambda result: (self._leased.pop(id(job), None), result)[1])
        d.addBoth(self._job_done, key)

    def _job_done(self, _: object, job: Any) -> None:
        super()._job_done(_, job)
        self._kick()  # a free connection: take the next due job now

    def _renew(self) -> None:
        """Extend this node's leases while its deliveries run (then every lease / 3)."""

        def again(_: object) -> None:
            if not self._stopped:
                self._renew_call = self._reactor.callLater(self.lease / 3, self._renew)

        rows = [row for job_rows in self._leased.values() for row in job_rows]
        if rows:
            until = self._reactor.seconds() + self.lease
            d = self._in_pool(self.records.renew, self.owner, until, rows)
            d.addCallbacks(lambda _: self._renew_outage.succeeded(), self._renew_outage.failed)
            d.addBoth(again)
        else:
            again(None)

    # -- one job --------------------------------------------------------------------------------

    def _message_path(self, envelope: Envelope) -> str:
        return self._paths[id(envelope)]

    async def _run_job(self, job: Claimed) -> None:
        envelope = job.envelope
        path = os.path.join(self.work_dir, f"{envelope.queue_id}.{secrets.token_hex(4)}")
        self._paths[id(envelope)] = path
        try:
            await self._in_pool(self.records.write_message, job.message_id, path)
            failed: list[Recipient] = []
            if job.bounce_requested:
                now = self._reactor.seconds()
                for r in job.due:
                    r.status, r.diagnostic = "5.0.0", "bounced by the mail administrator"
                failed = list(job.due)
                log.info("queue: {queue_id} bounced by the administrator", **_ids(envelope))
            else:
                results = await self._deliver(envelope, job.due, self._reactor.seconds())
                now = self._reactor.seconds()
                relayed: list[Recipient] = []
                for r in job.due:
                    result = results.get(r.address) or DeliveryResult.temporary(
                        "4.3.0", "no result for this recipient"
                    )
                    self._record(envelope, r, result, now, failed)
                    if result.outcome is Outcome.DELIVERED and result.relayed:
                        relayed.append(r)
                if relayed:  # RFC 3461 6.2.3, as in the file queue
                    await self._notify(envelope, relayed, bounce.RELAYED, now)
            await self._settle_job(job, failed, now)
        finally:
            self._paths.pop(id(envelope), None)
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _settle_job(self, job: Claimed, failed: list[Recipient], now: float) -> None:
        """Write the results (the failed keep their lease until their DSN is handed over:
        invariant 2), then the DSN, the delay warning, and the message's removal when this
        was its last active recipient."""
        envelope = job.envelope
        pairs = list(zip(job.rows, job.due, strict=True))
        lost = await self._recorded(envelope, pairs, failed)
        if failed:
            if await self._notify(envelope, failed, bounce.FAILED, now):
                for r in failed:
                    r.state = BOUNCED
                metrics.message("bounced", envelope.size, len(failed))
            else:
                for r in failed:  # the DSN couldn't be handed over: try again later
                    r.state = DEFERRED
            kept = [(row, r) for row, r in pairs if any(r is f for f in failed)]
            lost += await self._recorded(envelope, kept)
        if lost:
            log.warn(
                "queue: {queue_id}: the lease on {rcpts} was lost during the attempt",
                queue_id=envelope.queue_id,
                rcpts=", ".join(sorted(set(lost))),
            )
        deferred = [r for r in envelope.active() if r.state == DEFERRED]
        late = now - envelope.arrival >= self.policy.delay_warning > 0
        if (
            deferred
            and late
            and not envelope.delay_warned
            and await self._in_pool(self.records.warn_once, job.message_id)
        ):
            envelope.delay_warned = True
            await self._notify(envelope, deferred, bounce.DELAYED, now)
        if await self._in_pool(self.records.remove_if_done, job.message_id):
            log.info("queue: {queue_id} done, removed", **_ids(envelope))

    async def _recorded(
        self,
        envelope: Envelope,
        pairs: list[tuple[int, Recipient]],
        keep: tuple[Recipient, ...] | list[Recipient] = (),
    ) -> list[str]:
        """``records.record``, tried again while the database can't be reached: the remote
        servers have answered, and a result not written down leaves the lease to expire and
        the recipients to be delivered a second time by the next claim. The job's rows stay
        in ``_leased`` meanwhile, so the renewals go on too; a node stopped first gives up
        (its leases expire: the duplicate RFC 5321 6.1 prefers to a loss)."""
        import psycopg

        delay = RECORD_RETRY
        while True:
            try:
                return await self._in_pool(self.records.record, self.owner, pairs, keep)
            except psycopg.OperationalError as e:
                if self._stopped:
                    raise
                log.warn(
                    "queue: {queue_id}: writing the results failed ({error}); again in"
                    " {delay:.1f} s",
                    queue_id=envelope.queue_id,
                    error=" ".join(str(e).split()),
                    delay=delay,
                )
            await deferLater(self._reactor, delay, lambda: None)
            delay = min(delay * 2, max(self.lease / 3, RECORD_RETRY))


def _ids(envelope: Envelope) -> dict[str, str]:
    return {"queue_id": envelope.queue_id}
