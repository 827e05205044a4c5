"""What an SMTP listener accepts, and what it does with an accepted message.

``InboundPolicy`` is the port-25 role (RFC 5321 as an MX): mail *for* our users from anyone,
mail for anywhere else from no one (no open relay). Unknown local users are refused at RCPT
time with 550 5.1.1 so we never accept-then-bounce (backscatter).

``SubmissionPolicy`` is ports 587/465 (RFC 6409): only authenticated users may send (530
5.7.0 before AUTH), only as themselves, in MAIL FROM (553 5.7.1) and in the From: header (550
5.7.1 after DATA), to local users or, through the relay queue, anywhere.

A policy only decides: accept or refuse, with the reply. What happens to an accepted message
(made durable, relayed, put into mailboxes) is ``txmailhost.delivery``'s ``submit``, which the
server calls after the end of data; content filters run between the two (``filters/``).
"""

from __future__ import annotations

import datetime
import email.utils
import re
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from txmailhost import headerfields
from txmailhost.accounts.throttle import client_key
from txmailhost.addresslist import every_reading
from txmailhost.delivery import interfaces as delivery
from txmailhost.delivery.incoming import IncomingMessage
from txmailhost.outage import BurstLog
from txmailhost.routing import Outcome, Resolution, Route, RouteKind, Router
from txmailhost.smtp import replies
from txmailhost.smtp.address import Mailbox
from txmailhost.smtp.replies import SMTPReply

# A field of the client's header section by name, at the start of a line (a folded line
# starts with white space, so it never matches)
_DATE_FIELD = re.compile(rb"(?im)^date[ \t]*:")
_MESSAGE_ID_FIELD = re.compile(rb"(?im)^message-id[ \t]*:")

log = Logger()
# The accounts' database down fails every RCPT alike: one traceback a kind, then a count a
# minute (``outage.BurstLog``), not a traceback a recipient.
_LOOKUP_ERRORS = BurstLog(log, time.monotonic, "recipient lookup failed")


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
    # What the content filters said before the end of data (txmailhost.filters).
    routes_of: dict[str, list[Route]] = field(default_factory=dict)  # per accepted RCPT
    junk: set[str] = field(default_factory=set)  # recipients whose copy goes to Junk
    junk_all: bool = False
    fields: list[tuple[str, str]] = field(default_factory=list)  # header fields to add
    # ESMTP parameters that travel with the message (smtp/params.py)
    options: delivery.MessageOptions = delivery.MessageOptions()
    recipient_options: dict[str, delivery.RecipientOptions] = field(default_factory=dict)

    def handoff(
        self, junk: frozenset[str] = frozenset(), dropped: frozenset[str] = frozenset()
    ) -> delivery.Envelope:
        """What delivery needs of this transaction (``ISubmission.submit``): ``junk`` and
        ``dropped`` are recipients the filters sent to Junk or refused at the end of data."""
        sender = str(self.sender) if self.sender else None
        routes = self.routes
        if dropped:
            kept = [r for rcpt in self.recipients if rcpt not in dropped
                    for r in self.routes_of.get(rcpt, [])]  # fmt: skip
            routes = [r for i, r in enumerate(kept) if r not in kept[:i]]
        junk = junk | self.junk
        junk_users = frozenset(
            r.user
            for rcpt in self.recipients
            if self.junk_all or rcpt in junk
            for r in self.routes_of.get(rcpt, [])
            if r.user
        )
        return delivery.Envelope(
            sender,
            tuple(routes),
            junk_users,
            dict(self.quota_usage),
            options=self.options,
            recipient_options=dict(self.recipient_options),
        )


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
    ) -> None:
        self._router = router
        self._store = store  # asked for usage only (the quota check)
        self._queue = queue  # None: remote recipients are refused (nothing would relay them)
        self._rcpt_throttle = rcpt_throttle
        self._quota_full = quota_full

    def check_sender(self, session: Any, sender: Mailbox | None) -> SMTPReply | Deferred:
        # Sender authentication (SPF/DMARC) is the filters' job, later; syntax is checked.
        return replies.SENDER_OK

    async def check_recipient(
        self, session: Any, recipient: Mailbox
    ) -> tuple[SMTPReply, list[Route]]:
        try:
            resolution = await self._router.resolve(recipient.local, recipient.domain)
        except Exception:
            _LOOKUP_ERRORS.failed(Failure(), about=str(recipient))
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

    async def check_message(self, envelope: Envelope, message: IncomingMessage) -> SMTPReply | None:
        """A last look at the message before it is accepted; None accepts it."""
        return None

    # Does ``missing_fields`` ever add any? The server then holds the header fields it
    # writes (``IncomingMessage.hold_headers``) so that they can go below its Received:.
    completes_header = False

    def missing_fields(self, envelope: Envelope, message: IncomingMessage, hostname: str) -> bytes:
        """Header fields to add to an accepted message (CRLF-terminated); on port 25, none:
        a relay doesn't rewrite mail in transit."""
        return b""


class SubmissionPolicy(InboundPolicy):
    """Ports 587/465: authenticated users sending as themselves, anywhere."""

    completes_header = True

    def missing_fields(self, envelope: Envelope, message: IncomingMessage, hostname: str) -> bytes:
        """RFC 6409 8.2 and 8.3: a ``Date:`` and a ``Message-ID:`` for a message that comes
        without (scripts, ``mail`` and other minimal clients). RFC 5322 3.6 requires the
        first and asks for the second, and receivers score or refuse mail that lacks them;
        Postfix's cleanup adds both for its own users' mail. They go below our Received:,
        before the filters run, so the DKIM signature covers them."""
        header = message.header_block()
        fields = b""
        if _DATE_FIELD.search(header) is None:
            now = datetime.datetime.now(datetime.UTC)
            fields += b"Date: " + email.utils.format_datetime(now).encode("ascii") + b"\r\n"
        if _MESSAGE_ID_FIELD.search(header) is None:
            fields += b"Message-ID: <%s@%s>\r\n" % (
                message.queue_id.encode("ascii"),
                hostname.encode("ascii", "replace"),
            )
        return fields

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
        enforce sender policy); a message without From: passes (the client's problem).

        "Every" is every address either address parser reads in every From field
        (``addresslist.every_reading``): a malformed list that Python's parser reads as the
        user's own while another client shows someone else's is refused."""
        user = envelope.authenticated_as
        if user is None:
            return replies.AUTH_REQUIRED
        # every From field, as a reader may take one (``headerfields``)
        values = headerfields.values(message.header_block(), "from")
        readings = every_reading(values)
        if values and not readings:  # "From: <>", "From: (only a comment)": no one's
            return replies.FROM_NOT_OWNED
        for address in readings:
            if not await self._owns(user, address):
                return replies.FROM_NOT_OWNED
        return None
