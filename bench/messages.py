"""The test messages: plain-text mail of an exact size, the same bytes for every server.

Lines are 78 octets with CRLF (no line starts with a dot, so SMTP needs no dot-stuffing), and
each message has its own Message-ID so no server may deduplicate. Bodies are built once per size
and shared; a 50 MiB message is produced in chunks so the load generator's own memory stays flat.
"""

from __future__ import annotations

import email.utils
import functools
import os
from collections.abc import Iterator

_LINE = b"The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJKLMNOPQRST\r\n"
assert len(_LINE) == 78
_RUN = os.urandom(4).hex()


def headers(index: int, sender: str, recipient: str) -> bytes:
    """The header block (ending with the empty line) of message number ``index``."""
    return (
        f"From: <{sender}>\r\n"
        f"To: <{recipient}>\r\n"
        f"Subject: bench message {index}\r\n"
        f"Date: {_date()}\r\n"
        f"Message-ID: <bench.{_RUN}.{index}@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    ).encode("ascii")


@functools.cache
def _date() -> str:
    return email.utils.formatdate(localtime=False)


@functools.cache
def filler(size: int) -> bytes:
    """``size`` octets of body text ending in CRLF (at least 3 octets: one character and CRLF)."""
    size = max(size, 3)
    whole, rest = divmod(size, len(_LINE))
    if 0 < rest < 3:  # too short for a line of its own: shorten the last full line instead
        whole, rest = whole - 1, rest + len(_LINE)
    tail = b"x" * (rest - 2) + b"\r\n" if rest else b""
    return _LINE * whole + tail


def message(index: int, size: int, sender: str, recipient: str) -> bytes:
    """A whole message of ``size`` octets (or a little more when the headers alone exceed it)."""
    head = headers(index, sender, recipient)
    return head + filler(size - len(head))


def chunks(size: int, sender: str, recipient: str, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A large message of ``size`` octets as a stream of about ``chunk``-octet pieces."""
    head = headers(0, sender, recipient)
    yield head
    remaining = max(size - len(head), 3)
    block = filler(chunk - chunk % len(_LINE))
    while remaining > len(block) + len(_LINE):
        yield block
        remaining -= len(block)
    yield filler(remaining)
