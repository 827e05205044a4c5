"""Delivery status notifications: what the sender receives when mail fails or is late.

A DSN is a ``multipart/report; report-type=delivery-status`` message (RFC 6522) with three
parts (RFC 3464 2): a human-readable explanation, the ``message/delivery-status`` part with
one per-message block (``Reporting-MTA``, ``Arrival-Date``) and one block per recipient
(``Final-Recipient``, ``Action``, ``Status``, ``Remote-MTA``, ``Diagnostic-Code``,
``Last-Attempt-Date``, ``Will-Retry-Until``), and the original message's header section as
``text/rfc822-headers`` (RFC 3462: the headers, not the body, so a bounce can't be used to
reflect content at a third party).

DSNs are sent with the null reverse-path and ``Auto-Submitted: auto-replied`` (RFC 3834 5), so
the receiving side never answers them, and are never sent *to* the null sender: the queue
checks that before calling here (RFC 3464 2, RFC 5321 4.5.5).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate

from txmailhost.queue.spool import Envelope, Recipient

FAILED = "failed"
DELAYED = "delayed"

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


def _field(value: str, limit: int = 900) -> str:
    """A header field value from text we don't control (a remote reply): one line, ASCII.

    CR/LF are what a hostile server would use to inject fields into the report.
    """
    clean = _UNSAFE.sub(" ", value).encode("ascii", "replace").decode("ascii").strip()
    return clean[:limit]


def _date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, UTC))


def _recipient_block(recipient: Recipient, action: str, now: float, retry_until: float) -> str:
    lines = [f"Final-Recipient: rfc822; {_field(recipient.address)}", f"Action: {action}"]
    default = "5.0.0" if action == FAILED else "4.0.0"
    status = recipient.status if re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", recipient.status) else ""
    if action == FAILED and not status.startswith("5"):
        # An expired or administratively bounced recipient fails for good, whatever its
        # last temporary reply was (RFC 3463 3.5: 5.4.7 delivery time expired).
        status = default
    lines.append(f"Status: {status or default}")
    if recipient.remote_mta:
        lines.append(f"Remote-MTA: dns; {_field(recipient.remote_mta)}")
    if recipient.diagnostic:
        kind = "smtp" if re.match(r"^[245]\d\d[ -]", recipient.diagnostic) else "X-txmailhost"
        lines.append(f"Diagnostic-Code: {kind}; {_field(recipient.diagnostic)}")
    if recipient.attempts:
        lines.append(f"Last-Attempt-Date: {_date(now)}")
    if action == DELAYED:
        lines.append(f"Will-Retry-Until: {_date(retry_until)}")
    return "\r\n".join(lines) + "\r\n"


_TEXT = {
    FAILED: (
        "Undelivered Mail Returned to Sender",
        "This is the mail system at {host}.\r\n\r\n"
        "Your message could not be delivered to one or more recipients. It is\r\n"
        "attached below (headers only). Nothing more will be tried for these:\r\n\r\n",
    ),
    DELAYED: (
        "Delayed Mail (still being retried)",
        "This is the mail system at {host}.\r\n\r\n"
        "Your message has not been delivered yet to the recipients below. It is\r\n"
        "still queued and will be retried until {until}; you don't need to resend it.\r\n\r\n",
    ),
}


def build_dsn(
    reporting_mta: str,
    envelope: Envelope,
    recipients: Iterable[Recipient],
    original_headers: bytes,
    *,
    action: str,
    now: float,
    retry_until: float = 0.0,
) -> bytes:
    """The complete DSN message (CRLF line ends), addressed to ``envelope.sender``."""
    if envelope.sender is None:
        raise ValueError("never a DSN to the null sender (RFC 3464 2)")
    recipients = list(recipients)
    boundary = f"{envelope.queue_id}.{secrets.token_hex(8)}/{reporting_mta}"
    subject, text = _TEXT[action]
    explanation = text.format(host=reporting_mta, until=_date(retry_until))
    for r in recipients:
        explanation += f"<{_field(r.address)}>: {_field(r.diagnostic) or r.status}\r\n"
    header = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: <{_field(envelope.sender)}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {formatdate(now)}\r\n"
        f"Message-ID: <{envelope.queue_id}.{secrets.token_hex(6)}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    status = (
        f"Reporting-MTA: dns; {reporting_mta}\r\n"
        f"X-Txmailhost-Queue-ID: {envelope.queue_id}\r\n"
        f"Arrival-Date: {_date(envelope.arrival)}\r\n"
        "\r\n" + "\r\n".join(_recipient_block(r, action, now, retry_until) for r in recipients)
    )
    headers = original_headers if original_headers.endswith(b"\r\n") else original_headers + b"\r\n"
    parts = (
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"{explanation}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"{status}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered message headers\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
    )
    return header.encode() + parts.encode() + headers + f"\r\n--{boundary}--\r\n".encode()
