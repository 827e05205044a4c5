"""A submission without an SMTP connection: what the webmail's Send runs, step for step what
port 587 runs for an authenticated client.

The webmail must not be a second way out: a message sent from the browser meets the same
``SubmissionPolicy`` (the sender must be an address the user owns, in MAIL FROM and in From:;
each recipient resolved by the same ``Router``, local quotas checked), the same content
filter chain at the same stages (``mail_from``, ``rcpt_to``, ``end_of_data``: so DKIM's
``SigningFilter`` signs it, the spam and virus filters see it) and the same durable hand-off
(``ISubmission.submit``, file and record fsync'd before :meth:`Outbox.send` returns). Only
the transport differs: the envelope comes from the compose form instead of MAIL/RCPT lines,
and the message from a file the web wrote instead of DATA. A refusal is the SMTP reply the
client on 587 would have had (``Refused.reply``), so the page can say what SMTP would say.

The filters see the client as ``listener="web"``, authenticated, over TLS (the HTTPS
listener is TLS-only), from the browser's address; the trace field says ``with HTTPSA``:
RFC 5321's ``Protocol`` may be any atom, and this one, modelled on RFC 3848's ``ESMTPSA``,
tells a reader the message came in over authenticated HTTPS. It is not an IANA-registered
WITH type, so a parser that knows only those sees an unknown protocol, nothing worse.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from txmailhost.delivery.interfaces import Receipt
from txmailhost.filters.chain import Decision, render_fields
from txmailhost.filters.interfaces import Client, Transaction
from txmailhost.smtp import replies
from txmailhost.smtp.address import AddressError, parse_mailbox
from txmailhost.smtp.policy import Envelope
from txmailhost.smtp.replies import SMTPReply
from txmailhost.smtp.server import filter_refusal

log = Logger(namespace="txmailhost.smtp")

COPY_CHUNK = 256 * 1024


class Refused(Exception):
    """The submission was refused: ``reply`` is what SMTP would have answered, ``recipient``
    the address it was about, when it was about one."""

    def __init__(self, reply: SMTPReply, recipient: str | None = None) -> None:
        super().__init__(f"{reply.code} {reply.enhanced} {reply.text}")
        self.reply = reply
        self.recipient = recipient


@dataclass
class _Peer:
    host: str
    port: int = 0
    type: str = "TCP"


class _Transport:
    """What the policy asks of a connection: the client's address (the RCPT throttle)."""

    def __init__(self, peer: str) -> None:
        self._peer = _Peer(peer)

    def getPeer(self) -> _Peer:
        return self._peer


@dataclass
class _Session:
    """The few session attributes ``SubmissionPolicy`` reads."""

    authenticated_as: str
    transport: _Transport
    envelope: Envelope | None = None


class Outbox:
    """Sends what an authenticated user composed, through the submission pipeline.

    Built once by ``listeners.py`` from the same objects as the submission listener: the
    ``SubmissionPolicy``, the ``ISubmission`` hand-off, the ``FilterChain`` (or None) and the
    ``[smtp]`` limits. ``pool`` is where the message file is copied into the spool."""

    def __init__(
        self,
        policy: Any,
        delivery: Any,
        filters: Any,
        *,
        reactor: Any,
        pool: Any,
        hostname: str,
        max_message_size: int,
        max_recipients: int,
        hide_client_ip: bool = False,
    ) -> None:
        self.policy = policy
        self.delivery = delivery
        self.filters = filters
        self.reactor = reactor
        self.pool = pool
        self.hostname = hostname
        self.max_message_size = max_message_size
        self.max_recipients = max_recipients
        self.hide_client_ip = hide_client_ip

    async def send(
        self,
        user: str,
        peer: str,
        sender: str,
        recipients: Sequence[str],
        open_message: Callable[[], BinaryIO],
        size: int,
    ) -> Receipt:
        """Submit the message ``open_message()`` reads (``size`` octets, CRLF line ends) from
        ``sender`` to ``recipients`` as ``user`` logged in from ``peer``. Fires with the
        ``Receipt`` once the message is durable; raises ``Refused`` with the SMTP reply."""
        if not recipients:
            raise Refused(replies.SYNTAX_ERROR.with_text("no recipients"))
        if len(recipients) > self.max_recipients:
            raise Refused(replies.TOO_MANY_RECIPIENTS)
        if size > self.max_message_size:
            raise Refused(replies.MESSAGE_TOO_BIG)
        client = Client(address=peer, tls=True, authenticated_as=user, listener="web")
        session = _Session(user, _Transport(peer))
        envelope = await self._mail_from(session, client, sender)
        for recipient in recipients:
            await self._rcpt_to(session, client, envelope, recipient)
        message = self.delivery.open()
        try:
            if self.filters is not None:
                message.hold_headers()
            message.write_trace(self._trace(envelope, message.queue_id, peer))
            await deferToThreadPool(self.reactor, self.pool, _copy, open_message, message)
            refusal = await self.policy.check_message(envelope, message)
            if refusal is not None:
                raise Refused(refusal)
            junk, dropped = await self._end_of_data(client, envelope, message)
            receipt = await self.delivery.submit(envelope.handoff(junk, dropped), message)
        except BaseException as e:
            message.discard()
            self._log(envelope, message.queue_id, size, getattr(e, "reply", None), peer)
            raise
        self._log(envelope, receipt.queue_id, size, replies.DELIVERED, peer)
        return receipt

    async def _mail_from(self, session: _Session, client: Client, sender: str) -> Envelope:
        mailbox = _mailbox(sender, replies.BAD_SENDER_SYNTAX)
        reply = await _settled(self.policy.check_sender(session, mailbox))
        if not reply.positive:
            raise Refused(reply, sender)
        decisions = []
        if self.filters is not None and self.filters.asks("mail"):
            decision = await self.filters.mail_from(client, str(mailbox))
            if decision.refusal is not None:
                raise Refused(filter_refusal(decision.refusal), sender)
            decisions.append(decision)
        envelope = Envelope(mailbox, {}, authenticated_as=session.authenticated_as)
        envelope.fields.extend(f for d in decisions for f in d.fields)
        envelope.junk_all = any(d.junk_all for d in decisions)
        session.envelope = envelope
        return envelope

    async def _rcpt_to(
        self, session: _Session, client: Client, envelope: Envelope, recipient: str
    ) -> None:
        mailbox = _mailbox(recipient, replies.BAD_RECIPIENT_SYNTAX)
        address = str(mailbox)
        if address in envelope.recipients:
            return
        envelope.recipients_tried += 1
        reply, routes = await self.policy.check_recipient(session, mailbox)
        if not reply.positive:
            raise Refused(reply, recipient)
        decision = Decision()
        if self.filters is not None and self.filters.asks("rcpt"):
            sender = str(envelope.sender) if envelope.sender else None
            transaction = Transaction(sender, tuple(envelope.recipients))
            decision = await self.filters.rcpt_to(client, transaction, address)
            if decision.refusal is not None:
                raise Refused(filter_refusal(decision.refusal), recipient)
        envelope.recipients.append(address)
        envelope.routes.extend(r for r in routes if r not in envelope.routes)
        envelope.routes_of[address] = list(routes)
        envelope.fields.extend(decision.fields)
        envelope.junk |= decision.junk

    async def _end_of_data(
        self, client: Client, envelope: Envelope, message: Any
    ) -> tuple[frozenset[str], frozenset[str]]:
        """As the SMTP server's end of data: the filters' verdict, their fields on top."""
        if self.filters is None:
            return frozenset(), frozenset()
        sender = str(envelope.sender) if envelope.sender else None
        transaction = Transaction(sender, tuple(envelope.recipients), message.queue_id)
        decision = await self.filters.end_of_data(client, transaction, message.reader)
        if decision.refusal is not None:
            raise Refused(filter_refusal(decision.refusal))
        if decision.remove:
            message.remove_fields(decision.remove)
        fields = [*envelope.fields, *decision.fields]
        if fields:
            message.prepend(render_fields(fields))
        return decision.junk, decision.dropped

    def _trace(self, envelope: Envelope, queue_id: str, peer: str) -> bytes:
        """Return-Path and Received (RFC 5321 4.4), as the submission listener writes them."""
        sender = str(envelope.sender) if envelope.sender else ""
        recipients = envelope.recipients
        recipient = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
        origin = "" if self.hide_client_ip else f"from [{peer}]\r\n\t"
        return (
            f"Return-Path: <{sender}>\r\n"
            f"Received: {origin}by {self.hostname} (txmailhost) with HTTPSA id {queue_id}"
            f"{recipient};\r\n\t{email.utils.format_datetime(email.utils.localtime())}\r\n"
        ).encode("ascii", "replace")

    def _log(
        self, envelope: Envelope, queue_id: str, size: int, reply: SMTPReply | None, peer: str
    ) -> None:
        log.info(
            "smtp web {peer} id={queue_id} from=<{sender}> to={recipients} size={size}"
            " result={code} {enhanced} user={user}",
            peer=peer,
            queue_id=queue_id,
            sender=str(envelope.sender or ""),
            recipients=",".join(envelope.recipients),
            size=size,
            code=reply.code if reply else 451,
            enhanced=reply.enhanced if reply else "4.3.0",
            user=envelope.authenticated_as,
        )


def _mailbox(text: str, bad: SMTPReply) -> Any:
    try:
        return parse_mailbox(text, utf8=not text.isascii())
    except AddressError:
        raise Refused(bad, text) from None


async def _settled(result: Any) -> Any:
    return await result if isinstance(result, Deferred) else result


def _copy(open_message: Callable[[], BinaryIO], message: Any) -> None:
    """The composed file into the spool message (in a worker thread: a large one is
    written to disk as it goes)."""
    with open_message() as source:
        while chunk := source.read(COPY_CHUNK):
            message.write(chunk)
