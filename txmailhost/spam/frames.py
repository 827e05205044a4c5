"""The scoring process's frames (``offload.py``, ``scorechild.py``): a 4-octet big-endian
length and its content, and the rules as JSON lists. Standard library only: the child
imports it."""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import Any

from txmailhost.spam import rules

_LENGTH = struct.Struct(">I")
IDLE = b"idle"  # the child's last frame when it ends for want of work
MAX_FRAME = 64 * 1024 * 1024  # far above a capped message; a corrupt length stops here


def encode(*parts: bytes) -> bytes:
    """``parts`` as frames, one after the other."""
    return b"".join(_LENGTH.pack(len(part)) + part for part in parts)


def send(sock: socket.socket, *parts: bytes) -> None:
    sock.sendall(encode(*parts))


class Frames:
    """Frames read from a blocking ``sock`` through a buffer (the child's side, and the
    server's wait for "ready"): one ``recv`` takes whatever has arrived (a request's three
    frames at once, usually; several requests, when the server sent them together) instead
    of two system calls per frame."""

    CHUNK = 256 * 1024

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._at = 0  # where the next frame starts in the buffer

    def buffered(self) -> bool:
        """Something has arrived and not been read (no need to wait for the socket)."""
        return len(self._buffer) > self._at

    def read(self) -> bytes:
        (size,) = _LENGTH.unpack(self._take(_LENGTH.size))
        if size > MAX_FRAME:
            raise ValueError(f"a frame of {size} octets")
        return self._take(size)

    def _take(self, size: int) -> bytes:
        while len(self._buffer) - self._at < size:
            if self._at:  # what was read goes; what is left moves to the front
                del self._buffer[: self._at]
                self._at = 0
            chunk = self.sock.recv(max(self.CHUNK, min(size - len(self._buffer), 1 << 22)))
            if not chunk:
                raise EOFError("the other side closed the socket")
            self._buffer += chunk
        data = bytes(self._buffer[self._at : self._at + size])
        self._at += size
        if self._at == len(self._buffer):
            self._buffer.clear()
            self._at = 0
        return data


def rule_as_list(rule: rules.Rule) -> list[Any]:
    return [rule.name, rule.score, rule.description]


def rule_from_list(item: Sequence[Any]) -> rules.Rule:
    """A rule the child named: our table's own object when it is one of ours (``scoring``
    compares with them), else one made of what it said (DNS list zones, rspamd)."""
    name, score, description = str(item[0]), float(item[1]), str(item[2])
    known = rules.BY_NAME.get(name)
    if known is not None and known.score == score:
        return known
    return rules.Rule(name, score, description, None)
