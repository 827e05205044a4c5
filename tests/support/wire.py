"""What each protocol's replies must look like on the wire, for the protocol fuzz tests: split
a server's output into replies and fail on anything outside the grammar (a traceback, a bare
line, an unterminated literal)."""

from __future__ import annotations

import re

_SMTP_LINE = re.compile(rb"[2-5][0-9][0-9]([- ][\x20-\x7e]*)?")
_LITERAL_END = re.compile(rb"\{(\d+)\}$")
_IMAP_TAGGED = re.compile(rb"(\S+) (OK|NO|BAD)( [\x20-\x7e]*)?")


def smtp_replies(output: bytes) -> list[bytes]:
    """Every line is ``NNN-text`` or ``NNN text`` (RFC 5321 4.2) and one reply's lines share
    their code; returns the last line of each reply."""
    assert output == b"" or output.endswith(b"\r\n"), output[-200:]
    finals, code = [], None
    for line in output.split(b"\r\n")[:-1]:
        assert _SMTP_LINE.fullmatch(line), line
        assert code is None or line[:3] == code, (code, line)
        if line[3:4] == b"-":
            code = line[:3]
        else:
            code = None
            finals.append(line)
    assert code is None, "multi-line reply without its last line"
    return finals


def imap_responses(output: bytes) -> list[bytes]:
    """Split into responses (RFC 3501 §7 / §2.2.2): each is untagged (``* ...``), a
    continuation request (``+ ...``) or tagged (``tag OK|NO|BAD ...``); literals announced by
    ``{n}`` at a line end are skipped whole. Returns the responses, literals stripped."""
    responses, pos = [], 0
    while pos < len(output):
        pieces = []
        while True:
            end = output.find(b"\r\n", pos)
            assert end >= 0, f"response without CRLF: {output[pos : pos + 200]!r}"
            line = output[pos:end]
            pieces.append(line)
            pos = end + 2
            literal = _LITERAL_END.search(line)
            if literal is None:
                break
            size = int(literal[1])
            assert pos + size <= len(output), "literal runs past the end of the output"
            pos += size
        response = b"".join(pieces)
        assert (
            response.startswith((b"* ", b"+ "))
            or response == b"+"
            or _IMAP_TAGGED.fullmatch(response)
        ), response[:200]
        if not response.startswith(b"+"):
            assert all(0x20 <= c < 0x7F for c in response), response[:200]
        responses.append(response)
    return responses


def pop3_status(line: bytes) -> bool:
    """A POP3 status line (RFC 1939 §3): ``+OK ...`` or ``-ERR ...``, printable."""
    return bool(re.fullmatch(rb"(\+OK|-ERR)( [\x20-\x7e]*)?", line))


def imap_values(data: bytes) -> list:
    """Parse a run of IMAP data items (RFC 3501 §4: NIL, numbers, quoted strings, literals,
    atoms, parenthesized lists) into Python lists and bytes; fails on anything malformed."""
    values, pos = _values(data, 0, 0)
    assert pos == len(data), f"trailing data at {pos}: {data[pos : pos + 50]!r}"
    return values


def _values(data: bytes, pos: int, depth: int) -> tuple[list, int]:
    out: list = []
    while pos < len(data) and data[pos : pos + 1] != b")":
        # Lists follow lists without a space: ``1*address``, ``1*body`` (RFC 3501 §9).
        if out and not (isinstance(out[-1], list) and data[pos : pos + 1] == b"("):
            assert data[pos : pos + 1] == b" ", (
                f"expected a space at {pos}: {data[pos : pos + 50]!r}"
            )
            pos += 1
        value, pos = _value(data, pos, depth)
        out.append(value)
    return out, pos


def _value(data: bytes, pos: int, depth: int):
    c = data[pos : pos + 1]
    if c == b"(":
        assert depth < 200
        inner, pos = _values(data, pos + 1, depth + 1)
        assert data[pos : pos + 1] == b")", f"unclosed list at {pos}"
        return inner, pos + 1
    if c == b'"':
        out, pos = bytearray(), pos + 1
        while data[pos : pos + 1] != b'"':
            assert pos < len(data), "unterminated quoted string"
            if data[pos : pos + 1] == b"\\":
                assert data[pos + 1 : pos + 2] in (b'"', b"\\"), "bad escape"
                pos += 1
            assert data[pos] not in (0x0D, 0x0A, 0x00)
            out += data[pos : pos + 1]
            pos += 1
        return bytes(out), pos + 1
    if c == b"{":
        marker = re.compile(rb"\{(\d+)\}\r\n").match(data, pos)
        assert marker, f"bad literal at {pos}"
        start = marker.end()
        size = int(marker[1])
        assert start + size <= len(data), "literal runs past the end"
        return data[start : start + size], start + size
    atom = re.compile(rb"[^\x00-\x20(){%*\"\\\x7f]+").match(data, pos)
    assert atom, f"expected a value at {pos}: {data[pos : pos + 50]!r}"
    return atom[0], atom.end()
