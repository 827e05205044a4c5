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

CHUNK = 256 * 1024
HEADER_LIMIT = 1024 * 1024  # a header section longer than this is not signed or verified
_WSP = re.compile(rb"[ \t]+")


class HeaderTooLarge(ValueError):
    """The header section has no end within ``HEADER_LIMIT`` octets."""


@dataclass(frozen=True)
class BodySpec:
    """What one body hash is computed with: ``c=``'s body part, ``a=``'s hash, ``l=``."""

    canonicalization: str  # "simple" or "relaxed"
    hash_name: str  # "sha256" or "sha1"
    length: int | None = None


class _Hasher:
    def __init__(self, spec: BodySpec) -> None:
        self.spec = spec
        self._hash = hashlib.new(spec.hash_name)
        self._left = spec.length
        self._empty_lines = 0  # canonical empty lines not yet known to be inside the body
        self._anything = False

    def _feed(self, data: bytes) -> None:
        if self._left is not None:
            data = data[: self._left]
            self._left -= len(data)
        if data:
            self._hash.update(data)

    def line(self, text: bytes) -> None:
        """One body line, without its line break."""
        if self.spec.canonicalization == "relaxed":
            text = _WSP.sub(b" ", text).rstrip(b" ")
        if not text:
            self._empty_lines += 1  # dropped if only empty lines follow (3.4.3, 3.4.4)
            return
        if self._empty_lines:
            self._feed(b"\r\n" * self._empty_lines)
            self._empty_lines = 0
        self._feed(text + b"\r\n")
        self._anything = True

    def digest(self) -> bytes:
        if not self._anything and self.spec.canonicalization == "simple":
            self._feed(b"\r\n")  # an empty body is one CRLF under simple (3.4.3)
        return self._hash.digest()


def split_header(stream: BinaryIO) -> tuple[bytes, bytes]:
    """(the header section up to and including its empty line, the body's first octets read
    along with it). Raises ``HeaderTooLarge``."""
    buffered = b""
    while True:
        end = _header_end(buffered)
        if end >= 0:
            return buffered[:end], buffered[end:]
        if len(buffered) > HEADER_LIMIT:
            raise HeaderTooLarge("header section too large")
        chunk = stream.read(CHUNK)
        if not chunk:  # no body at all: the whole message is header
            return buffered, b""
        buffered += chunk


def _header_end(data: bytes) -> int:
    """Index just past the empty line that ends the header section, or -1."""
    if data.startswith((b"\r\n", b"\n")):
        return 2 if data.startswith(b"\r\n") else 1
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    candidates = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(candidates) if candidates else -1


def body_hashes(first: bytes, stream: BinaryIO, specs: set[BodySpec]) -> dict[BodySpec, bytes]:
    """Each spec's body hash over ``first`` then the rest of ``stream``."""
    hashers = [_Hasher(spec) for spec in specs]
    carry = first
    while True:
        chunk = stream.read(CHUNK)
        data = carry + chunk
        lines = data.split(b"\n")
        carry = lines.pop()  # the unfinished line
        for raw in lines:
            text = raw[:-1] if raw.endswith(b"\r") else raw
            for hasher in hashers:
                hasher.line(text)
        if not chunk:
            break
    if carry:  # a last line without its line break counts as a line (as dkimpy reads it)
        for hasher in hashers:
            hasher.line(carry)
    return {hasher.spec: hasher.digest() for hasher in hashers}
