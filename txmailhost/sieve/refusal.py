"""The message a Sieve ``reject`` sends back (RFC 5429 2.1.1): an MDN (RFC 8098).

The script runs after the ``250`` (the message was accepted), so the refusal can't be an SMTP
reply; RFC 5429 then asks for a Message Disposition Notification to the envelope sender, sent
from ``<>`` so that it can't bounce back: a ``multipart/report`` with the reason for people,
a ``message/disposition-notification`` part (``Disposition: automatic-action/
MDN-sent-automatically; deleted``) for programs, and the refused message's header. Never to
``<>`` (the caller checks). The refused message's Message-ID and Subject pass through
``replyfields`` (only a real msg-id, text on one line) so they can write no field of the MDN.
"""

from __future__ import annotations

import secrets
from email.utils import formatdate, make_msgid

from txmailhost.replyfields import header_text, reply_ids
from txmailhost.sieve.message import MessageView

MAX_HEADER_COPY = 64 * 1024


def rejection(view: MessageView, reason: str, user: str, hostname: str) -> bytes:
    """The MDN refusing ``view`` (for ``user``, with the script's ``reason``)."""
    subject = header_text("Rejected: " + (view.values("Subject") or [""])[0])
    # The raw field, never the decoded one: only a real msg-id (replyfields).
    message_id, _references = reply_ids((view.fields.get("message-id") or [""])[0], "")
    boundary = f"txmailhost-reject-{secrets.token_hex(8)}"
    text = reason.replace("\r\n", "\n").replace("\n", "\r\n").rstrip("\r\n")
    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{view.sender}>",
        f"Subject: {subject}",
        f"Date: {formatdate(localtime=False)}",
        f"Message-ID: {make_msgid('reject', domain=hostname)}",
        "Auto-Submitted: auto-replied (rejected)",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=disposition-notification; boundary="{boundary}"',
    ]
    if message_id:
        headers.append(f"In-Reply-To: {message_id}")
    notification = [
        f"Reporting-UA: {hostname}; txmailhost",
        f"Final-Recipient: rfc822; {user}",
        *([f"Original-Message-ID: {message_id}"] if message_id else []),
        "Disposition: automatic-action/MDN-sent-automatically; deleted",
    ]
    original = view.raw_header[:MAX_HEADER_COPY].decode("utf-8", "replace").rstrip("\r\n")
    parts = [
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"Your message to {user} was refused by the recipient's rules:\r\n\r\n{text}\r\n",
        "Content-Type: message/disposition-notification\r\n\r\n" + "\r\n".join(notification)
        + "\r\n",
        "Content-Type: text/rfc822-headers; charset=utf-8\r\nContent-Transfer-Encoding: 8bit"
        f"\r\n\r\n{original}\r\n",
    ]  # fmt: skip
    body = "".join(f"--{boundary}\r\n{part}" for part in parts) + f"--{boundary}--\r\n"
    # "replace": a variable may have put an octet that isn't UTF-8 into the reason
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8", "replace")
