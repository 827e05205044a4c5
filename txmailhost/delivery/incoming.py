"""The file an arriving message is streamed into while DATA is being read.

It is one of the empty files kept in stock in ``DATA/queue/spare/`` (``spares.py``), or, when
that runs out, a new file in ``DATA/queue/tmp/``: the same file system as the mailboxes, so
delivery is a hard link. Writes go to the page cache from the reactor thread in the client's
chunk sizes; the fsync that makes the message durable runs in the thread pool before any
``250`` is sent. A message that is refused, or a connection that drops, removes its file.
Files left by a crash are unacknowledged by definition and are swept on start, except local
mail acknowledged in a spare file, which carries its envelope (``local.py``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import zlib
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from txmailhost.delivery.spares import SpareFiles

log = Logger()

HEAD_LIMIT = 64 * 1024  # header checks (From: on submission) look no further


def new_queue_id() -> str:
    """A short unique id for logs and the 250 reply (time-ordered, then random)."""
    return f"{int(time.time() * 1000):x}{secrets.token_hex(4)}".upper()


class IncomingSpool:
    """Hands out ``IncomingMessage`` files in ``directory``, created here if missing (mode
    0700: messages in transit are private), so an embedding application needs nothing but the
    constructor. ``pool`` is where fsyncs run: any started ``ThreadPool``, e.g. the
    reactor's own (``reactor.getThreadPool()``). ``spares`` is optional (``spares.py``)."""

    def __init__(
        self, directory: str, reactor: Any, pool: ThreadPool, spares: SpareFiles | None = None
    ) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.directory = directory
        self._reactor = reactor
        self._pool = pool
        self.spares = spares

    def open(self) -> IncomingMessage:
        return IncomingMessage(self.directory, self._reactor, self._pool, self.spares)

    def sweep(self) -> int:
        """Remove files left in the directory by a crash (call it before listening: they were
        never acknowledged); returns how many."""
        removed = 0
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

    def __init__(
        self, directory: str, reactor: Any, pool: ThreadPool, spares: SpareFiles | None = None
    ) -> None:
        self.queue_id = new_queue_id()
        self._directory = directory
        self._reactor = reactor
        self._pool = pool
        self._spares = spares
        # Decided now: delivery is handed the path before the file is written (``prepare``).
        spare = spares.take() if spares is not None else None
        self._spare = spare is not None
        self.path = spare if spare is not None else os.path.join(directory, self.queue_id)
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._file: Any = None
        self._created = False
        self.size = 0  # octets written: the message as stored
        self.crc = 0  # their CRC-32: a spool record's check that the file is whole
        self.head = bytearray()

    def sibling(self) -> IncomingMessage:
        """Another message in the same spool (for notices the server writes itself)."""
        return IncomingMessage(self._directory, self._reactor, self._pool, self._spares)

    @property
    def spare(self) -> bool:
        """Is the file one of the spool's spares (durable name: ``local.py`` may own it)?"""
        return self._spare

    def _append(self, data: bytes) -> None:
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        if self._file is not None:
            self._file.write(data)
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self.SPILL:
            self._open()

    def _open(self) -> None:
        self._created = True  # from here on the name is ours to remove, whatever happens
        mode = "r+b" if self._spare else "xb"  # a spare is empty: nothing to truncate
        self._file = open(self.path, mode, buffering=256 * 1024)  # noqa: SIM115 - long-lived
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

    def _commit(self, record: tuple[str, bytes] | None = None) -> None:
        if self._file is None:
            self._open()
        self._file.flush()
        if record is not None:  # before the fsync, which makes both durable at once
            os.setxattr(self._file.fileno(), *record)
        os.fsync(self._file.fileno())
        self._file.close()

    def _close(self) -> None:
        """Close the file; a failing last flush (a full disk) doesn't matter to a message that
        is being dropped, and the descriptor is released either way."""
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()

    def hand_over(self) -> None:
        """The file now belongs to someone else (the local delivery): ``discard`` leaves it."""
        self._created = self._spare = False

    def _drop_spare(self) -> bool:
        """Return a spare file to the stock: as it was if never written, else for its name to
        be removed by the spares' own thread. False when the file isn't a spare."""
        if not self._spare:
            return False
        assert self._spares is not None
        (self._spares.retire if self._created else self._spares.give_back)(self.path)
        self._spare = self._created = False
        return True

    def remove_sync(self) -> None:
        """Remove the file, for a caller already in a worker thread (``IMailStore.deliver``'s
        ``finish``); ``discard`` then has nothing left to do on disk."""
        self._close()
        if not self._drop_spare() and self._created:
            self._created = False
            _remove(self.path)

    def commit(self, record: tuple[str, bytes] | None = None) -> Deferred[None]:
        """Write out and fsync in the pool; the file is then safe to link into mailboxes.

        ``record`` is an extended attribute (name, value) set on the file before the fsync.
        """
        return threads.deferToThreadPool(self._reactor, self._pool, self._commit, record)

    def discard(self) -> None:
        """Drop the message (refused, delivered, or the client went away); safe to call twice.

        A file that was created is removed in the pool, for the journal reason above; a spare
        file by the spares' own thread.
        """
        self._chunks = []
        self._close()
        if not self._drop_spare() and self._created:
            self._created = False
            threads.deferToThreadPool(self._reactor, self._pool, _remove, self.path).addErrback(
                lambda f: log.failure("removing spool file {path}", f, path=self.path)
            )


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
