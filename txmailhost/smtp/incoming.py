"""The file an arriving message is streamed into while DATA is being read.

It lives in ``DATA/queue/tmp/`` (same file system as the mailboxes, so delivery is a hard
link). Writes go to the page cache from the reactor thread in the client's chunk sizes; the
fsync that makes the message durable runs in the thread pool before any ``250`` is sent. A
message that is refused, or a connection that drops, removes its file; files left by a crash
are unacknowledged by definition and are swept on start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

HEAD_LIMIT = 64 * 1024  # header checks (From: on submission) look no further


def new_queue_id() -> str:
    """A short unique id for logs and the 250 reply (time-ordered, then random)."""
    return f"{int(time.time() * 1000):x}{secrets.token_hex(4)}".upper()


class IncomingSpool:
    """Hands out ``IncomingMessage`` files in one directory."""

    def __init__(self, directory: str, reactor: Any, pool: ThreadPool) -> None:
        self.directory = directory
        self._reactor = reactor
        self._pool = pool

    def open(self) -> IncomingMessage:
        return IncomingMessage(self.directory, self._reactor, self._pool)

    def sweep(self) -> int:
        """Remove files left in the directory by a crash; returns how many."""
        removed = 0
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        for name in os.listdir(self.directory):
            try:
                os.unlink(os.path.join(self.directory, name))
                removed += 1
            except (FileNotFoundError, IsADirectoryError):
                pass
        return removed


class IncomingMessage:
    def __init__(self, directory: str, reactor: Any, pool: ThreadPool) -> None:
        self.queue_id = new_queue_id()
        self.path = os.path.join(directory, self.queue_id)
        self._reactor = reactor
        self._pool = pool
        self._file = open(self.path, "xb", buffering=256 * 1024)  # noqa: SIM115 - long-lived
        self.head = bytearray()

    def write_trace(self, data: bytes) -> None:
        """Our own Return-Path/Received lines, before the client's text."""
        self._file.write(data)

    def write(self, data: bytes) -> None:
        """The client's text; its first ``HEAD_LIMIT`` octets are also kept for header checks."""
        self._file.write(data)
        if len(self.head) < HEAD_LIMIT:
            self.head += data[: HEAD_LIMIT - len(self.head)]

    def header_block(self) -> bytes:
        """The client's header section (up to the first empty line), as far as it was kept."""
        end = self.head.find(b"\r\n\r\n")
        return bytes(self.head if end < 0 else self.head[: end + 2])

    def _commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def commit(self) -> Deferred[None]:
        """Flush and fsync in the pool; the file is then safe to link into mailboxes."""
        return threads.deferToThreadPool(self._reactor, self._pool, self._commit)

    def discard(self) -> None:
        """Drop the message (refused, or the client went away); safe to call twice."""
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
