"""What a Sieve script sees of a message: its envelope, header fields, addresses, size, body.

Built from the delivered file without reading it whole: the header section is read up to
``MAX_HEADER`` octets (enough for any real message; a larger one is cut there), and the body
only when a ``body`` test asks, up to ``MAX_BODY``. Header values are unfolded and their
RFC 2047 encoded words decoded (RFC 5228 2.7.2: tests compare decoded text); addresses come
from the header's address list (groups flattened, RFC 5228 5.1).

The envelope sender is the message's own ``Return-Path:`` field, the one our SMTP server writes
on top of every message it accepts (RFC 5321 4.4): the spool record doesn't repeat it, and a
message the server wrote itself (a DSN, a notice) has none and counts as from ``<>``, so no
automatic reply ever answers it.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import email.utils
import os
from dataclasses import dataclass, field
from email.message import Message

MAX_HEADER = 256 * 1024
MAX_BODY = 4 * 1024 * 1024


def decode_value(raw: str) -> str:
    """An unfolded header value with its encoded words decoded; undecodable ones kept as is."""
    unfolded = raw.replace("\r\n", "").replace("\n", "").strip()
    try:
        return str(email.header.make_header(email.header.decode_header(unfolded)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return unfolded


@dataclass
class MessageView:
    """One message as the interpreter asks about it."""

    header: Message  # the header section (compat32: values as written)
    size: int
    sender: str | None  # envelope MAIL FROM; None for <>
    recipient: str  # envelope RCPT TO of this copy (the user's address)
    path: str | None = None
    _body: Message | None = field(default=None, repr=False)

    @classmethod
    def from_path(cls, path: str, recipient: str) -> MessageView:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = _header_section(f)
        return cls.from_header_bytes(raw, size, recipient, path)

    @classmethod
    def from_bytes(cls, data: bytes, recipient: str, sender: str | None = None) -> MessageView:
        end = data.find(b"\r\n\r\n")
        head = data if end < 0 else data[: end + 4]
        view = cls.from_header_bytes(head, len(data), recipient)
        if sender is not None:
            view.sender = sender or None
        view._body = email.message_from_bytes(data[: MAX_HEADER + MAX_BODY])
        return view

    @classmethod
    def from_header_bytes(
        cls, raw: bytes, size: int, recipient: str, path: str | None = None
    ) -> MessageView:
        header = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw)
        sender = _return_path(header.get_all("Return-Path") or [])
        return cls(header, size, sender, recipient, path)

    def values(self, name: str) -> list[str]:
        """The decoded values of every field called ``name``, in order."""
        return [decode_value(str(v)) for v in self.header.get_all(name) or []]

    def addresses(self, name: str) -> list[str]:
        """The ``local@domain`` of every address in every field called ``name``."""
        raw = [
            str(v).replace("\r\n", " ").replace("\n", " ") for v in self.header.get_all(name) or []
        ]
        return [address for _display, address in email.utils.getaddresses(raw) if address]

    def exists(self, name: str) -> bool:
        return self.header.get(name) is not None

    def body(self) -> Message:
        """The whole message (headers and body), read on first use, up to MAX_BODY octets."""
        if self._body is None:
            assert self.path is not None
            with open(self.path, "rb") as f:
                self._body = email.message_from_bytes(f.read(MAX_HEADER + MAX_BODY))
        return self._body


def _header_section(file) -> bytes:  # noqa: ANN001 - a binary file
    lines = []
    total = 0
    while total < MAX_HEADER:
        line = file.readline(MAX_HEADER - total)
        if not line or line in (b"\r\n", b"\n"):
            break
        lines.append(line)
        total += len(line)
    return b"".join(lines) + b"\r\n"


def _return_path(values: list) -> str | None:
    """The first Return-Path's address; None for ``<>`` or none at all."""
    if not values:
        return None
    value = str(values[0]).strip()
    _display, address = email.utils.parseaddr(value)
    return address or None


def body_text(
    message: Message, transform: str, content_types: list[str] | None = None
) -> list[str]:
    """The text a ``body`` test searches (RFC 5173 5): ``raw`` the undecoded body, ``text``
    the decoded text/* parts, ``content`` the decoded parts whose type matches one of
    ``content_types`` (``"text"`` a whole type, ``"text/html"`` one subtype, ``""`` all)."""
    if transform == "raw":
        payload = message.as_bytes().split(b"\n\n", 1)
        body = payload[1] if len(payload) > 1 else b""
        return [body.decode("utf-8", "replace")]
    wanted = content_types if transform == "content" else ["text"]
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
        if not any(_type_matches(t, maintype, subtype) for t in wanted):
            continue
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "us-ascii"
        try:
            found.append(payload.decode(charset, "replace"))
        except LookupError:
            found.append(payload.decode("utf-8", "replace"))
    return found


def _type_matches(wanted: str, maintype: str, subtype: str) -> bool:
    wanted = wanted.lower()
    if wanted == "":
        return True
    if "/" in wanted:
        return wanted == f"{maintype}/{subtype}"
    return wanted == maintype
