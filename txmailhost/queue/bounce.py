"""Delivery status notifications: what the sender receives when mail fails or is late.

A DSN is a ``multipart/report; report-type=delivery-status`` message (RFC 6522) with three
parts (RFC 3464 2): a human-readable explanation, the ``message/delivery-status`` part with
one per-message block (``Reporting-MTA``, ``Arrival-Date``) and one block per recipient
(``Final-Recipient``, ``Action``, ``Status``, ``Remote-MTA``, ``Diagnostic-Code``,
``Last-Attempt-Date``, ``Will-Retry-Until``), and the original message's header section as
``text/rfc822-headers`` (RFC 3462: the headers, not the body, so a bounce can't be used to
reflect content at a third party) — or, when the sender asked for it with ``RET=FULL`` (RFC 3461
4.3), the whole message as ``message/rfc822`` for a failure, within ``QueuePolicy.
return_full_limit`` (never for REQUIRETLS mail, whose RET=FULL is disregarded: RFC 8689 5).
``ENVID`` and ``ORCPT`` come back as ``Original-Envelope-Id`` and ``Original-Recipient``. Besides failures and delays, ``delivered`` and ``relayed`` reports go
out for recipients whose NOTIFY asked for SUCCESS (RFC 3461 4.1); ``NOTIFY=NEVER`` silences all
of them.

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
DELIVERED = "delivered"  # RFC 3464 2.3.3: at the final destination (local delivery)
RELAYED = "relayed"  # ... or handed to a server that won't send DSNs itself

# C0, DEL, C1 (NEL) and the Unicode line and paragraph separators: a UTF-8 report keeps
# non-ASCII text, and Python's str.splitlines() and some readers break lines at these too.
# Lone surrogates stand for octets that weren't UTF-8 (an xtext ORCPT queued before the SMTP
# server refused those): kept, they made the report impossible to encode, so never sent.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")


def _field(value: str, limit: int = 900, utf8: bool = False) -> str:
    """A header field value from text we don't control (a remote reply): one line, and ASCII
    unless the report is a ``message/global-delivery-status`` (RFC 6533).

    CR/LF are what a hostile server would use to inject fields into the report.
    """
    clean = _UNSAFE.sub(" ", value)
    if not utf8:
        clean = clean.encode("ascii", "replace").decode("ascii")
    return clean.strip()[:limit]


def _header_section(original: bytes) -> bytes:
    """The original's header section: up to its first empty line, whichever line end it uses.

    Both callers cut at CRLF CRLF (``spool.read_header``, ``IncomingMessage.header_block``),
    and a BODY=BINARYMIME message, the only kind the SMTP server takes with bare LFs (RFC
    3030 3), may have none: its "headers" then ran on through its body, up to 64 KiB in a
    failure report and 1 MiB in a success one, whatever RET said (RFC 3461 4.3)."""
    ends = [i for i in (original.find(b"\r\n\r\n"), original.find(b"\n\n")) if i >= 0]
    if not ends:
        return original
    end = min(ends)
    return original[: end + (2 if original.startswith(b"\r\n", end) else 1)]


def _date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, UTC))


def _address_type(address: str) -> str:
    """``rfc822`` for an ASCII address, ``utf-8`` for an internationalised one (RFC 6533 3)."""
    return "rfc822" if address.isascii() else "utf-8"


def _recipient_block(
    recipient: Recipient, action: str, now: float, retry_until: float, utf8: bool
) -> str:
    address = _field(recipient.address, utf8=utf8)
    lines = []
    if recipient.orcpt:  # RFC 3464 2.3.1, from the sender's ORCPT (RFC 3461 4.2)
        kind, _, original = recipient.orcpt.partition(";")
        lines.append(f"Original-Recipient: {_field(kind)};{_field(original, utf8=utf8)}")
    lines += [f"Final-Recipient: {_address_type(address)}; {address}", f"Action: {action}"]
    default = {FAILED: "5.0.0", DELAYED: "4.0.0"}.get(action, "2.0.0")
    status = recipient.status if re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", recipient.status) else ""
    if action == FAILED and not status.startswith("5"):
        # An expired or administratively bounced recipient fails for good, whatever its
        # last temporary reply was (RFC 3463 3.5: 5.4.7 delivery time expired).
        status = default
    if action in (DELIVERED, RELAYED) and not status.startswith("2"):
        status = default
    lines.append(f"Status: {status or default}")
    if recipient.remote_mta:
        lines.append(f"Remote-MTA: dns; {_field(recipient.remote_mta)}")
    if recipient.diagnostic:
        kind = "smtp" if re.match(r"^[245]\d\d[ -]", recipient.diagnostic) else "X-txmailhost"
        lines.append(f"Diagnostic-Code: {kind}; {_field(recipient.diagnostic, utf8=utf8)}")
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
        "attached below ({returned}). Nothing more will be tried for these:\r\n\r\n",
    ),
    DELAYED: (
        "Delayed Mail (still being retried)",
        "This is the mail system at {host}.\r\n\r\n"
        "Your message has not been delivered yet to the recipients below. It is\r\n"
        "still queued and will be retried until {until}; you don't need to resend it.\r\n\r\n",
    ),
    DELIVERED: (
        "Successful Mail Delivery Report",
        "This is the mail system at {host}.\r\n\r\n"
        "Your message was delivered to the mailboxes of the recipients below, as\r\n"
        "you asked (NOTIFY=SUCCESS):\r\n\r\n",
    ),
    RELAYED: (
        "Mail Delivery Report (relayed)",
        "This is the mail system at {host}.\r\n\r\n"
        "Your message was handed to the recipients' mail server, which does not\r\n"
        "send delivery notifications; this is the last report you will get for:\r\n\r\n",
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
    full_message: bytes | None = None,
) -> bytes:
    """The complete DSN message (CRLF line ends), addressed to ``envelope.sender``.

    ``full_message`` (the original, for RET=FULL: RFC 3461 4.3) is returned in place of the
    header section when given; the caller decides when that is allowed (failures only, within
    a size bound). An SMTPUTF8 message gets the RFC 6533 types (``message/global-*``) so its
    UTF-8 addresses and header fields are reported as they are.
    """
    if envelope.sender is None:
        raise ValueError("never a DSN to the null sender (RFC 3464 2)")
    recipients = list(recipients)
    utf8 = envelope.smtputf8
    boundary = f"{envelope.queue_id}.{secrets.token_hex(8)}/{reporting_mta}"
    subject, text = _TEXT[action]
    returned = "the whole message" if full_message is not None else "headers only"
    explanation = text.format(host=reporting_mta, until=_date(retry_until), returned=returned)
    for r in recipients:
        explanation += (
            f"<{_field(r.address, utf8=utf8)}>: {_field(r.diagnostic, utf8=utf8) or r.status}\r\n"
        )
    header = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: <{_field(envelope.sender, utf8=utf8)}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {formatdate(now)}\r\n"
        f"Message-ID: <{envelope.queue_id}.{secrets.token_hex(6)}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: multipart/report; report-type={'global-' if utf8 else ''}delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    envid = f"Original-Envelope-Id: {_field(envelope.envid, 100)}\r\n" if envelope.envid else ""
    status = (
        f"{envid}Reporting-MTA: dns; {reporting_mta}\r\n"
        f"X-Txmailhost-Queue-ID: {envelope.queue_id}\r\n"
        f"Arrival-Date: {_date(envelope.arrival)}\r\n"
        "\r\n"
        + "\r\n".join(_recipient_block(r, action, now, retry_until, utf8) for r in recipients)
    )
    if full_message is not None:
        content, kind = full_message, "message/global" if utf8 else "message/rfc822"
        description = "Undelivered message"
    else:
        headers = _header_section(original_headers)
        content = headers if headers.endswith(b"\r\n") else headers + b"\r\n"
        kind = "message/global-headers" if utf8 else "text/rfc822-headers"
        description = "Message headers"
    parts = (
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        f"Content-Type: text/plain; charset={'utf-8' if utf8 else 'us-ascii'}\r\n\r\n"
        f"{explanation}\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        f"Content-Type: message/{'global-' if utf8 else ''}delivery-status\r\n\r\n"
        f"{status}\r\n"
        f"--{boundary}\r\n"
        f"Content-Description: {description}\r\n"
        f"Content-Type: {kind}\r\n\r\n"
    )
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return header.encode() + parts.encode() + content + f"\r\n--{boundary}--\r\n".encode()
