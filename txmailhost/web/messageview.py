"""One message as the reading page shows it: headers, the text to read, the attachments.

Parsed with the standard library's ``email`` package (``policy.default``: RFC 2047 words,
RFC 2231 file names, charsets), its header fields bounded first (``headerbounds.py``: an
over-long field is shown cut, never parsed for minutes), in the site's thread pool, never on
the reactor. Parts are numbered as IMAP numbers them (RFC 3501 §6.4.5: ``1``, ``2.1``, ...),
so a part's number in a download link is the one an IMAP client would use. A
``message/rfc822`` part is an attachment as a whole (``.eml``), not opened; downloaded, it is
the attached message's octets as stored, IMAP's ``BODY[n]`` (``imap.mime``), not a
re-serialisation. A MIME structure nested deeper than Python's stack shows as its header
fields and its body as text, wherever the recursion runs out.

A file name is the sender's: it is shown and downloaded without control and format
characters (Unicode categories Cc, Cf: U+202E RIGHT-TO-LEFT OVERRIDE makes
``invoice\u202efdp.exe`` read "invoiceexe.pdf").

Which part is "the body": the first ``text/plain`` and ``text/html`` parts that are not
attachments (in ``multipart/alternative`` both, usually); HTML is shown sanitised
(``sanitize.py``), plain text escaped by the template.
"""

from __future__ import annotations

import base64
import email
import email.generator
import email.parser
import functools
import io
import unicodedata
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from txmailhost.imap import mime
from txmailhost.web.headerbounds import POLICY

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


# Unicode categories taken out of a file name: controls, format characters (the bidi
# overrides and isolates, zero-width joiners), lone surrogates (8-bit octets), line breaks.
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


def _parse(raw: bytes) -> EmailMessage:
    try:
        return email.message_from_bytes(raw, policy=POLICY)  # type: ignore[return-value]
    except RecursionError:
        return _flat(raw)


def _flat(raw: bytes) -> EmailMessage:
    """MIME nested deeper than Python's stack (the standard library's parser and generator
    recurse per level: 300 levels of message/rfc822 or 1,500 of multipart, and hostile mail
    has them): the header fields, and the body shown as the text it is, instead of a page
    that fails."""
    message = email.parser.BytesParser(policy=POLICY).parsebytes(raw, headersonly=True)
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


def shown_filename(name: str) -> str:
    """A received file name as the page shows and the download names it: without the
    characters that are invisible or reorder what follows (``_HIDDEN``)."""
    return "".join(c for c in name if unicodedata.category(c) not in _HIDDEN)


def _text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset, bad encoding
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


class _Stored:
    """The message's octets and, split when first needed (once for all its attached
    messages), their MIME tree as IMAP sees it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @functools.cached_property
    def tree(self) -> mime.Part:
        return mime.parse(self.raw)


def _decoded(stored: _Stored, number: str, part: EmailMessage) -> bytes:
    if part.get_content_type() == "message/rfc822" or part.is_multipart():
        return _attached(stored, number, part)
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _attached(stored: _Stored, number: str, part: EmailMessage) -> bytes:
    """The attached message of part ``number`` as stored: IMAP's ``BODY[number]``."""
    found = mime.find_part(stored.tree, [int(n) for n in number.split(".")])
    if found is not None and (found.maintype, found.subtype) == (b"message", b"rfc822"):
        return found.body
    # the two parsers disagree on a broken structure: the attached message written out again
    inner = part.get_payload(0) if part.is_multipart() else part
    out = io.BytesIO()
    generator = email.generator.BytesGenerator(out, policy=POLICY.clone(linesep="\r\n"))
    generator.flatten(inner)
    return out.getvalue()


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
    try:
        return _view(_Stored(raw), _parse(raw))
    except RecursionError:
        return _view(_Stored(raw), _flat(raw))


def _view(stored: _Stored, message: EmailMessage) -> MessageView:
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
        named = part.get_filename() or ""
        filename = shown_filename(named)
        content_id = str(part.get("content-id", "")).strip().strip("<>")
        body = disposition != "attachment" and not named
        if body and kind == "text/plain" and view.text is None:
            view.text = _text(part)
            continue
        if body and kind == "text/html" and view.html is None:
            view.html = _text(part)
            continue
        data = _decoded(stored, number, part)
        if content_id and kind in INLINE_TYPES and len(data) <= inline_budget:
            inline_budget -= len(data)
            view.inline[content_id] = f"data:{kind};base64," + base64.b64encode(data).decode()
            if disposition == "inline" or not named:
                continue
        if not filename:
            filename = f"part-{number}" + (".eml" if kind == "message/rfc822" else "")
        view.attachments.append(Attachment(number, filename, kind, len(data)))
    return view


def extract_part(raw: bytes, number: str) -> Attachment | None:
    """The part ``number`` of the message as an Attachment with its bytes, or None."""
    try:
        return _part(_Stored(raw), _parse(raw), number)
    except RecursionError:
        return _part(_Stored(raw), _flat(raw), number)


def _part(stored: _Stored, message: EmailMessage, number: str) -> PartData | None:
    for found, part in numbered_parts(message):
        if found == number:
            kind = part.get_content_type()
            filename = shown_filename(part.get_filename() or "") or f"part-{number}"
            data = _decoded(stored, number, part)
            return PartData(number, filename, kind, len(data), data)
    return None


@dataclass(frozen=True)
class PartData(Attachment):
    data: bytes = b""
