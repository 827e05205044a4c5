"""One message as the reading page shows it: headers, the text to read, the attachments.

The MIME tree is IMAP's (``imap.mime``: byte ranges of the stored message, linear, at most
``mime.MAX_PARTS`` parts), so parts are numbered as IMAP numbers them (RFC 3501 §6.4.5:
``1``, ``2.1``, ...) and a part's number in a download link is the one an IMAP client would
use. Each leaf is then read alone by the standard library's ``email`` package
(``policy.default``: RFC 2047 words, RFC 2231 file names, charsets), its header fields
bounded first (``headerbounds.py``: an over-long field is shown cut, never parsed for
minutes), in the site's thread pool, never on the reactor. The package never parses the
whole message: it reads every line of every part, and recurses per level (400,000 tiny
parts in 4 MB took 7.7 s and 232 MiB a view; 1,500 levels raised RecursionError). A
``message/rfc822`` part is an attachment as a whole (``.eml``), not opened; downloaded, it is
the attached message's octets as stored, IMAP's ``BODY[n]``, not a re-serialisation. A
multipart past ``MAX_DEPTH`` levels, or past the parts listed, shows as its body's text.

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
import unicodedata
from dataclasses import dataclass, field
from email.message import EmailMessage

from txmailhost import charsets
from txmailhost.addresslist import shown
from txmailhost.imap import mime
from txmailhost.store.lineends import crlf_form
from txmailhost.web.headerbounds import POLICY

MAX_INLINE_IMAGES = 8 * 1024 * 1024  # octets of cid: images embedded as data: URLs
MAX_DEPTH = 100  # MIME levels opened; a multipart deeper is shown as its text
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
    cut: bool = False  # more parts than mime.MAX_PARTS: the rest aren't listed


# Unicode categories taken out of a file name: controls, format characters (the bidi
# overrides and isolates, zero-width joiners), lone surrogates (8-bit octets), line breaks.
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


def _headers(tree: mime.Part) -> EmailMessage:
    """The message's own header fields (its header block alone: the body isn't read)."""
    return email.parser.BytesParser(policy=POLICY).parsebytes(tree.header, headersonly=True)  # type: ignore[return-value]


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a header the parser can't make sense of
        value = message.get_all(name, failobj=[""])[0] if message.get_all(name) else ""
    return " ".join(str(value or "").split())


def _mailboxes(message: EmailMessage, name: str) -> str:
    """An address field as the page shows it: its mailboxes read from the field as received
    (``addresslist.shown``), so that an encoded word in a name, whatever it decodes to,
    shows as a part of that name and never as another address; the decoded text where the
    field holds no mailbox (``undisclosed-recipients:;``)."""
    for found, value in message.raw_items():
        if found.lower() == name:
            return shown(str(value)) or _header(message, name)
    return ""


def shown_filename(name: str) -> str:
    """A received file name as the page shows and the download names it: without the
    characters that are invisible or reorder what follows (``_HIDDEN``)."""
    return "".join(c for c in name if unicodedata.category(c) not in _HIDDEN)


def _text(part: EmailMessage) -> str:
    """A text part's content in its declared charset as mail readers read it
    (``charsets.py``: ``gb2312`` as GBK, ``iso-8859-1`` as Windows-1252), not U+FFFD for
    every character the label doesn't strictly have; an unknown charset as UTF-8."""
    try:
        payload = part.get_payload(decode=True) or b""
    except (ValueError, AssertionError):  # a transfer encoding that doesn't decode
        payload = b""
    if not isinstance(payload, bytes):
        return ""
    return charsets.decode(payload, part.get_content_charset() or "us-ascii")


def leaves(tree: mime.Part) -> list[tuple[str, mime.Part]]:
    """(IMAP part number, part) for every leaf of the message's MIME tree, message/rfc822
    parts unopened."""
    found: list[tuple[str, mime.Part]] = []

    def walk(part: mime.Part, number: str) -> None:  # as deep as MAX_DEPTH allows
        if part.maintype == b"multipart" and part.children:
            for index, child in enumerate(part.children, 1):
                walk(child, f"{number}.{index}" if number else str(index))
        else:
            found.append((number or "1", part))

    walk(tree, "")
    return found


def _entity(leaf: mime.Part) -> tuple[str, EmailMessage]:
    """(media type, the email package's view of the leaf alone): its file name, disposition
    and decoded content. A multipart the tree didn't open (past ``MAX_DEPTH``, past
    ``mime.MAX_PARTS``, or without a boundary that occurs) is its body as text, never parsed
    further; a message/* part is its header fields, its body the octets stored."""
    declared = mime.parse_content_value(leaf.get(b"content-type"))[0]
    parser = email.parser.BytesParser(policy=POLICY)
    if leaf.maintype in (b"multipart", b"message") or declared.startswith(b"multipart/"):
        part: EmailMessage = parser.parsebytes(leaf.header, headersonly=True)  # type: ignore[assignment]
        if leaf.maintype == b"message":
            return (leaf.maintype + b"/" + leaf.subtype).decode("ascii", "replace"), part
        del part["Content-Type"]
        del part["Content-Transfer-Encoding"]
        part["Content-Type"] = "text/plain; charset=utf-8"
        part.set_payload(leaf.body.decode("utf-8", "replace"))
        return "text/plain", part
    kind = (leaf.maintype + b"/" + leaf.subtype).decode("ascii", "replace")
    return kind, parser.parsebytes(leaf.raw[leaf.start : leaf.end])  # type: ignore[return-value]


def _decoded(leaf: mime.Part, part: EmailMessage) -> bytes:
    if leaf.maintype == b"message":  # IMAP's BODY[n]: the attached message as stored
        return leaf.body
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def read_message(raw: bytes) -> MessageView:
    """Blocking (CPU): run in a worker thread. ``raw`` as the store serves it (CRLF)."""
    tree, cut = mime.parse_counted(crlf_form(raw), max_depth=MAX_DEPTH)
    message = _headers(tree)
    view = MessageView(
        subject=_header(message, "subject"),
        sender=_mailboxes(message, "from"),
        to=_mailboxes(message, "to"),
        cc=_mailboxes(message, "cc"),
        date=_header(message, "date"),
        message_id=_header(message, "message-id"),
        cut=cut,
    )
    inline_budget = MAX_INLINE_IMAGES
    for number, leaf in leaves(tree):
        kind, part = _entity(leaf)
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
        data = _decoded(leaf, part)
        if content_id and kind in INLINE_TYPES and len(data) <= inline_budget:
            inline_budget -= len(data)
            view.inline[content_id] = f"data:{kind};base64," + base64.b64encode(data).decode()
            if disposition == "inline" or not named:
                continue
        if not filename:
            filename = f"part-{number}" + (".eml" if kind == "message/rfc822" else "")
        view.attachments.append(Attachment(number, filename, kind, len(data)))
    return view


def extract_part(raw: bytes, number: str) -> PartData | None:
    """The part ``number`` of the message as an Attachment with its bytes, or None."""
    for found, leaf in leaves(mime.parse(crlf_form(raw), max_depth=MAX_DEPTH)):
        if found == number:
            kind, part = _entity(leaf)
            filename = shown_filename(part.get_filename() or "") or f"part-{number}"
            data = _decoded(leaf, part)
            return PartData(number, filename, kind, len(data), data)
    return None


@dataclass(frozen=True)
class PartData(Attachment):
    data: bytes = b""
