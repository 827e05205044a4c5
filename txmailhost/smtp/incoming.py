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
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

log = Logger()

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
    """One message on its way in: held in memory while small, spilled to a file when large.

    Creating and removing files touches the file system journal, which on a busy disk can
    stall for milliseconds behind other threads' fsyncs; doing that on the reactor thread
    stalled every connection (measured: 16% of the reactor's time at 50 connections). So a
    message up to ``SPILL`` octets stays in memory and its file is created, written and
    fsync'd in one job in the pool (``commit``); only a larger message opens its file early
    and streams into it, keeping memory bounded (DESIGN invariant 2).
    """

    SPILL = 256 * 1024

    def __init__(self, directory: str, reactor: Any, pool: ThreadPool) -> None:
        self.queue_id = new_queue_id()
        self.path = os.path.join(directory, self.queue_id)
        self._reactor = reactor
        self._pool = pool
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._file: Any = None
        self._created = False
        self.size = 0  # octets written: the message as stored
        self.head = bytearray()

    def sibling(self) -> IncomingMessage:
        """Another message in the same spool (for notices the server writes itself)."""
        return IncomingMessage(os.path.dirname(self.path), self._reactor, self._pool)

    def _append(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self.SPILL:
            self._open()

    def _open(self) -> None:
        self._file = open(self.path, "xb", buffering=256 * 1024)  # noqa: SIM115 - long-lived
        self._created = True
        self._file.writelines(self._chunks)
        self._chunks = []

    def write_trace(self, data: bytes) -> None:
        """Our own Return-Path/Received lines, before the client's text."""
        self._append(data)

    def write(self, data: bytes) -> None:
        """The client's text; its first ``HEAD_LIMIT`` octets are also kept for header checks."""
        self._append(data)
        if len(self.head) < HEAD_LIMIT:
            self.head += data[: HEAD_LIMIT - len(self.head)]

    def header_block(self) -> bytes:
        """The client's header section (up to the first empty line), as far as it was kept."""
        end = self.head.find(b"\r\n\r\n")
        return bytes(self.head if end < 0 else self.head[: end + 2])

    def commit_sync(self) -> None:
        """``commit`` for a caller already in a worker thread (``IMailStore.deliver``'s
        ``prepare``)."""
        self._commit()

    def _commit(self) -> None:
        if self._file is None:
            self._open()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def remove_sync(self) -> None:
        """Remove the file, for a caller already in a worker thread (``IMailStore.deliver``'s
        ``finish``); ``discard`` then has nothing left to do on disk."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._created:
            self._created = False
            _remove(self.path)

    def commit(self) -> Deferred[None]:
        """Write out and fsync in the pool; the file is then safe to link into mailboxes."""
        return threads.deferToThreadPool(self._reactor, self._pool, self._commit)

    def discard(self) -> None:
        """Drop the message (refused, delivered, or the client went away); safe to call twice.

        A file that was created is removed in the pool, for the journal reason above.
        """
        self._chunks = []
        if self._file is not None and not self._file.closed:
            self._file.close()
        if self._created:
            self._created = False
            threads.deferToThreadPool(self._reactor, self._pool, _remove, self.path).addErrback(
                lambda f: log.failure("removing spool file {path}", f, path=self.path)
            )


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
