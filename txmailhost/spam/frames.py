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


def send(sock: socket.socket, *parts: bytes) -> None:
    sock.sendall(b"".join(_LENGTH.pack(len(part)) + part for part in parts))


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the socket")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket) -> bytes:
    (size,) = _LENGTH.unpack(_receive_exactly(sock, _LENGTH.size))
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} octets")
    return _receive_exactly(sock, size)


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
