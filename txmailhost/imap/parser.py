"""Reading IMAP command arguments (RFC 3501 §9 formal syntax), one token at a time.

The protocol assembles a command from its line and the literals that followed ``{n}`` markers
(§4.3, RFC 7888 ``{n+}``); ``Reader`` walks the result with one method per grammar element
(``atom``, ``astring``, ``string``, ``number``, ``parenthesized``). A literal is consumed only at
the exact place its ``{n}`` marker ended the line, so a ``{5}`` inside a quoted string stays text.
Every error is a ``ParseError``, which the protocol answers with ``BAD`` and the command's tag;
nesting depth is bounded so a client can't make us recurse without end.

Why not Twisted's parser: quoted strings there don't handle ``\\"``, and file literals are
unbounded (see notes/twisted-mail-audit.md §4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3501 §9: atom-specials are ( ) { SP CTL % * " \ ]
_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(32)) | {127}
_ASTRING_SPECIALS = _ATOM_SPECIALS - {ord("]")}
# The tag is echoed in the reply, so only what §9 allows (CHAR is 7-bit; no "+"), never 8-bit.
_TAG_SPECIALS = _ASTRING_SPECIALS | {ord("+")} | frozenset(range(0x80, 0x100))
_LIST_SPECIALS = _ATOM_SPECIALS - {ord("%"), ord("*"), ord("]")}  # list-char for LIST patterns
LITERAL_MARKER = re.compile(rb"\{(\d{1,20})(\+?)\}$")
_SEQUENCE_STOP = frozenset(b" ()") | frozenset(range(32))
# nz-number is at most 2^32-1 (RFC 3501 §9 "number"): ten digits, so int() never sees a
# number longer than Python's 4300-digit conversion limit (found by tests/imap/*_props.py).
_SEQUENCE_SET = re.compile(rb"(\d{1,10}|\*)(:(\d{1,10}|\*))?(,(\d{1,10}|\*)(:(\d{1,10}|\*))?)*")
MAX_DEPTH = 16  # nesting of parenthesized lists and SEARCH keys


class ParseError(Exception):
    """The command is not well-formed; the reply is ``BAD`` with this text."""


@dataclass(frozen=True)
class LiteralFile:
    """A literal too large to keep in memory, written to ``path`` (APPEND's message)."""

    path: str
    size: int


class Reader:
    """A cursor over one assembled command: ``text`` with ``literals`` keyed by the offset of
    the end of their ``{n}`` marker in ``text``."""

    def __init__(self, text: bytes, literals: dict[int, bytes | LiteralFile] | None = None):
        self.text = text
        self.pos = 0
        self.literals = literals or {}
        self.depth = 0

    # -- positions ---------------------------------------------------------------------------

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self, n: int = 1) -> bytes:
        return self.text[self.pos : self.pos + n]

    def peek_upper(self, word: bytes) -> bool:
        return self.text[self.pos : self.pos + len(word)].upper() == word

    def expect(self, token: bytes) -> None:
        if not self.peek_upper(token):
            raise ParseError(f"expected {token.decode()!r}")
        self.pos += len(token)

    def sp(self) -> None:
        if self.peek() != b" ":
            raise ParseError("expected a space" if not self.at_end() else "missing argument")
        self.pos += 1

    def skip_sp(self) -> bool:
        """Consume one space if present; True if there was one."""
        if self.peek() == b" ":
            self.pos += 1
            return True
        return False

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("unexpected characters at the end of the command")

    # -- tokens ------------------------------------------------------------------------------

    def _run(self, specials: frozenset[int]) -> bytes:
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in specials:
            self.pos += 1
        return text[start : self.pos]

    def atom(self) -> bytes:
        token = self._run(_ATOM_SPECIALS)
        if not token:
            raise ParseError("expected an atom" if not self.at_end() else "missing argument")
        return token

    def tag(self) -> bytes:
        token = self._run(_TAG_SPECIALS)
        if not token:
            raise ParseError("missing tag")
        return token

    def number(self, nonzero: bool = False) -> int:
        token = self._run(_ATOM_SPECIALS)
        if not token.isdigit() or len(token) > 20:
            raise ParseError("expected a number")
        value = int(token)
        if value > 2**63 - 1 or (nonzero and value == 0):
            raise ParseError("number out of range")
        return value

    def quoted(self) -> bytes:
        """RFC 3501 §4.3 quoted string: ``\\\\`` and ``\\"`` are the only escapes; no CR/LF."""
        if self.peek() != b'"':
            raise ParseError("expected a quoted string")
        self.pos += 1
        out = bytearray()
        text = self.text
        while True:
            if self.pos >= len(text):
                raise ParseError("unterminated quoted string")
            c = text[self.pos]
            if c == 0x22:
                self.pos += 1
                return bytes(out)
            if c == 0x5C:
                nxt = text[self.pos + 1 : self.pos + 2]
                if nxt not in (b'"', b"\\"):
                    raise ParseError("invalid escape in quoted string")
                out += nxt
                self.pos += 2
                continue
            if c in (0x0D, 0x0A, 0x00):
                raise ParseError("invalid character in quoted string")
            out.append(c)
            self.pos += 1

    def literal(self) -> bytes | LiteralFile:
        match = re.match(rb"\{(\d{1,20})(\+?)\}", self.text[self.pos : self.pos + 24])
        if not match:
            raise ParseError("expected a literal")
        end = self.pos + match.end()
        if end not in self.literals:
            raise ParseError("literal marker must end the line")
        self.pos = end
        return self.literals[end]

    def literal_bytes(self) -> bytes:
        value = self.literal()
        if isinstance(value, LiteralFile):
            raise ParseError("literal too large here")
        return value

    def string(self) -> bytes:
        if self.peek() == b'"':
            return self.quoted()
        if self.peek() == b"{":
            return self.literal_bytes()
        raise ParseError("expected a string")

    def astring(self) -> bytes:
        if self.peek() in (b'"', b"{"):
            return self.string()
        token = self._run(_ASTRING_SPECIALS)
        if not token:
            raise ParseError("expected a string" if not self.at_end() else "missing argument")
        return token

    def nstring(self) -> bytes | None:
        if self.peek_upper(b"NIL") and not self._continues_atom(3):
            self.pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        """LIST/LSUB pattern: astring or 1*list-char (``%``, ``*`` and ``]`` allowed)."""
        if self.peek() in (b'"', b"{"):
            return self.string()
        token = self._run(_LIST_SPECIALS)
        if not token:
            raise ParseError("expected a mailbox pattern")
        return token

    def _continues_atom(self, offset: int) -> bool:
        nxt = self.text[self.pos + offset : self.pos + offset + 1]
        return bool(nxt) and nxt[0] not in _ATOM_SPECIALS

    def sequence_set(self) -> bytes:
        """RFC 3501 §9 sequence-set, checked for shape; resolved against a mailbox later."""
        token = self._run(_SEQUENCE_STOP)
        if token == b"$":
            return token  # RFC 5182 §2.1: the result the last SEARCH ... RETURN (SAVE) kept
        if not token or not _SEQUENCE_SET.fullmatch(token):
            raise ParseError("invalid sequence set")
        return token

    def open_paren(self) -> None:
        if self.peek() != b"(":
            raise ParseError("expected '('")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("too deeply nested")
        self.pos += 1

    def close_paren(self) -> None:
        if self.peek() != b")":
            raise ParseError("expected ')'")
        self.depth -= 1
        self.pos += 1

    def flag_list(self) -> list[str]:
        """``(\\Seen $Label)``; system flags canonicalised to their RFC spelling."""
        self.open_paren()
        flags: list[str] = []
        while self.peek() != b")":
            if flags:
                self.sp()
            flags.append(self.flag())
        self.close_paren()
        return flags

    def flag(self) -> str:
        if self.peek() == b"\\":
            self.pos += 1
            if self.peek() == b"*":
                self.pos += 1
                return "\\*"
            name = self.atom().decode("ascii", "replace")
            canonical = _SYSTEM_FLAGS.get(name.lower())
            if canonical is None:
                raise ParseError(f"unknown system flag \\{name}")
            return canonical
        atom = self.atom()
        try:
            return atom.decode("ascii")
        except UnicodeDecodeError:
            raise ParseError("flag must be ASCII") from None

    def date_time(self) -> bytes:
        """APPEND's quoted date-time, e.g. "17-Jul-1996 02:44:25 -0700" (RFC 3501 §9)."""
        return self.quoted()


_SYSTEM_FLAGS = {
    name.lower(): "\\" + name for name in ("Seen", "Answered", "Flagged", "Deleted", "Draft")
} | {"recent": "\\Recent"}
