"""``Submission``: the one durable hand-off, for every producer of mail (``ISubmission``).

Three ways to durable, chosen per message, each acknowledged only once it is fsync'd
(DESIGN invariant 1):

1. Every recipient local, the message in a spare file and the file system able to carry a
   record: the record (recipients and their wishes) is set on the file before its one fsync,
   and the delivery thread (``local.py``) makes the copies after the ``250`` — the delivery
   agent (``agent.py``) choosing each mailbox then.
2. Remote recipients: the file is fsync'd and spooled in the relay queue (``queue/``), whose
   ``submit`` fires once its copy and envelope are durable.
3. Otherwise (too many recipients for a record, no spare file, no extended attributes):
   local copies are made before the reply: the file's fsync, the links into the mailboxes
   (fsync'd by the store) and the file's removal in one worker trip.

Before any of them, a store that links the copies in after the ``250`` (``IQuotaReservation``,
Maildir) reserves the message's room under each direct recipient's quota, or refuses it
(``QuotaExceeded``: ``452 4.2.2``) when one is full by then; the delivery gives it back.

After a message is handed over, the users it took past 90% of their quota get a notice
(``notices.py``), submitted the same way, and a sender whose RCPT asked for NOTIFY=SUCCESS
gets a ``delivered`` DSN for the local recipients (RFC 3461; the queue reports the remote
ones). Store calls live in ``mailboxes.py``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from txmailhost.delivery import mailboxes
from txmailhost.delivery.agent import DeliveryAgent, LocalRecipient
from txmailhost.delivery.incoming import IncomingMessage, IncomingSpool
from txmailhost.delivery.interfaces import (
    Envelope,
    ISubmission,
    MessageOptions,
    Receipt,
    RecipientOptions,
    SubmissionError,
)
from txmailhost.delivery.local import MAX_RECORD, XATTR, LocalDelivery, SpooledLocal, stored_in
from txmailhost.delivery.notices import quota_crossings, quota_notice
from txmailhost.ops import metrics
from txmailhost.ops.eventlog import PRERENDERED
from txmailhost.routing import Route, RouteKind
from txmailhost.store.interfaces import INBOX

log = Logger()

_NO_WISHES = RecipientOptions()


def quota_limits(envelope: Envelope) -> dict[str, int]:
    """The quota of each direct recipient the RCPT check counted (user -> octets)."""
    return {user: limit for user, (_used, limit) in envelope.quota_usage.items()}


def local_recipients(envelope: Envelope) -> list[LocalRecipient]:
    """The envelope's local routes as the delivery agent's input, without duplicates (the
    first route to a user lends the copy its RCPT's DSN options)."""
    found: list[LocalRecipient] = []
    for route in envelope.routes:
        if route.user:
            recipient = LocalRecipient(
                route.user, route.mailbox, route.user in envelope.junk,
                envelope.recipient_options.get(route.address, _NO_WISHES),
            )  # fmt: skip
            if recipient not in found:
                found.append(recipient)
    return found


@implementer(ISubmission)
class Submission:
    """Built once by ``service.py`` and shared by every producer.

    ``spool`` hands out the files messages are written into; ``queue`` (the relay
    ``Queue``, optional) takes remote recipients; ``local`` (optional) is the delivery thread
    of path 1; ``hostname`` signs notices.
    """

    def __init__(
        self,
        store: Any,
        spool: IncomingSpool,
        queue: Any = None,
        local: LocalDelivery | None = None,
        hostname: str = "localhost",
        agent: DeliveryAgent | None = None,
        forward_sender: Any = None,
    ) -> None:
        self._store = store
        self._spool = spool
        self._queue = queue
        self._local = local
        self._hostname = hostname
        self._agent = agent if agent is not None else DeliveryAgent(store)
        # Sends NOTIFY=SUCCESS reports: (envelope, addresses, queue id, size, header block);
        # the queue's ``DeliveryReports``, set by the service.
        self.report_delivered: Callable[..., Awaitable[None]] | None = None
        # sender -> Deferred[sender] for remote copies (SRS, routing.Router.forward_sender)
        self._forward_sender = forward_sender

    def open(self) -> IncomingMessage:
        return self._spool.open()

    def submit(self, envelope: Envelope, message: IncomingMessage) -> Deferred[Receipt]:
        return Deferred.fromCoroutine(self._submit(envelope, message))

    def submit_bytes(self, envelope: Envelope, data: bytes) -> Deferred[Receipt]:
        message = self.open()
        message.write(data)
        return self.submit(envelope, message)

    async def _submit(self, envelope: Envelope, message: IncomingMessage) -> Receipt:
        remote = [route.address for route in envelope.routes if route.kind is RouteKind.REMOTE]
        local = local_recipients(envelope)
        reserved = False
        try:
            await message.seal()  # held header fields (filters') go on top: the file is final
            if remote and self._queue is None:
                raise SubmissionError("no relay queue for remote recipients")
            if not remote and not local:
                raise SubmissionError("no recipients")
            limits = quota_limits(envelope)
            if local and limits and mailboxes.reserves_room(self._store):
                # A store that links the copies in after the 250 (Maildir) holds room for
                # them now, before anything is durable or queued: QuotaExceeded (a 452) when a
                # direct recipient filled up since the RCPT check, by messages received at the
                # same time. Given back when the copies are stored, or below if never.
                await mailboxes.reserve(self._store, message.path, limits, message.size)
                reserved = True
            spoolable = local and not remote and self._local is not None and message.spare
            if spoolable and await self._spool_local(message, local, envelope.options):
                reserved = False  # the delivery thread's to give back, once it has stored it
                await self._warn_near_quota(envelope, message.size)
                await self._report_success(envelope, message)
                return Receipt(message.queue_id, queued=True)
            prepare = message.commit_sync
            if remote:
                await message.commit()
                prepare = None
                # Envelope-preserving (docs/admin.rst), unless [srs] rewrites other domains'
                # senders of forwarded mail (srs.py).
                sender = envelope.sender
                if self._forward_sender is not None:
                    sender = await self._forward_sender(sender)
                wishes: dict[str, Any] = {}
                if envelope.options != MessageOptions() or envelope.recipient_options:
                    # Only when there are any: a queue built before they existed still works.
                    wishes = {
                        "options": envelope.options,
                        "recipient_options": envelope.recipient_options,
                    }
                await self._queue.submit(sender, remote, message.path, message.queue_id, **wishes)
            if local:
                if prepare is not None and self._agent.reads_message:
                    # Users' scripts read the file, and a small message is still in memory:
                    # write it out (and fsync it, which the links needed anyway) first.
                    await message.commit()
                    prepare = None
                targets, flags = await self._agent.choose(local, message.path, envelope.options)
                # One worker trip: the spool fsync (when not done for the queue), the links,
                # and the spool file's removal.
                if mailboxes.links_files(self._store):
                    await mailboxes.deliver(
                        self._store, targets, message.path, prepare, message.remove_sync, flags
                    )
                else:  # the store reads the file; ``discard`` below removes it
                    if prepare is not None:
                        await message.commit()
                    # Stored before the reply and nothing queued: a store that can refuses
                    # the message (QuotaExceeded, a 452) when a direct recipient filled up
                    # since the RCPT check, by messages received at the same time.
                    limits = None if remote else quota_limits(envelope)
                    await mailboxes.deliver(
                        self._store, targets, message.path, flags=flags, limits=limits
                    )
                metrics.message("delivered", message.size, len(targets))
                names = stored_in(targets)
                log.info(PRERENDERED, line=f"delivered {message.queue_id} to {names}",
                         queue_id=message.queue_id, mailboxes=names)  # fmt: skip
        except BaseException:
            if reserved:
                mailboxes.release(self._store, message.path)
            raise
        finally:
            message.discard()
        await self._warn_near_quota(envelope, message.size)
        await self._report_success(envelope, message)
        return Receipt(message.queue_id, queued=bool(remote))

    async def _spool_local(
        self, message: IncomingMessage, local: list[LocalRecipient], options: MessageOptions
    ) -> bool:
        """Path 1: durable in the spool with its record, delivered by the thread just after.
        False: too many recipients for a record; the caller delivers before the reply. The
        record keeps the sender's options for what users' scripts redirect (``local.py``)."""
        dsn: dict[str, RecipientOptions] = {}
        for r in local:
            if r.dsn != _NO_WISHES:
                dsn.setdefault(r.user, r.dsn)
        item = SpooledLocal(
            message.path, int(time.time()), message.size, message.crc,
            tuple((r.user, r.folder) for r in local), message.queue_id,
            junk=frozenset(r.user for r in local if r.junk), options=options, dsn=dsn,
        )  # fmt: skip
        record = item.record()
        if len(record) > MAX_RECORD:
            return False
        await message.commit((XATTR, record))
        message.hand_over()
        assert self._local is not None
        self._local.accept(item)
        return True

    async def _report_success(self, envelope: Envelope, message: IncomingMessage) -> None:
        """Local recipients whose RCPT said NOTIFY=SUCCESS (RFC 3461 4.1) get a ``delivered``
        DSN once the message is durable for them: in their mailboxes, or acknowledged in the
        spool for the delivery thread (which delivers it after a crash too). The report is
        built and sent by ``report_delivered`` (the queue's ``DeliveryReports``, which owns
        DSNs); one that can't be sent is logged, it never fails the message."""
        wanted = tuple(
            route.address
            for route in envelope.routes
            if route.kind is RouteKind.LOCAL
            and envelope.recipient_options.get(route.address, _NO_WISHES).wants("SUCCESS")
        )
        if not wanted or envelope.sender is None or self.report_delivered is None:
            return
        try:
            await self.report_delivered(
                envelope, wanted, message.queue_id, message.size, message.header_block()
            )
        except Exception:
            log.failure("delivery report for {queue_id} failed", queue_id=message.queue_id)

    async def _warn_near_quota(self, envelope: Envelope, size: int) -> None:
        """Tell each user this message took past 90% of their quota, once (issue 6). The
        notice is submitted like any mail; it never fails the message it reports on."""
        for user, used, limit in quota_crossings(envelope.quota_usage, size):
            notice = Envelope(None, (Route(RouteKind.LOCAL, user, user, INBOX),))
            try:
                await self.submit_bytes(notice, quota_notice(user, used, limit, self._hostname))
            except Exception:
                log.failure("quota warning for {user} failed", user=user)
                continue
            log.info("quota: warned {user} at {used} of {limit} bytes", user=user, used=used,
                     limit=limit)  # fmt: skip
