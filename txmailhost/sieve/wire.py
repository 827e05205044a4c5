"""ManageSieve's wire (RFC 5804 section 4): command lines with quoted strings and literals, and
the responses the server writes, as data.

A command is a verb (an atom) and arguments: atoms (``number``), quoted strings (``\\"`` and
``\\\\`` escapes) and literals ``{n}`` or ``{n+}`` followed by CRLF and n octets. The client
sends both literal forms without waiting (RFC 5804 has no continuation for them), so the
parser reads from one buffer: :func:`take_command` returns a whole command once all of it has
arrived, None while more is needed, and raises :class:`WireError` for what can't be one.

Responses (:class:`Response`): ``OK``, ``NO`` or ``BYE``, an optional response code in
parentheses (``NONEXISTENT``, ``QUOTA/MAXSIZE``, ``TAG {..}``...) and an optional text, sent as
a quoted string or, when it holds CR, LF or is long, as a literal — so nothing a client or a
script puts in a message can end a response early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRLF = b"\r\n"
_ATOM = re.compile(rb"[A-Za-z0-9_.+:-]+")
_LITERAL = re.compile(rb"\{([0-9]{1,10})(\+?)\}\r\n")


class WireError(ValueError):
    """A command that can't be parsed; ``consumed`` octets of the buffer belong to it (up to
    and including its line end), ``closes`` when the session can't go on (a literal too
    large to skip)."""

    def __init__(self, message: str, consumed: int, closes: bool = False) -> None:
        super().__init__(message)
        self.consumed = consumed
        self.closes = closes


@dataclass(frozen=True)
class Command:
    verb: str  # upper case
    arguments: list[bytes | str]  # bytes: a string (quoted or literal); str: an atom


def take_command(
    buffer: bytes | bytearray, max_line: int, max_literal: int
) -> tuple[Command, int] | None:
    """The first whole command in ``buffer`` and the octets it took, or None for more."""
    pos = 0
    tokens: list[bytes | str] = []
    line_octets = 0  # octets outside literals: bounded by max_line
    length = len(buffer)
    while True:
        while pos < length and buffer[pos] == 0x20:
            pos += 1
        if pos >= length:
            if length > max_line:
                raise WireError("line too long", length, closes=True)
            return None
        byte = buffer[pos]
        if buffer.startswith(CRLF, pos):
            pos += 2
            if not tokens:
                raise WireError("empty command", pos)
            verb = tokens[0]
            if not isinstance(verb, str):
                raise WireError("a command starts with its name", pos)
            return Command(verb.upper(), tokens[1:]), pos
        if byte == 0x0D or byte == 0x0A:
            end = _line_end(buffer, pos)
            if end is None:
                return None
            raise WireError("bare CR or LF", end)
        if byte == 0x22:  # quoted string
            found = _quoted(buffer, pos)
            if found is None:
                if length - pos > max_line:
                    raise WireError("line too long", length, closes=True)
                return None
            value, end = found
            if value is _BAD:
                raise WireError(
                    "a quoted string can't hold CR, LF or NUL", _after_line(buffer, end)
                )
            tokens.append(value)  # type: ignore[arg-type]
            line_octets += end - pos
            pos = end
        elif byte == 0x7B:  # literal
            match = _LITERAL.match(buffer, pos)
            if match is None:
                if b"\r\n" not in buffer[pos : pos + 16] and length - pos < 16:
                    return None
                raise WireError("malformed literal", _after_line(buffer, pos))
            size = int(match.group(1))
            if size > max_literal:
                raise WireError(f"literal larger than {max_literal} octets", length, closes=True)
            start = match.end()
            if length < start + size:
                return None
            tokens.append(bytes(buffer[start : start + size]))
            pos = start + size
        else:
            match = _ATOM.match(buffer, pos)
            if match is None:
                raise WireError("unexpected character", _after_line(buffer, pos))
            tokens.append(match.group().decode("ascii"))
            line_octets += match.end() - pos
            pos = match.end()
        if line_octets > max_line:
            raise WireError("line too long", _after_line(buffer, pos), closes=True)
        if len(tokens) > 16:
            raise WireError("too many arguments", _after_line(buffer, pos))


_BAD = b"\0bad"


def _quoted(buffer: bytes | bytearray, pos: int) -> tuple[bytes, int] | None:
    out = bytearray()
    i = pos + 1
    while i < len(buffer):
        byte = buffer[i]
        if byte == 0x22:
            return bytes(out), i + 1
        if byte == 0x5C:
            if i + 1 >= len(buffer):
                return None
            out.append(buffer[i + 1])
            i += 2
            continue
        if byte in (0x0D, 0x0A, 0x00):
            return _BAD, i
        out.append(byte)
        i += 1
    return None


def _line_end(buffer: bytes | bytearray, pos: int) -> int | None:
    end = buffer.find(b"\n", pos)
    return None if end < 0 else end + 1


def _after_line(buffer: bytes | bytearray, pos: int) -> int:
    """Where the line holding ``pos`` ends (everything, when it hasn't yet)."""
    end = _line_end(buffer, pos)
    return len(buffer) if end is None else end


# -- responses ---------------------------------------------------------------------------------


def string(value: str | bytes) -> bytes:
    """``value`` as a quoted string, or a literal when it can't be quoted (RFC 5804 4)."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) > 1024 or any(b in raw for b in b"\r\n\0"):
        return b"{%d}\r\n" % len(raw) + raw
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@dataclass(frozen=True)
class Response:
    """``OK``, ``NO`` or ``BYE`` with an optional code and text (RFC 5804 1.3, 4)."""

    kind: str
    text: str | None = None
    code: str | None = None  # e.g. "NONEXISTENT", 'TAG "abc"' (already in wire form)
    closes: bool = False
    lines: bytes = b""  # data before the status line (LISTSCRIPTS, GETSCRIPT, CAPABILITY)

    def render(self) -> bytes:
        out = self.lines + self.kind.encode("ascii")
        if self.code:
            out += b" (" + self.code.encode("utf-8") + b")"
        if self.text is not None:
            out += b" " + string(self.text)
        return out + CRLF


def ok(text: str | None = None, code: str | None = None, lines: bytes = b"") -> Response:
    return Response("OK", text, code, lines=lines)


def no(text: str, code: str | None = None, closes: bool = False) -> Response:
    return Response("NO", text, code, closes)


def bye(text: str, code: str | None = None) -> Response:
    return Response("BYE", text, code, closes=True)
