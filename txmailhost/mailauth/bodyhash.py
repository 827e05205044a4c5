"""DKIM body hashes computed over a stream (RFC 6376 3.4.3-3.4.5, 3.7), read once in chunks.

dkimpy canonicalises a body held whole in memory, twice over (the body, then its canonical
copy); for a 50 MiB message that is 100 MiB per signature. Here the spooled message is read
once, line by line, into every hash that the signatures need (a sender may use several
canonicalisations, algorithms and ``l=`` limits), so memory stays at one chunk (DESIGN
invariant 2). ``split_header`` returns the header section for dkimpy, which signs and checks
the header part (its canonicalisation and key handling are kept); ``signing.py`` and
``verify.py`` hand it these body hashes. Tests compare them with dkimpy's own on many bodies.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO

from txmailhost.headerlimit import HEADER_LIMIT  # longer: not signed or verified

CHUNK = 256 * 1024
HEADER_CHUNK = 16 * 1024  # the first read for the header section (``split_header``)
_WSP = re.compile(rb" [ \t]+|\t[ \t]*")  # runs to make one space (a lone space is one)


class HeaderTooLarge(ValueError):
    """The header section has no end within ``HEADER_LIMIT`` octets."""


@dataclass(frozen=True)
class BodySpec:
    """What one body hash is computed with: ``c=``'s body part, ``a=``'s hash, ``l=``."""

    canonicalization: str  # "simple" or "relaxed"
    hash_name: str  # "sha256" or "sha1"
    length: int | None = None


class _Hasher:
    """One body hash, fed blocks of whole lines ending in LF (CRs before them removed):
    canonicalising a block at a time with two regular expressions costs a fraction of doing
    it line by line in Python."""

    def __init__(self, spec: BodySpec) -> None:
        self.spec = spec
        self._hash = hashlib.new(spec.hash_name)
        self._left = spec.length
        self._empty_lines = 0  # canonical empty lines not yet known to be inside the body
        self._anything = False
        self._open_line = False  # a ``fragment`` began a line whose end is still to come
        self._space = False  # relaxed: a run of white space whose line's end is still to come
        self.beyond = False  # the canonical body went on past ``length`` (l=)

    def _feed(self, data: bytes) -> None:
        if self._left is not None:
            self.beyond = self.beyond or len(data) > self._left
            data = data[: self._left]
            self._left -= len(data)
        if data:
            self._hash.update(data)

    def lines(self, block: bytes) -> None:
        """Whole lines, each ending in LF (the CR of CRLF already removed)."""
        if self._space:  # the run before them, as one space: relaxed makes it one or none
            block, self._space = b" " + block, False
        if self.spec.canonicalization == "relaxed":
            block = b"\n".join(line.rstrip(b" \t") for line in block.split(b"\n"))
            block = _WSP.sub(b" ", block)
        if self._open_line:  # the first line ends one begun by ``fragment``
            first, _, block = block.partition(b"\n")
            self._feed(first + b"\r\n")
            self._open_line = False
        content = block.rstrip(b"\n")
        if not content:  # only empty lines: they count only if a non-empty one follows
            self._empty_lines += len(block)
            return
        trailing = len(block) - len(content) - 1  # empty lines after the last non-empty
        self._feed((b"\n" * self._empty_lines + content + b"\n").replace(b"\n", b"\r\n"))
        self._empty_lines = trailing
        self._anything = True

    def fragment(self, text: bytes) -> None:
        """The start of a line too long to hold, ending in a character that isn't white
        space (so no run of it is split, and the line's end is still to come)."""
        if self._space:
            text, self._space = b" " + text, False
        if self.spec.canonicalization == "relaxed":
            text = _WSP.sub(b" ", text)
        if self._open_line:
            self._feed(text)
        else:
            self._feed(b"\r\n" * self._empty_lines + text)
        self._empty_lines = 0
        self._anything = self._open_line = True

    def blank(self, run: bytes) -> None:
        """A run of spaces and tabs too long to hold, inside a line whose end is still to
        come: whether it ends the line (relaxed drops it) or not (relaxed makes it one space)
        is known only later, so relaxed keeps just the fact of it; simple hashes it as is."""
        if self.spec.canonicalization == "relaxed":
            self._space = True
        else:
            self.fragment(run)

    def digest(self) -> bytes:
        if not self._anything and self.spec.canonicalization == "simple":
            beyond = self.beyond  # no text of the body: none past l= either
            self._feed(b"\r\n")  # an empty body is one CRLF under simple (3.4.3)
            self.beyond = beyond
        return self._hash.digest()


def split_header(stream: BinaryIO) -> tuple[bytes, bytes]:
    """(the header section up to and including its empty line, the body's first octets read
    along with it). Raises ``HeaderTooLarge`` for one longer than ``HEADER_LIMIT``, which is
    also as far as the removal of fields (``delivery.incoming.strip_fields``) looks: a field
    found here can be removed there.

    A header section is a few KiB: the first read is ``HEADER_CHUNK``, each next one twice
    the last (up to ``CHUNK``), each searched once. A ``CHUNK`` read first cost every spilled
    message half a MiB in a pool thread (the read, then the copy of the body's start), most
    of it thrown away unread when nothing in the message is signed."""
    buffered: bytes | bytearray = stream.read(HEADER_CHUNK)
    looked = 0  # the end can't begin before this: what came before was searched
    size = HEADER_CHUNK
    while True:
        end = header_end(buffered, looked)
        if end > HEADER_LIMIT:
            raise HeaderTooLarge("header section too large")
        if end >= 0:
            if isinstance(buffered, bytes):  # found in the first read: the common case
                return buffered[:end], buffered[end:]
            view = memoryview(buffered)  # one copy of each part, not two
            return bytes(view[:end]), bytes(view[end:])
        if len(buffered) > HEADER_LIMIT:
            raise HeaderTooLarge("header section too large")
        size = min(2 * size, CHUNK)
        chunk = stream.read(size)
        if not chunk:  # no body at all: the whole message is header
            return bytes(buffered), b""
        if isinstance(buffered, bytes):
            buffered = bytearray(buffered)
        looked = max(0, len(buffered) - 3)
        buffered += chunk


def header_end(data: bytes | bytearray, start: int = 0) -> int:
    """Index just past the empty line that ends the header section, or -1. ``start``: where
    to look from, when ``data[:start + 3]`` is known to hold no end (``split_header``)."""
    if data.startswith((b"\r\n", b"\n")):
        return 2 if data.startswith(b"\r\n") else 1
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start)
    candidates = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(candidates) if candidates else -1


class BodyHashing:
    """Body hashes for ``specs``, fed the body in pieces of any size (``update``), read
    once; ``finish`` gives each spec's digest."""

    def __init__(self, specs: set[BodySpec]) -> None:
        self._hashers = [_Hasher(spec) for spec in specs]
        self._carry = b""
        self._open = False  # a line begun in pieces (``fragment``, ``blank``) is not ended
        self.partial: set[BodySpec] = set()  # after ``finish``: specs with body past l=

    def update(self, chunk: bytes) -> None:
        data = self._carry + chunk
        end = data.rfind(b"\n") + 1
        if end == 0:  # no whole line yet
            if len(data) >= 4 * CHUNK:  # a huge line: hash what is known of it, memory flat
                # A last CR may be a CRLF's; white space before it may end the line. A line
                # of white space alone was once kept whole: a 45 MiB one took 226 MiB and
                # 14 s, each chunk copying all of it again.
                line = data[:-1] if data.endswith(b"\r") else data
                cut = len(line.rstrip(b" \t"))
                for hasher in self._hashers:
                    if cut:
                        hasher.fragment(line[:cut])
                    if len(line) > cut:
                        hasher.blank(line[cut:])
                data = data[len(line) :]
                self._open = True
            self._carry = data
            return
        block, self._carry = data[:end].replace(b"\r\n", b"\n"), data[end:]
        for hasher in self._hashers:
            hasher.lines(block)
        self._open = False

    def finish(self) -> dict[BodySpec, bytes]:
        if self._carry or self._open:  # a last line without its line break is a line (dkimpy)
            self.update(b"\n")
        digests = {hasher.spec: hasher.digest() for hasher in self._hashers}
        self.partial = {hasher.spec for hasher in self._hashers if hasher.beyond}
        return digests


def body_hashes(first: bytes, stream: BinaryIO, specs: set[BodySpec]) -> dict[BodySpec, bytes]:
    """Each spec's body hash over ``first`` then the rest of ``stream``."""
    hashing = BodyHashing(specs)
    hashing.update(first)
    while chunk := stream.read(CHUNK):
        hashing.update(chunk)
    return hashing.finish()
