"""BINARY (RFC 3516): MIME parts with their Content-Transfer-Encoding undone for FETCH
``BINARY[part]`` / ``BINARY.SIZE[part]``, and binary content given to APPEND as ``~{n}``
(literal8) stored in a form every IMAP4rev1 client can read.

Why convert on APPEND: a stored message is also served by ``BODY[]``, ``RFC822`` and POP3,
whose literals may not hold NUL (RFC 3501 §4.3); so a part whose encoding is ``binary`` or
whose octets include NUL is re-encoded as base64 (RFC 2045 §6.8) and its header says so.
``BINARY[part]`` decodes it back to the very octets the client appended (RFC 3516 §4.3).
"""

from __future__ import annotations

import base64
import binascii
import re

from txmailhost.imap import mime
from txmailhost.imap.replies import IMAPError

_IDENTITY = (b"", b"7bit", b"8bit", b"binary")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*(?:\r\n[ \t].*)*(?:\r\n|\Z)")


class UnknownCTE(IMAPError):
    """RFC 3516 §4.3: a part whose encoding the server can't decode."""

    code = "UNKNOWN-CTE"
    text = "unknown Content-Transfer-Encoding"


def encoding(part: mime.Part) -> bytes:
    value = part.get(b"content-transfer-encoding") or b""
    return value.split(b"(")[0].strip().lower()  # a trailing comment is allowed


def decoded(part: mime.Part) -> bytes:
    """The octets of ``part``'s body with its Content-Transfer-Encoding undone. Sloppy base64
    (line breaks, stray characters, missing padding) decodes as far as it goes, as mail
    readers do; an encoding other than RFC 2045's raises ``UnknownCTE``."""
    cte, body = encoding(part), part.body
    if cte in _IDENTITY:
        return body
    if cte == b"base64":
        clean = _NOT_BASE64.sub(b"", body.split(b"=", 1)[0])
        if len(clean) % 4 == 1:
            clean = clean[:-1]  # six stray bits: no octet in them
        clean += b"=" * (-len(clean) % 4)
        try:
            return base64.b64decode(clean)
        except binascii.Error:  # pragma: no cover - clean is valid base64 by construction
            return b""
    if cte == b"quoted-printable":
        return _quoted_printable(body)
    raise UnknownCTE()


_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _quoted_printable(body: bytes) -> bytes:
    """RFC 2045 §6.7: trailing whitespace on a line is not content, a final ``=`` (maybe
    followed by such whitespace) is a soft line break, ``=XX`` an octet; an ``=`` that starts
    nothing valid is kept as it is (rule 1, robustness)."""
    out = []
    lines = body.split(b"\r\n")
    for number, line in enumerate(lines):
        line = line.rstrip(b" \t")
        last = number == len(lines) - 1
        if line.endswith(b"="):
            out.append(_QP_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), line[:-1]))
            continue
        out.append(_QP_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), line))
        if not last:
            out.append(b"\r\n")
    return b"".join(out)


def needs_encoding(part: mime.Part) -> bool:
    cte = encoding(part)
    return cte in _IDENTITY and (cte == b"binary" or b"\0" in part.body)


def base64_parts(raw: bytes) -> bytes:
    """``raw`` with every leaf part that is ``binary`` or holds NUL re-encoded as base64
    (76-character lines); the message is returned unchanged when there is none."""
    edits: list[tuple[int, int, bytes]] = []
    pending = [mime.parse(raw)]
    while pending:
        part = pending.pop()
        if part.children:
            pending.extend(part.children)
        elif part.message is not None:
            pending.append(part.message)
        elif needs_encoding(part):
            data = part.body
            header = _CTE_FIELD.sub(b"", part.header)
            field = b"Content-Transfer-Encoding: base64\r\n"
            if header == b"\r\n" or header.endswith(b"\r\n\r\n"):
                header = header[:-2] + field + b"\r\n"  # before the blank line
            else:  # an entity that is all header: end it, add the field and a blank line
                if header and not header.endswith(b"\r\n"):
                    header += b"\r\n"
                header += field + b"\r\n"
            body = base64.encodebytes(data).replace(b"\n", b"\r\n")
            edits.append((part.start, part.end, header + body))
    if not edits:
        return raw
    out, position = [], 0
    for start, end, replacement in sorted(edits):
        out.append(raw[position:start])
        out.append(replacement)
        position = end
    out.append(raw[position:])
    return b"".join(out)


def literal(data: bytes) -> bytes:
    """A FETCH BINARY value: ``~{n}`` (literal8) when it holds NUL, else an ordinary literal."""
    return (b"~{%d}\r\n" if b"\0" in data else b"{%d}\r\n") % len(data) + data
