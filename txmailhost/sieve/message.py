"""What a Sieve script sees of a message: its envelope, header fields, addresses, size, body.

Built from the delivered file without reading it whole: the header section is read up to
``MAX_HEADER`` octets (all of any message SMTP takes, whose header section is at most 1 MiB,
with the fields the server adds on top; a larger one is cut there), and the body
only when a ``body`` test asks, up to ``MAX_BODY``. Header values are unfolded and their
RFC 2047 encoded words decoded (RFC 5228 2.7.2: tests compare decoded text); addresses come
from the header's address list (groups flattened, RFC 5228 5.1).

The envelope sender is the message's own ``Return-Path:`` field, the one our SMTP server writes
on top of every message it accepts (RFC 5321 4.4): the spool record doesn't repeat it, and a
message the server wrote itself (a DSN, a notice) has none and counts as from ``<>``, so no
automatic reply ever answers it.
"""

from __future__ import annotations

import contextlib
import email.header
import email.utils
import os
import re
from dataclasses import dataclass, field
from email.message import Message

from txmailhost import charsets
from txmailhost.addresslist import get_addresses, parse_address
from txmailhost.encodedwords import decode_words
from txmailhost.headerlimit import STORED_HEADER_LIMIT
from txmailhost.hiddenparts import behind_reused_boundary
from txmailhost.mimenesting import TooNested, parse_bytes
from txmailhost.visibletext import html_text

# SMTP's limit and room for our own fields (``headerlimit.py``): a From: or Subject: after
# 256 KiB of padding once escaped the user's rules.
MAX_HEADER = STORED_HEADER_LIMIT
MAX_BODY = 4 * 1024 * 1024
_EMPTY_LINE = re.compile(rb"(?:\A|\n)\r?\n")
_FIRST_RECEIVED = re.compile(rb"(?:\A|\n)received[ \t]*:", re.IGNORECASE)


def decode_value(raw: str) -> str:
    """An unfolded header value with its encoded words decoded (undecodable ones kept as
    is), then without leading and trailing white space: an encoded word's own trailing
    ``_`` is not part of the value, as Pigeonhole reads it."""
    return decode_words(raw.strip()).strip()


def parse_header(raw: bytes) -> dict[str, list[str]]:
    """Field name (lower case) -> raw values in order, unfolded (RFC 5322 2.2.3: the line
    break goes, the white space after it stays, as Pigeonhole keeps it: a rule comparing a
    folded subject ``:is`` sees its spaces as sent), leading and trailing white space
    removed. Octets that aren't UTF-8 are kept as surrogate escapes; lines without a colon
    are skipped."""
    fields: dict[str, list[str]] = {}
    text = raw.decode("utf-8", "surrogateescape")
    name: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            break
        if line[0] in " \t" and name is not None:
            fields[name][-1] += line
            continue
        field_name, colon, value = line.partition(":")
        if not colon or not field_name or " " in field_name.strip():
            name = None
            continue
        name = field_name.strip().lower()
        fields.setdefault(name, []).append(value)
    return {name: [value.strip() for value in values] for name, values in fields.items()}


@dataclass
class MessageView:
    """One message as the interpreter asks about it; what it asks is worked out once."""

    fields: dict[str, list[str]]  # lower-case name -> raw unfolded values
    size: int
    sender: str | None  # envelope MAIL FROM; None for <>
    recipient: str  # envelope RCPT TO of this copy (the user's address)
    path: str | None = None
    raw_header: bytes = field(default=b"", repr=False)  # as received (a reject's MDN copies it)
    _body: Message | None = field(default=None, repr=False)
    _octets: bytes | None = field(default=None, repr=False)  # the message, up to MAX_BODY
    _values: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _addresses: dict[str, list[str]] = field(default_factory=dict, repr=False)

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
        view._octets = data[: MAX_HEADER + MAX_BODY]
        return view

    @classmethod
    def from_header_bytes(
        cls, raw: bytes, size: int, recipient: str, path: str | None = None
    ) -> MessageView:
        fields = parse_header(raw)
        sender = _return_path(fields.get("return-path", []))
        return cls(fields, size, sender, recipient, path, raw)

    def values(self, name: str) -> list[str]:
        """The decoded values of every field called ``name``, in order."""
        key = name.lower()
        found = self._values.get(key)
        if found is None:
            found = self._values[key] = [decode_value(v) for v in self.fields.get(key, [])]
        return found

    def values_on_top(self, name: str) -> list[str]:
        """The decoded values of the ``name`` fields above the first ``Received:``: the ones
        this server's filters wrote (they go on top of its Received:, ``filters/chain.py``).
        One the sender wrote sits below our Received:, whether or not a filter that removes
        it ran (none runs for authenticated mail, or when the chain leaves it out), so RFC
        5235's tests read only these. A header without a Received: (mail the server wrote
        itself: notices, reports) is all ours."""
        end = _FIRST_RECEIVED.search(self.raw_header)
        if end is None:
            return self.values(name)
        on_top = parse_header(self.raw_header[: end.start()])
        return [decode_value(v) for v in on_top.get(name.lower(), [])]

    def addresses(self, name: str) -> list[str]:
        """The ``local@domain`` of every address in every field called ``name``."""
        key = name.lower()
        found = self._addresses.get(key)
        if found is None:
            raw = self.fields.get(key, [])
            found = [address for _display, address in get_addresses(raw) if address]
            self._addresses[key] = found
        return found

    def address_fields(self, name: str) -> list[list[str]]:
        """The addresses of each field called ``name``, field by field (for ``:index``)."""
        return [
            [address for _display, address in get_addresses([raw]) if address]
            for raw in self.fields.get(name.lower(), [])
        ]

    def exists(self, name: str) -> bool:
        return name.lower() in self.fields

    def body(self) -> Message:
        """The whole message (headers and body), read on first use, up to MAX_BODY octets.

        Python's parser recurses once per nesting level, and its time grows with the depth
        times the length (``mimenesting``): a message nested deeper than mail is
        (``MAX_DEPTH``), or than the parser can go (about 1,000 levels), is searched as
        one text part, its body as it is, rather than costing minutes or failing the script
        for a reason that isn't the script's."""
        if self._body is None:
            octets = self._read()
            with contextlib.suppress(RecursionError, TooNested):
                self._body = parse_bytes(octets)
            if self._body is None:
                flat = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + _after_header(octets)
                self._body = email.message_from_bytes(flat)
        return self._body

    def raw_body(self) -> str:
        """The body as received, undecoded (``body :raw``, RFC 5173 5.1): the octets after
        the header, never re-serialised from the parsed message (which recurses per level)."""
        return _after_header(self._read()).decode("utf-8", "replace")

    def _read(self) -> bytes:
        if self._octets is None:
            assert self.path is not None
            with open(self.path, "rb") as f:
                self._octets = f.read(MAX_HEADER + MAX_BODY)
        return self._octets


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


def _after_header(octets: bytes) -> bytes:
    """What follows the header section's empty line (CRLF or, in a Maildir written with LF,
    LF line ends); nothing when there is no empty line."""
    found = _EMPTY_LINE.search(octets)
    return octets[found.end() :] if found else b""


def _return_path(values: list[str]) -> str | None:
    """The first Return-Path's address; None for ``<>`` or none at all."""
    if not values:
        return None
    value = values[0].strip()
    _display, address = parse_address(value)
    return address or None


def body_text(
    message: Message, transform: str, content_types: list[str] | None = None
) -> list[str]:
    """The text a ``body`` test searches (RFC 5173 5): ``text`` the decoded text/* parts
    (HTML as its reader sees it: ``visibletext.py``),
    ``content`` the decoded parts whose type matches one of ``content_types`` (``"text"`` a
    whole type, ``"text/html"`` one subtype, ``""`` all). ``raw`` is
    :meth:`MessageView.raw_body`."""
    wanted = content_types if transform == "content" else ["text"]
    found = []
    for part in [*message.walk(), *behind_reused_boundary(message)]:
        if part.is_multipart():
            continue
        maintype, subtype = part.get_content_maintype(), part.get_content_subtype()
        if not any(_type_matches(t, maintype, subtype) for t in wanted):
            continue
        payload = part.get_payload(decode=True) or b""
        text = charsets.decode(payload, part.get_content_charset() or "us-ascii")
        if transform == "text" and subtype == "html":
            # RFC 5173 5.2: ":text" is what a reader sees; tags and their attributes (a
            # link's href, a title) are no text, as in Pigeonhole and IMAP SEARCH
            text = html_text(text)
        found.append(text)
    return found


def _type_matches(wanted: str, maintype: str, subtype: str) -> bool:
    wanted = wanted.lower()
    if wanted == "":
        return True
    if "/" in wanted:
        return wanted == f"{maintype}/{subtype}"
    return wanted == maintype
