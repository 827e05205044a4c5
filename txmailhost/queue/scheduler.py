"""The queue manager: when each queued message is tried, how many at once, and what follows.

Model (Postfix's qmgr, chasquid's queue/courier split, mox's "record the attempt before
dialing"):

- The unit of work is a *job*: one message and one destination domain. Each job is one
  delivery attempt, one Deferred, handed to the courier with the recipients of that domain
  that are due.
- Jobs wait in per-domain lines and start round-robin across domains, at most
  ``max_connections`` at once overall and ``max_per_domain`` per domain, so one slow domain
  can't hold the whole queue and one big mailing can't hammer one server.
- Before the courier is called, the attempt is recorded on disk with its next retry time, so a
  crash or restart never turns into an immediate re-delivery storm.
- After a temporary failure a recipient is retried with exponential backoff (``retry_min``
  doubling up to ``retry_max``, with jitter, like Postfix's minimal/maximal_backoff_time).
  The recipients of one attempt share one retry time, so they stay one transaction.
  After ``max_lifetime`` it fails with 5.4.7 (RFC 3463 3.5). Once, after ``delay_warning``,
  the sender is told that delivery is late (RFC 3464 ``Action: delayed``).
- Permanent failures, expiry and admin bounces produce one DSN per event (``bounce.py``), never
  for the null sender. A message with more than ``max_hops`` Received: fields is looping and
  bounces with 5.4.6 without being sent (RFC 5321 6.3).
- On start, overdue messages are spread over a short window instead of all firing at once.

Time comes from the injected reactor (``IReactorTime``), so tests drive retries with a Clock.
"""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txmailhost.fdlimit import ShortageWarning
from txmailhost.ops import metrics
from txmailhost.queue import bounce
from txmailhost.queue.interfaces import (
    DeliveryResult,
    ICourier,
    MessageOptions,
    Outcome,
    RecipientOptions,
)
from txmailhost.queue.spool import (
    BOUNCED,
    DEFERRED,
    DELIVERED,
    PENDING,
    Envelope,
    Recipient,
    Spool,
    read_header,
    read_whole,
)

log = Logger()

ReturnToSender = Callable[[str, bytes], Awaitable[None]]

# Which NOTIFY value asks for each kind of report (RFC 3461 4.1).
_WISH = {
    bounce.FAILED: "FAILURE",
    bounce.DELAYED: "DELAY",
    bounce.RELAYED: "SUCCESS",
    bounce.DELIVERED: "SUCCESS",
}


@dataclass(frozen=True)
class QueuePolicy:
    """The scheduling settings (``[queue]`` in the config); times in seconds."""

    retry_min: float = 300.0
    retry_max: float = 4000.0
    max_lifetime: float = 5 * 86400.0
    delay_warning: float = 4 * 3600.0  # 0 disables delay warnings
    max_connections: int = 100
    max_per_domain: int = 20
    max_hops: int = 50
    jitter: float = 0.1
    startup_spread: float = 60.0
    poll_interval: float = 1.0
    # RET=FULL returns the whole message in a failure DSN up to this size, else its headers
    return_full_limit: int = 1024 * 1024


class Queue:
    """Spooled remote mail and the schedule that delivers it."""

    def __init__(
        self,
        spool: Spool,
        courier: ICourier,
        return_to_sender: ReturnToSender | None,
        reactor: Any,
        pool: Any,
        *,
        hostname: str,
        policy: QueuePolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spool = spool
        self.courier = courier
        self.return_to_sender = return_to_sender
        self.hostname = hostname
        self.policy = policy or QueuePolicy()
        self._reactor = reactor
        self._pool = pool
        self._random = rng or random.Random()
        self._envelopes: dict[str, Envelope] = {}
        self._locks: dict[str, DeferredLock] = {}
        self._timers: dict[str, Any] = {}  # queue_id -> IDelayedCall of its next due time
        self._lines: dict[str, deque[str]] = {}  # domain -> queue ids waiting for a slot
        self._turn: deque[str] = deque()  # domains with waiting jobs, round-robin
        self._waiting: set[tuple[str, str]] = set()
        self._running: set[tuple[str, str]] = set()
        self._per_domain: dict[str, int] = {}
        self._poll_call: Any = None
        self._shortage = ShortageWarning(log, reactor.seconds)  # out of open files, each poll
        self._stopped = True
        self._loading = False
        self._load_waiters: list[Deferred[None]] = []
        self.idle = Deferred()  # tests: fires (and is replaced) whenever nothing is running
        # False in a worker process that only spools (workers/): the queue runner in worker 0
        # delivers, and ``spooled_elsewhere(queue_id)`` tells it at once (the spool's adopt
        # request file is the durable fallback it polls).
        self.runner = True
        self.spooled_elsewhere: Callable[[str], None] | None = None

    # -- public API -----------------------------------------------------------------------------

    def submit(
        self,
        sender: str | None,
        recipients: list[str],
        source_path: str,
        queue_id: str | None = None,
        options: MessageOptions | None = None,
        recipient_options: Mapping[str, RecipientOptions] | None = None,
    ) -> Deferred[str]:
        """Spool a copy of the fsync'd ``source_path`` for ``recipients``; fires with its id
        (``queue_id`` when that is free) once the message, the envelope and their directories
        are durable (invariant 1).

        While the spool is being loaded at start-up, submissions wait for the load: it sweeps
        message files without an envelope, which a half-done submission looks like.
        """
        recipients = list(recipients)

        def spool(_: object) -> Deferred[Envelope]:
            now = self._reactor.seconds()
            return self._in_pool(
                self._add,
                sender,
                recipients,
                source_path,
                now,
                queue_id,
                options,
                recipient_options,
            )

        return self._when_loaded().addCallback(spool).addCallback(self._queued, recipients)

    def _queued(self, envelope: Envelope, recipients: list[str]) -> str:
        """A message is durably queued: log it, and see it delivered: by this runner
        (``_adopt``), or by the worker process that runs one (``spooled_elsewhere``)."""
        log.info(
            "queued {queue_id} from <{sender}> for {rcpts}",
            queue_id=envelope.queue_id,
            sender=envelope.sender or "",
            rcpts=", ".join(recipients),
        )
        if self.runner:
            self._adopt(envelope)
        elif self.spooled_elsewhere is not None:
            self.spooled_elsewhere(envelope.queue_id)
        return envelope.queue_id

    def _add(self, *args: Any) -> Envelope:
        envelope = self.spool.add(*args)
        if not self.runner:
            self.spool.note_adoption(envelope.queue_id)
        return envelope

    def adopt(self, queue_id: str) -> Deferred[None]:
        """Take ``queue_id``, spooled by another worker process, into the schedule (the runner).

        Loaded under the message's lock, so a message just delivered and being removed is
        found gone rather than taken again; one already known is left alone."""
        return Deferred.fromCoroutine(self._adopt_spooled(queue_id))

    async def _adopt_spooled(self, queue_id: str) -> None:
        if not self.runner or self._stopped or queue_id in self._envelopes:
            return
        try:
            envelope = await self._locked(queue_id, self.spool.load, queue_id)
        except FileNotFoundError:
            self._locks.pop(queue_id, None)
            return  # delivered (or deleted) already
        if queue_id not in self._envelopes and not self._stopped:
            self._adopt(envelope)

    def _when_loaded(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self._loading:
            self._load_waiters.append(d)
        else:
            d.callback(None)
        return d

    def start(self) -> Deferred[None]:
        """Load the spool and schedule everything in it; overdue messages are spread out."""
        self._stopped = False
        if not self.runner:
            return self._in_pool(self.spool.prepare)
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        self._loading = True
        try:
            envelopes, problems = await self._in_pool(self.spool.load_all)
        finally:
            self._loading = False
            waiters, self._load_waiters = self._load_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        for problem in problems:
            log.warn("queue: {problem}", problem=problem)
        now = self._reactor.seconds()
        overdue = [e for e in envelopes if self._due_time(e) <= now]
        spread = min(self.policy.startup_spread, len(overdue) / 50.0)
        for envelope in overdue:
            when = now + self._random.uniform(0, spread)
            for r in envelope.active():
                r.next_attempt = max(r.next_attempt, when)
        for envelope in envelopes:
            self._adopt(envelope)
        log.info("queue: {n} message(s) loaded from the spool", n=len(envelopes))
        self._poll_call = self._reactor.callLater(0, self._poll)

    def stop(self) -> None:
        """Stop scheduling; attempts in flight finish and are recorded."""
        self._stopped = True
        for call in [*self._timers.values(), self._poll_call]:
            if call is not None and call.active():
                call.cancel()
        self._timers.clear()

    def envelopes(self) -> list[Envelope]:
        return list(self._envelopes.values())

    def flush(self) -> None:
        """Try every queued message now (``postqueue -f``)."""
        for queue_id in list(self._envelopes):
            self.retry(queue_id)

    def retry(self, queue_id: str) -> bool:
        envelope = self._envelopes.get(queue_id)
        if envelope is None:
            return False
        now = self._reactor.seconds()
        for r in envelope.active():
            r.next_attempt = now
        self._schedule(envelope)
        return True

    def delete(self, queue_id: str) -> Deferred[bool]:
        """Remove a message without a DSN (``postsuper -d``)."""
        envelope = self._forget(queue_id)
        if envelope is None:
            return Deferred.fromCoroutine(self._false())
        log.info("queue: {queue_id} deleted by the administrator", queue_id=queue_id)
        return self._locked(queue_id, self.spool.remove, queue_id).addCallback(lambda _: True)

    def bounce(self, queue_id: str) -> Deferred[bool]:
        """Fail every undelivered recipient now, with a DSN to the sender."""
        return Deferred.fromCoroutine(self._admin_bounce(queue_id))

    def hold(self, queue_id: str) -> Deferred[bool]:
        """Keep a message without trying it (``postsuper -h``); an attempt in flight ends."""
        return Deferred.fromCoroutine(self._set_held(queue_id, True, "held"))

    def release(self, queue_id: str) -> Deferred[bool]:
        """Undo ``hold``: the message is tried when its recipients are due (``postsuper -H``)."""
        return Deferred.fromCoroutine(self._set_held(queue_id, False, "released"))

    def requeue(self, queue_id: str) -> Deferred[bool]:
        """Start over (``postsuper -r``): released, every undelivered recipient pending with
        no attempts counted, tried now."""
        return Deferred.fromCoroutine(self._set_held(queue_id, False, "requeued", fresh=True))

    async def _set_held(self, queue_id: str, held: bool, what: str, fresh: bool = False) -> bool:
        envelope = self._envelopes.get(queue_id)
        if envelope is None:
            return False
        envelope.held = held
        if fresh:
            now = self._reactor.seconds()
            for r in envelope.active():
                r.state, r.attempts, r.next_attempt = PENDING, 0, now
                r.status = r.diagnostic = r.remote_mta = ""
        await self._locked(queue_id, self.spool.save, envelope)
        if self._envelopes.get(queue_id) is envelope:
            self._schedule(envelope)  # held: cancels the timer; else arms it
        log.info("queue: {queue_id} {what} by the administrator", queue_id=queue_id, what=what)
        return True

    # -- scheduling -----------------------------------------------------------------------------

    async def _false(self) -> bool:
        return False

    def _in_pool(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return threads.deferToThreadPool(self._reactor, self._pool, f, *args)

    def _locked(self, queue_id: str, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run a spool write for one message in the pool, one at a time per message."""
        lock = self._locks.setdefault(queue_id, DeferredLock())
        return lock.run(self._in_pool, f, *args)

    def _adopt(self, envelope: Envelope) -> None:
        self._envelopes[envelope.queue_id] = envelope
        self._schedule(envelope)

    def _forget(self, queue_id: str) -> Envelope | None:
        call = self._timers.pop(queue_id, None)
        if call is not None and call.active():
            call.cancel()
        return self._envelopes.pop(queue_id, None)

    @staticmethod
    def _due_time(envelope: Envelope) -> float:
        if envelope.held:
            return float("inf")
        return min((r.next_attempt for r in envelope.active()), default=float("inf"))

    def _schedule(self, envelope: Envelope) -> None:
        """(Re)arm the message's timer for its earliest due recipient."""
        if self._stopped:
            return
        queue_id = envelope.queue_id
        call = self._timers.pop(queue_id, None)
        if call is not None and call.active():
            call.cancel()
        due = self._due_time(envelope)
        if due == float("inf"):
            return
        delay = max(0.0, due - self._reactor.seconds())
        self._timers[queue_id] = self._reactor.callLater(delay, self._due, queue_id)

    def _due(self, queue_id: str) -> None:
        self._timers.pop(queue_id, None)
        envelope = self._envelopes.get(queue_id)
        if envelope is None or envelope.held:
            return
        now = self._reactor.seconds()
        for domain in sorted({r.domain for r in envelope.active() if r.next_attempt <= now}):
            job = (queue_id, domain)
            if job in self._waiting or job in self._running:
                continue
            self._waiting.add(job)
            if domain not in self._lines:
                self._lines[domain] = deque()
                self._turn.append(domain)
            self._lines[domain].append(queue_id)
        self._pump()

    def _pump(self) -> None:
        """Start waiting jobs, round-robin across domains, within both concurrency limits."""
        blocked = 0
        while self._turn and len(self._running) < self.policy.max_connections:
            if blocked >= len(self._turn):
                break  # every waiting domain is at its own limit
            domain = self._turn.popleft()
            if self._per_domain.get(domain, 0) >= self.policy.max_per_domain:
                self._turn.append(domain)
                blocked += 1
                continue
            blocked = 0
            line = self._lines[domain]
            queue_id = line.popleft()
            if line:
                self._turn.append(domain)
            else:
                del self._lines[domain]
            job = (queue_id, domain)
            self._waiting.discard(job)
            self._running.add(job)
            self._per_domain[domain] = self._per_domain.get(domain, 0) + 1
            d = Deferred.fromCoroutine(self._attempt(queue_id, domain))
            d.addErrback(self._job_failed, job)
            d.addBoth(self._job_done, job)

    def _job_failed(self, failure: Any, job: tuple[str, str]) -> None:
        """An attempt crashed (a disk error saving the envelope, a bug): log it and keep the
        message scheduled at its recorded next attempt, so nothing is stranded."""
        log.failure("queue job {job} crashed", failure, job=job)
        envelope = self._envelopes.get(job[0])
        if envelope is not None:
            self._schedule(envelope)

    def _job_done(self, _: object, job: tuple[str, str]) -> None:
        self._running.discard(job)
        domain = job[1]
        self._per_domain[domain] -= 1
        if not self._per_domain[domain]:
            del self._per_domain[domain]
        self._pump()
        if not self._running and not self._waiting:
            idle, self.idle = self.idle, Deferred()
            idle.callback(None)

    def _message_path(self, envelope: Envelope) -> str:
        """Where the courier and the DSN read the message from."""
        return self.spool.message_path(envelope.queue_id)

    def _backoff(self, attempts: int) -> float:
        base = min(self.policy.retry_max, self.policy.retry_min * 2 ** max(0, attempts - 1))
        return base * self._random.uniform(1 - self.policy.jitter, 1 + self.policy.jitter)

    # -- one attempt ----------------------------------------------------------------------------

    async def _attempt(self, queue_id: str, domain: str) -> None:
        envelope = self._envelopes.get(queue_id)
        if envelope is None:
            return
        now = self._reactor.seconds()
        due = [r for r in envelope.active() if r.domain == domain and r.next_attempt <= now]
        if not due:
            return
        # Recorded before dialing: a crash now retries later, not at once. One backoff for
        # the job: recipients that fail together are retried together, in one transaction
        # (each drawing its own jitter made ten recipients ten transactions, and their expiry
        # ten DSNs).
        for r in due:
            r.attempts += 1
        retry_at = now + self._backoff(max(r.attempts for r in due))
        for r in due:
            r.next_attempt = retry_at
        await self._locked(queue_id, self.spool.save, envelope)
        results = await self._deliver(envelope, due, now)
        if self._envelopes.get(queue_id) is not envelope:
            return  # deleted or bounced by the administrator meanwhile
        now = self._reactor.seconds()
        failed: list[Recipient] = []
        relayed: list[Recipient] = []
        for r in due:
            if not r.active:
                continue
            result = results.get(r.address) or DeliveryResult.temporary(
                "4.3.0", "no result for this recipient"
            )
            self._record(envelope, r, result, now, failed)
            if result.outcome is Outcome.DELIVERED and result.relayed:
                relayed.append(r)
        if relayed:  # RFC 3461 6.2.3: the next hop won't honour NOTIFY=SUCCESS, so we do
            await self._notify(envelope, relayed, bounce.RELAYED, now)
        await self._settle(envelope, failed, now)

    async def _deliver(
        self, envelope: Envelope, due: list[Recipient], now: float
    ) -> dict[str, DeliveryResult]:
        if envelope.hops > self.policy.max_hops:
            loop = DeliveryResult.permanent(
                "5.4.6",
                f"mail loop: {envelope.hops} Received: header fields (limit {self.policy.max_hops})",
            )
            return {r.address: loop for r in due}
        try:
            return await self.courier.deliver(
                envelope.sender,
                [r.address for r in due],
                self._message_path(envelope),
                due[0].domain,
                now - envelope.arrival,
                envelope.message_options(),
                {r.address: r.dsn_options() for r in due},
            )
        except Exception as e:  # a courier bug must not lose the message: retry later
            log.failure("courier failed for {queue_id}", queue_id=envelope.queue_id)
            failure = DeliveryResult.temporary("4.3.0", f"internal error: {e}")
            return {r.address: failure for r in due}

    def _record(
        self,
        envelope: Envelope,
        r: Recipient,
        result: DeliveryResult,
        now: float,
        failed: list[Recipient],
    ) -> None:
        r.status, r.diagnostic, r.remote_mta = result.status, result.diagnostic, result.remote_mta
        fields = {"queue_id": envelope.queue_id, "rcpt": r.address, "reply": result.diagnostic}
        metrics.delivery_attempt(result.outcome.value, r.domain)
        if result.outcome is Outcome.DELIVERED:
            r.state = DELIVERED
            metrics.message("relayed", envelope.size)
            log.info("delivered {queue_id} to <{rcpt}>: {reply}", **fields)
        elif result.outcome is Outcome.PERMANENT:
            failed.append(r)
            log.info("{queue_id} to <{rcpt}> failed permanently: {reply}", **fields)
        elif now - envelope.arrival >= self.policy.max_lifetime:
            r.status = "5.4.7"
            r.diagnostic = f"delivery time expired; last error: {result.diagnostic}"
            failed.append(r)
            log.info("{queue_id} to <{rcpt}> expired: {reply}", **fields)
        else:
            r.state = DEFERRED
            log.info(
                "{queue_id} to <{rcpt}> deferred until {when:.0f}: {reply}",
                when=r.next_attempt,
                **fields,
            )

    async def _settle(self, envelope: Envelope, failed: list[Recipient], now: float) -> None:
        """Bounce what failed, warn of delays once, then save or remove the envelope."""
        if failed and await self._notify(envelope, failed, bounce.FAILED, now):
            for r in failed:
                r.state = BOUNCED
            metrics.message("bounced", envelope.size, len(failed))
        elif failed:
            for r in failed:  # the DSN couldn't be handed over: keep them, try again later
                r.state = DEFERRED
        deferred = [r for r in envelope.active() if r.state == DEFERRED]
        late = now - envelope.arrival >= self.policy.delay_warning > 0
        if deferred and late and not envelope.delay_warned:
            envelope.delay_warned = await self._notify(envelope, deferred, bounce.DELAYED, now)
        if self._envelopes.get(envelope.queue_id) is not envelope:
            return
        if envelope.active():
            await self._locked(envelope.queue_id, self.spool.save, envelope)
            self._schedule(envelope)
        else:
            self._forget(envelope.queue_id)
            await self._locked(envelope.queue_id, self.spool.remove, envelope.queue_id)
            self._locks.pop(envelope.queue_id, None)
            log.info("queue: {queue_id} done, removed", queue_id=envelope.queue_id)

    async def _notify(
        self, envelope: Envelope, recipients: list[Recipient], action: str, now: float
    ) -> bool:
        """Send a DSN about those of ``recipients`` whose NOTIFY wants one (RFC 3461 4.1:
        FAILURE and DELAY unless they said otherwise; SUCCESS for delivered/relayed); True
        once it is handed over (or not needed)."""
        if envelope.sender is None:
            log.info("{queue_id}: no DSN for the null sender", queue_id=envelope.queue_id)
            return True
        wish = _WISH[action]
        recipients = [r for r in recipients if r.dsn_options().wants(wish)]
        if self.return_to_sender is None or not recipients:
            return True
        path = self._message_path(envelope)
        try:
            headers = await self._in_pool(read_header, path)
            full = None
            # RFC 8689 5: RET=FULL is disregarded for a REQUIRETLS message; the report may go
            # where TLS is not required, so it carries the header section only.
            returnable = envelope.body != "BINARYMIME" and not envelope.requiretls
            if action == bounce.FAILED and envelope.ret == "FULL" and returnable:
                full = await self._in_pool(read_whole, path, self.policy.return_full_limit)
            dsn = bounce.build_dsn(
                self.hostname,
                envelope,
                recipients,
                headers,
                action=action,
                now=now,
                retry_until=envelope.arrival + self.policy.max_lifetime,
                full_message=full,
            )
            await self.return_to_sender(envelope.sender, dsn)
        except Exception:
            log.failure("DSN for {queue_id} could not be sent", queue_id=envelope.queue_id)
            return False
        log.info(
            "{queue_id}: {action} DSN sent to <{sender}>",
            queue_id=envelope.queue_id,
            action=action,
            sender=envelope.sender,
        )
        return True

    async def _admin_bounce(self, queue_id: str) -> bool:
        envelope = self._envelopes.get(queue_id)
        if envelope is None:
            return False
        failed = envelope.active()
        for r in failed:
            r.status, r.diagnostic = "5.0.0", "bounced by the mail administrator"
        log.info("queue: {queue_id} bounced by the administrator", queue_id=queue_id)
        await self._settle(envelope, failed, self._reactor.seconds())
        return True

    # -- requests from the CLI ------------------------------------------------------------------

    def _poll(self) -> None:
        d = Deferred.fromCoroutine(self._apply_requests())
        d.addErrback(self._poll_failed)
        d.addBoth(self._next_poll)

    def _poll_failed(self, failure: Failure) -> None:
        if not self._shortage.handled(failure, "queue: reading CLI requests"):
            log.failure("queue: reading CLI requests failed", failure)

    def _next_poll(self, _: object) -> None:
        if not self._stopped:
            self._poll_call = self._reactor.callLater(self.policy.poll_interval, self._poll)

    async def _apply_requests(self) -> None:
        if not os.path.isdir(self.spool.control_dir):
            return
        for kind, queue_id in await self._in_pool(self.spool.take_requests):
            if kind != "adopt":  # one per message spooled by another worker: not news
                log.info("queue: {kind} {queue_id} requested", kind=kind, queue_id=queue_id or "")
            if kind == "flush":
                self.flush()
            elif kind == "retry" and queue_id:
                self.retry(queue_id)
            elif kind == "delete" and queue_id:
                await self.delete(queue_id)
            elif kind == "bounce" and queue_id:
                await self.bounce(queue_id)
            elif kind == "hold" and queue_id:
                await self.hold(queue_id)
            elif kind == "release" and queue_id:
                await self.release(queue_id)
            elif kind == "requeue" and queue_id:
                await self.requeue(queue_id)
            elif kind == "adopt" and queue_id:
                await self.adopt(queue_id)
