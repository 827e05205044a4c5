"""One message as the reading page shows it: headers, the text to read, the attachments.

Parsed with the standard library's ``email`` package (``policy.default``: RFC 2047 words,
RFC 2231 file names, charsets) in the site's thread pool, never on the reactor. Parts are
numbered as IMAP numbers them (RFC 3501 §6.4.5: ``1``, ``2.1``, ...), so a part's number in a
download link is the one an IMAP client would use. A ``message/rfc822`` part is an
attachment as a whole (``.eml``), not opened.

Which part is "the body": the first ``text/plain`` and ``text/html`` parts that are not
attachments (in ``multipart/alternative`` both, usually); HTML is shown sanitised
(``sanitize.py``), plain text escaped by the template.
"""

from __future__ import annotations

import base64
import email
import email.parser
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

MAX_INLINE_IMAGES = 8 * 1024 * 1024  # octets of cid: images embedded as data: URLs
INLINE_TYPES = ("image/png", "image/gif", "image/jpeg", "image/webp")


@dataclass(frozen=True)
class Attachment:
    part: str  # IMAP part number
    filename: str
    content_type: str
    size: int  # decoded octets


@dataclass
class MessageView:
    subject: str = ""
    sender: str = ""
    to: str = ""
    cc: str = ""
    date: str = ""
    message_id: str = ""
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    inline: dict[str, str] = field(default_factory=dict)  # Content-ID -> data: URL


def _parse(raw: bytes) -> EmailMessage:
    try:
        return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]
    except RecursionError:
        # MIME nested deeper than Python's stack (the standard library's parser recurses per
        # level: 1,500 levels are enough, hostile mail has them): the header fields, and the
        # body shown as the text it is, instead of a page that fails.
        message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
            raw, headersonly=True
        )
        del message["Content-Type"]
        del message["Content-Transfer-Encoding"]
        message["Content-Type"] = "text/plain; charset=utf-8"
        return message  # type: ignore[return-value]


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a header the parser can't make sense of
        value = message.get_all(name, failobj=[""])[0] if message.get_all(name) else ""
    return " ".join(str(value or "").split())


def _text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset, bad encoding
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _decoded(part: EmailMessage) -> bytes:
    if part.get_content_type() == "message/rfc822" or part.is_multipart():
        return part.as_bytes(policy=email.policy.default)
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def numbered_parts(message: EmailMessage) -> list[tuple[str, EmailMessage]]:
    """(IMAP part number, part) for every leaf, message/rfc822 parts unopened."""
    found: list[tuple[str, EmailMessage]] = []

    def walk(part: Any, number: str) -> None:
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            for index, child in enumerate(part.iter_parts(), 1):
                walk(child, f"{number}.{index}" if number else str(index))
        else:
            found.append((number or "1", part))

    walk(message, "")
    return found


def read_message(raw: bytes) -> MessageView:
    """Blocking (CPU): run in a worker thread."""
    message = _parse(raw)
    view = MessageView(
        subject=_header(message, "subject"),
        sender=_header(message, "from"),
        to=_header(message, "to"),
        cc=_header(message, "cc"),
        date=_header(message, "date"),
        message_id=_header(message, "message-id"),
    )
    inline_budget = MAX_INLINE_IMAGES
    for number, part in numbered_parts(message):
        kind = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = part.get_filename() or ""
        content_id = str(part.get("content-id", "")).strip().strip("<>")
        body = disposition != "attachment" and not filename
        if body and kind == "text/plain" and view.text is None:
            view.text = _text(part)
            continue
        if body and kind == "text/html" and view.html is None:
            view.html = _text(part)
            continue
        data = _decoded(part)
        if content_id and kind in INLINE_TYPES and len(data) <= inline_budget:
            inline_budget -= len(data)
            view.inline[content_id] = f"data:{kind};base64," + base64.b64encode(data).decode()
            if disposition == "inline" or not filename:
                continue
        if not filename:
            filename = f"part-{number}" + (".eml" if kind == "message/rfc822" else "")
        view.attachments.append(Attachment(number, filename, kind, len(data)))
    return view


def extract_part(raw: bytes, number: str) -> Attachment | None:
    """The part ``number`` of the message as an Attachment with its bytes, or None."""
    for found, part in numbered_parts(_parse(raw)):
        if found == number:
            kind = part.get_content_type()
            filename = part.get_filename() or f"part-{number}"
            data = _decoded(part)
            return PartData(number, filename, kind, len(data), data)
    return None


@dataclass(frozen=True)
class PartData(Attachment):
    data: bytes = b""
