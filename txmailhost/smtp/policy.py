"""What an SMTP listener accepts, and what it does with an accepted message.

``InboundPolicy`` is the port-25 role (RFC 5321 as an MX): mail *for* our users from anyone,
mail for anywhere else from no one (no open relay). Unknown local users are refused at RCPT
time with 550 5.1.1 so we never accept-then-bounce (backscatter).

``SubmissionPolicy`` is ports 587/465 (RFC 6409): only authenticated users may send (530
5.7.0 before AUTH), only as themselves, in MAIL FROM (553 5.7.1) and in the From: header (550
5.7.1 after DATA), to local users or, through the relay queue, anywhere.

Nothing is acknowledged before it is durable (DESIGN invariant 1). Mail for local recipients
only is acknowledged once its spool file and the record in it are fsync'd, and linked into the
mailboxes just after by the delivery thread (``queue/local.py``). Otherwise, or without a
``local`` delivery, the spooled file is fsync'd, linked into each local recipient's folder (file
and directory fsync'd by the store) and/or spooled in the relay queue (fsync'd there), and only
then does the server send ``250``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import formatdate, getaddresses
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from txmailhost.accounts.throttle import client_key
from txmailhost.queue.local import MAX_RECORD, XATTR, LocalDelivery, SpooledLocal
from txmailhost.routing import Outcome, Resolution, Route, RouteKind, Router
from txmailhost.smtp import replies
from txmailhost.smtp.address import Mailbox
from txmailhost.smtp.incoming import IncomingMessage
from txmailhost.smtp.replies import SMTPReply
from txmailhost.store.files import deliver_file
from txmailhost.store.interfaces import INBOX, IFileDelivery, MessageSource

log = Logger()


@dataclass
class Envelope:
    """One mail transaction: MAIL FROM, the accepted RCPTs and their routes."""

    sender: Mailbox | None
    params: dict[str, str | None]
    recipients: list[str] = field(default_factory=list)  # accepted RCPT addresses
    routes: list[Route] = field(default_factory=list)  # where they lead, deduplicated
    recipients_tried: int = 0
    authenticated_as: str | None = None
    # user -> (bytes used when the RCPT was accepted, quota): for the 90% warning.
    quota_usage: dict[str, tuple[int, int]] = field(default_factory=dict)


class InboundPolicy:
    """Port 25. ``rcpt_throttle`` (a ``LoginThrottle`` with some free failures) slows down a
    client that keeps naming unknown users: each further 550 5.1.1 waits longer, so RCPT
    can't be used to enumerate accounts faster than logins can be guessed (security.md)."""

    def __init__(
        self,
        router: Router,
        store: Any,
        queue: Any = None,
        rcpt_throttle: Any = None,
        quota_full: SMTPReply = replies.QUOTA_FULL_TEMPORARY,
        hostname: str = "localhost",
        local: LocalDelivery | None = None,
    ) -> None:
        self._router = router
        self._store = store
        self._queue = queue
        self._local = local
        self._rcpt_throttle = rcpt_throttle
        self._quota_full = quota_full
        self._hostname = hostname

    def check_sender(self, session: Any, sender: Mailbox | None) -> SMTPReply | Deferred:
        # Sender authentication (SPF/DMARC) is the filters' job, later; syntax is checked.
        return replies.SENDER_OK

    async def check_recipient(
        self, session: Any, recipient: Mailbox
    ) -> tuple[SMTPReply, list[Route]]:
        try:
            resolution = await self._router.resolve(recipient.local, recipient.domain)
        except Exception:
            log.failure("recipient lookup failed for {rcpt}", rcpt=str(recipient))
            return replies.LOOKUP_FAILED, []
        outcome = resolution.outcome
        if outcome is Outcome.NOT_OURS:
            return self.not_ours(resolution)
        if outcome is Outcome.UNKNOWN_USER:
            await self._slow_down(session)
            return replies.UNKNOWN_USER, []
        if outcome is Outcome.LOOP:
            log.warn("alias loop at {rcpt}", rcpt=resolution.address)
            return replies.ALIAS_LOOP, []
        if outcome is Outcome.TOO_BIG:
            return replies.ALIAS_TOO_BIG, []
        if self._queue is None and any(r.kind is RouteKind.REMOTE for r in resolution.routes):
            return replies.REMOTE_UNAVAILABLE, []
        routes = resolution.routes
        if resolution.quota is not None:
            refusal = await self._check_quota(session, routes[0].user, resolution.quota)
            if refusal is not None:
                return refusal, []
        return replies.RECIPIENT_OK, routes

    async def _check_quota(self, session: Any, user: str, limit: int) -> SMTPReply | None:
        """RCPT-time quota check for a direct recipient (RFC 1870 SIZE counted if declared).

        Alias fan-outs are not refused for one full member (that would hold up everyone):
        there the quota is soft, and the overshoot is logged.
        """
        used = await self._store.usage(user)
        envelope = session.envelope
        declared = envelope.params.get("SIZE") if envelope is not None else None
        size = int(declared) if declared and declared.isdigit() else 0
        if used >= limit or used + size > limit:
            log.info(
                "quota: {user} full ({used} of {limit} bytes)", user=user, used=used, limit=limit
            )
            return self._quota_full
        if envelope is not None:
            envelope.quota_usage[user] = (used, limit)
        return None

    def not_ours(self, resolution: Resolution) -> tuple[SMTPReply, list[Route]]:
        """Port 25 never relays (DESIGN invariant 6)."""
        return replies.RELAY_DENIED, []

    async def _slow_down(self, session: Any) -> None:
        if self._rcpt_throttle is None:
            return
        client = client_key(session.transport.getPeer())
        delay = self._rcpt_throttle.failed(client, None)
        if delay > 0:
            log.info("smtp {peer} unknown recipients: delaying {delay}s", peer=client, delay=delay)
            await deferLater(self._rcpt_throttle.clock, delay)

    async def deliver(self, envelope: Envelope, message: IncomingMessage) -> SMTPReply:
        try:
            refusal = await self.check_message(envelope, message)
            if refusal is not None:
                return refusal
            remote = [route.address for route in envelope.routes if route.kind is RouteKind.REMOTE]
            local = [(route.user, route.mailbox) for route in envelope.routes if route.user]
            if local:
                local = await self._existing_folders(local)
            spooled = local and not remote and self._local is not None and message.spare
            if spooled and await self._spool_local(envelope, message, local):
                return replies.DELIVERED.with_text(f"OK queued as {message.queue_id}")
            prepare = message.commit_sync
            if remote:
                await message.commit()
                prepare = None
                # Envelope-preserving: forwarded mail keeps its original sender (docs/admin.rst).
                sender = str(envelope.sender) if envelope.sender else None
                await self._queue.submit(sender, remote, message.path, message.queue_id)
            if local:
                await self._deliver_local(local, message, prepare)
                await self._warn_near_quota(envelope, message)
        except Exception as e:
            log.failure("delivery of {queue_id} failed", queue_id=message.queue_id)
            return replies.local_error(e)
        finally:
            message.discard()
        return replies.DELIVERED.with_text(f"OK delivered as {message.queue_id}")

    async def _deliver_local(
        self,
        targets: list[tuple[str, str]],
        message: IncomingMessage,
        prepare: Callable[[], None] | None,
    ) -> None:
        """Into the mailboxes before the ``250``. A store of files (Maildir) does it in one
        worker trip: ``prepare`` (the spool fsync, when not done for the queue), the links,
        and the spool file's removal. Any other store reads the fsync'd spool file."""
        if IFileDelivery.providedBy(self._store):
            await self._store.deliver_file(
                targets, message.path, prepare=prepare, finish=message.remove_sync
            )
            return
        if prepare is not None:
            await message.commit()
        await self._store.deliver(targets, MessageSource.from_path(message.path))

    async def _spool_local(
        self, envelope: Envelope, message: IncomingMessage, targets: list[tuple[str, str]]
    ) -> bool:
        """Acknowledge local-only mail once it is durable in the spool, and let the delivery
        thread link it into the mailboxes (``queue/local.py``). ``targets`` are existing folders.
        False: too many recipients for a spool record, deliver the old way."""
        item = SpooledLocal(
            message.path, int(time.time()), message.size, message.crc, tuple(targets),
            message.queue_id,
        )  # fmt: skip
        record = item.record()
        if len(record) > MAX_RECORD:
            return False
        await message.commit((XATTR, record))
        message.hand_over()
        self._local.accept(item)
        await self._warn_near_quota(envelope, message)
        return True

    async def check_message(self, envelope: Envelope, message: IncomingMessage) -> SMTPReply | None:
        """A last look at the message before it is accepted; None accepts it."""
        return None

    async def _existing_folders(self, targets: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Plus-address folders (``[routing] plus_folders``) that don't exist become INBOX."""
        result = []
        for user, mailbox in targets:
            if mailbox != INBOX:
                # Addresses are case-insensitive, folder names aren't: match either way.
                names = {name.lower(): name for name in await self._store.list_mailboxes(user)}
                mailbox = names.get(mailbox.lower(), INBOX)
            if (user, mailbox) not in result:
                result.append((user, mailbox))
        return result

    async def _warn_near_quota(self, envelope: Envelope, message: IncomingMessage) -> None:
        """Tell a user once their mailbox passes 90% of its quota (issue 6): the notice goes
        into their INBOX when this delivery crossed the line. Never fails the delivery."""
        size = message.size
        for user, (used, limit) in envelope.quota_usage.items():
            if not used < 0.9 * limit <= used + size:
                continue
            try:
                notice = message.sibling()
                notice.write(quota_notice(user, used + size, limit, self._hostname))
                await notice.commit()
                try:
                    await deliver_file(self._store, [(user, "INBOX")], notice.path)
                finally:
                    notice.discard()
                log.info(
                    "quota: warned {user} at {used} of {limit} bytes",
                    user=user,
                    used=used + size,
                    limit=limit,
                )
            except Exception:
                log.failure("quota warning for {user} failed", user=user)


class SubmissionPolicy(InboundPolicy):
    """Ports 587/465: authenticated users sending as themselves, anywhere."""

    def check_sender(self, session: Any, sender: Mailbox | None) -> SMTPReply | Deferred:
        user = session.authenticated_as
        if user is None:
            return replies.AUTH_REQUIRED
        # The null sender stays allowed: clients use it for read receipts and DSNs (RFC 3461).
        if sender is None:
            return replies.SENDER_OK

        def decide(owned: bool) -> SMTPReply:
            return replies.SENDER_OK if owned else replies.SENDER_NOT_OWNED

        return self._owns(user, f"{sender.local}@{sender.domain}").addCallback(decide)

    def not_ours(self, resolution: Resolution) -> tuple[SMTPReply, list[Route]]:
        if self._queue is None:
            return replies.REMOTE_UNAVAILABLE, []
        return replies.RECIPIENT_OK, [Route(RouteKind.REMOTE, resolution.address)]

    def _owns(self, user: str, address: str) -> Deferred[bool]:
        """May ``user`` send as ``address``: their own, a plus-address of it, or an alias (or
        alias domain) whose mail reaches them."""
        if address.lower() == user.lower():
            return succeed(True)
        local, _, domain = address.rpartition("@")

        def reaches(resolution: Resolution) -> bool:
            return resolution.outcome is Outcome.OK and any(
                route.user == user.lower() for route in resolution.routes
            )

        return self._router.resolve(local, domain).addCallback(reaches)

    async def check_message(self, envelope: Envelope, message: IncomingMessage) -> SMTPReply | None:
        """Every From: address must be the user's own (RFC 6409 8: the submission server may
        enforce sender policy); a message without From: passes (the client's problem)."""
        user = envelope.authenticated_as
        if user is None:
            return replies.AUTH_REQUIRED
        headers = BytesHeaderParser().parsebytes(message.header_block())
        for _name, address in getaddresses([str(v) for v in headers.get_all("From", [])]):
            if not address or not await self._owns(user, address):
                return replies.FROM_NOT_OWNED
        return None


def quota_notice(user: str, used: int, limit: int, hostname: str) -> bytes:
    """The 90% warning, a plain RFC 5322 message from the domain's postmaster."""
    domain = user.rpartition("@")[2]
    percent = used * 100 // limit
    text = (
        f"Your mailbox {user} holds {used / 1048576:.1f} MiB of its {limit / 1048576:.1f} MiB"
        f" quota ({percent}%).\r\n\r\nWhen it is full, new mail to you will be refused."
        " Delete old messages, or empty Trash and Junk, to make room.\r\n"
    )
    headers = (
        f"From: Mail server <postmaster@{domain}>\r\nTo: <{user}>\r\n"
        f"Subject: Your mailbox is {percent}% full\r\nDate: {formatdate(localtime=False)}\r\n"
        f"Message-ID: <quota.{int(time.time())}.{user.replace('@', '.')}@{hostname}>\r\n"
        "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    return (headers + text).encode("utf-8")
