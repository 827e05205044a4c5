"""What an SMTP listener accepts, and what it does with an accepted message.

``InboundPolicy`` is the port-25 role (RFC 5321 as an MX): mail *for* our users from anyone,
mail for anywhere else from no one (no open relay). Unknown local users are refused at RCPT
time with 550 5.1.1 so we never accept-then-bounce (backscatter). Submission (RFC 6409) gets a
policy of its own when authentication lands.

Delivery is local and synchronous with the reply: the spooled file is fsync'd, linked into
each recipient's INBOX (file and directory fsync'd by the store), and only then does the
server send ``250`` (DESIGN invariant 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from txmailhost.routing import Route, RouteKind, Router
from txmailhost.smtp import replies
from txmailhost.smtp.address import Mailbox
from txmailhost.smtp.incoming import IncomingMessage
from txmailhost.smtp.replies import SMTPReply

log = Logger()


@dataclass
class Envelope:
    """One mail transaction: MAIL FROM, the accepted RCPTs and their routes."""

    sender: Mailbox | None
    params: dict[str, str | None]
    routes: list[Route] = field(default_factory=list)
    recipients_tried: int = 0


class InboundPolicy:
    def __init__(self, router: Router, store: Any) -> None:
        self._router = router
        self._store = store

    def check_sender(self, session: Any, sender: Mailbox | None) -> SMTPReply:
        # Sender authentication (SPF/DMARC) is the filters' job, later; syntax is checked.
        return replies.SENDER_OK

    async def check_recipient(
        self, session: Any, recipient: Mailbox
    ) -> tuple[SMTPReply, Route | None]:
        try:
            route = await self._router.resolve(recipient.local, recipient.domain)
        except Exception:
            log.failure("recipient lookup failed for {rcpt}", rcpt=str(recipient))
            return replies.LOOKUP_FAILED, None
        if route.kind is RouteKind.LOCAL:
            return replies.RECIPIENT_OK, route
        if route.kind is RouteKind.UNKNOWN_USER:
            return replies.UNKNOWN_USER, None
        return replies.RELAY_DENIED, None

    async def deliver(self, envelope: Envelope, message: IncomingMessage) -> SMTPReply:
        try:
            await message.commit()
            targets = [(route.user, route.mailbox) for route in envelope.routes]
            await self._store.deliver(targets, message.path)
        except Exception:
            log.failure("delivery of {queue_id} failed", queue_id=message.queue_id)
            return replies.DELIVERY_FAILED
        finally:
            message.discard()
        return replies.DELIVERED.with_text(f"OK delivered as {message.queue_id}")
