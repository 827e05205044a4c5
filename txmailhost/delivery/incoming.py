"""The file an arriving message is streamed into while DATA is being read.

It is one of the empty files kept in stock in ``DATA/queue/spare/`` (``spares.py``), or, when
that runs out, a new file in ``DATA/queue/tmp/``: the same file system as the mailboxes, so
delivery is a hard link. Writes go to the page cache from the reactor thread in the client's
chunk sizes; the fsync that makes the message durable runs in the thread pool before any
``250`` is sent. A message that is refused, or a connection that drops, removes its file.
Files left by a crash are unacknowledged by definition and are swept on start, except local
mail acknowledged in a spare file, which carries its envelope (``local.py``).

Headers written after the body: content filters (``txmailhost.filters``) read the whole message
and may add fields (``Authentication-Results:``, ``X-Spam-*``) that belong at its top, before
it is made durable. With ``hold_headers``, our trace fields and those stay in memory until
``seal``: a message still in memory gets them in front of its chunks for free; a larger one,
whose body was streamed to a side file (``ID.body``), is written out once more in the pool —
the header block, then the body — as Postfix's cleanup rewrites every message into its queue
file. Without filters nothing is held and nothing is copied.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import time
import zlib
from typing import Any, BinaryIO

from twisted.internet import threads
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from txmailhost import _safeio
from txmailhost.delivery.spares import SpareFiles
from txmailhost.headerlimit import HEADER_LIMIT
from txmailhost.pools import run_in

# The start of a header field: its name (printable ASCII but ":"), white space allowed before
# the colon (RFC 5322 4.5.1's obsolete syntax, which readers take as a field).
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:?")
_FIELD_NAME_MAX = 998  # a line's longest (RFC 5322 2.1.1): longer, it is no field's name
# The piece a spilled body is copied in behind the header block (``_rewrite``), read into one
# buffer used over and over. A new 1 MiB ``bytes`` a read, as before, made each 50 MiB message
# cost 2 MiB at its peak, and glibc keeps such blocks in the arena of the pool thread that
# freed them (its mmap threshold rises to the largest block freed): the server grew by a MiB
# or two for each thread that had copied a large message (docs/benchmarks-smtp.rst).
_COPY_PIECE = 64 * 1024

log = Logger()


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
        self.head = bytearray()  # the client's header section, while it lasts (``write``)
        self._header_end = -1  # where it ends in ``head`` (its last CRLF's end); -1: not yet
        self._held: bytearray | None = None  # header fields kept for the top (``seal``)
        self._remove: tuple[tuple[str, int], ...] = ()  # client's fields to delete at seal
        self._body_path: str | None = None  # where a held message's large body streams
        self._first: bytearray | None = None  # the client's first line, until it is judged

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
        if self._held is not None:  # the body goes aside; the header block comes first later
            self._body_path = os.path.join(self._directory, f"{self.queue_id}.body")
            self._file = open(self._body_path, "xb", buffering=256 * 1024)  # noqa: SIM115
            self._file.writelines(self._chunks)
            self._chunks = []
            return
        self._created = True  # from here on the name is ours to remove, whatever happens
        mode = "r+b" if self._spare else "xb"  # a spare is empty: nothing to truncate
        self._file = open(self.path, mode, buffering=256 * 1024)  # noqa: SIM115 - long-lived
        self._file.writelines(self._chunks)
        self._chunks = []

    def hold_headers(self) -> None:
        """Keep header fields written from now on (``write_trace``, ``prepend``) for the top
        of the message, placed there by ``seal``. Call it before the first write."""
        assert self.size == 0, "hold_headers after the message began"
        self._held = bytearray()

    def write_trace(self, data: bytes) -> None:
        """Our own Return-Path/Received lines, before the client's text."""
        if self._held is not None:
            self._held += data
        else:
            self._append(data)

    def prepend(self, fields: bytes) -> None:
        """Header fields (CRLF-terminated) for the top of the message: a filter's verdict.
        Below our leading ``Return-Path:`` line, which stays first (RFC 5321 4.4: the relay
        strips it, Sieve reads the envelope sender from it, clients expect it there), above
        everything else. Only between ``hold_headers`` and ``seal``."""
        if self._held is None:
            raise RuntimeError("prepend needs hold_headers (and no seal yet)")
        at = 0
        if self._held.startswith(b"Return-Path:"):
            at = self._held.index(b"\r\n") + 2
        self._held[at:at] = fields

    def add_fields(self, fields: bytes) -> None:
        """Header fields (CRLF-terminated) below our trace fields, above the client's: what
        the submission server completes a message with (RFC 6409 8: Date, Message-ID). Only
        between ``hold_headers`` and ``seal``."""
        if self._held is None:
            raise RuntimeError("add_fields needs hold_headers (and no seal yet)")
        self._held += fields

    def remove_fields(self, fields: tuple[tuple[str, int], ...]) -> None:
        """Delete these fields of the client's header section at ``seal``: (name, n) is the
        n-th field of that name as the client sent it (a filter's verdict). Only between
        ``hold_headers`` and ``seal``; a header section longer than ``HEADER_LIMIT`` (which
        SMTP refuses) is left as it is."""
        if self._held is None:
            raise RuntimeError("remove_fields needs hold_headers (and no seal yet)")
        self._remove = tuple(fields)

    def seal(self) -> Deferred[None]:
        """Put the held header fields in front of the body; the message is then final (its
        ``size`` and ``crc`` too). Fires at once unless a spilled body must be rewritten
        behind them, which runs in the pool. A no-op without ``hold_headers``."""
        self._settle()
        held, self._held = self._held, None
        if held is None:
            return succeed(None)
        if self._body_path is None:
            if self._remove:
                self._chunks = [strip_fields(b"".join(self._chunks), self._remove, True)]
                self.size = sum(len(chunk) for chunk in self._chunks)
            self._chunks.insert(0, bytes(held))
            self.size += len(held)
            self.crc = 0
            for chunk in self._chunks:
                self.crc = zlib.crc32(chunk, self.crc)
            return succeed(None)
        return threads.deferToThreadPool(self._reactor, self._pool, self._rewrite, bytes(held))

    def _rewrite(self, held: bytes) -> None:
        """The header block, then the body from its side file, into the message's file, in
        ``_COPY_PIECE``s through one buffer: memory is flat whatever the message's size."""
        body_path = self._body_path
        assert body_path is not None
        self._file.flush()
        self._file.close()
        self._created = True
        final = open(self.path, "r+b" if self._spare else "xb", buffering=0)  # noqa: SIM115
        try:
            final.write(held)
            size, crc = len(held), zlib.crc32(held)
            with open(body_path, "rb") as body:
                if self._remove:  # the client's header section, less the removed fields
                    start = body.read(HEADER_LIMIT + 4)
                    whole = len(start) < HEADER_LIMIT + 4  # all of it: it may lack a body
                    stripped = strip_fields(start, self._remove, whole)
                    final.write(stripped)
                    size, crc = size + len(stripped), zlib.crc32(stripped, crc)
                piece = memoryview(bytearray(_COPY_PIECE))
                while n := body.readinto(piece):
                    final.write(piece[:n])
                    size += n
                    crc = zlib.crc32(piece[:n], crc)
        except BaseException:
            final.close()
            raise
        self._file, self.size, self.crc = final, size, crc
        self._body_path = None
        _remove(body_path)

    def reader(self) -> BinaryIO:
        """A read-only stream of the message as it stands (held header fields first), for
        the content filters; the message keeps being its own. Blocking for a large message
        (it opens the file): call it where blocking is allowed, or for a small one."""
        self._settle()
        held = bytes(self._held or b"")
        if self._file is None:
            return io.BytesIO(held + b"".join(self._chunks))
        self._file.flush()
        body = open(self._body_path or self.path, "rb")  # noqa: SIM115 - the caller closes it
        return prefixed(held, body) if held else body

    def judge_first_line(self) -> None:
        """Hold the client's text back until its first line shows whether the message starts
        with a header field (``write``). Call it before the client's first write."""
        self._first = bytearray()

    def _judged(self, data: bytes = b"", end: bool = False) -> bytes:
        """``data`` behind the first line held back, once that line can be judged (``end``:
        the text is all in): with an empty line first when it is no header field (a line of
        white space, which would have continued the Received: above it; text, an mbox
        ``From `` line), so it and what follows are the body, as Postfix's cleanup does, and
        never a part of our trace fields (RFC 5321 4.4)."""
        assert self._first is not None
        self._first += data
        first = self._first
        match = _FIELD_START.match(first)
        undecided = first == b"\r" or (
            match is not None and match.end() == len(first) and not match[0].endswith(b":")
        )
        if undecided and not end and len(first) < _FIELD_NAME_MAX:
            return b""  # a field's name so far: wait for its colon, or what rules it out
        self._first = None
        if first[:2] == b"\r\n" or (match is not None and match[0].endswith(b":")):
            return bytes(first)
        return b"\r\n" + bytes(first)

    def _settle(self) -> None:
        if self._first is not None:
            self._write(self._judged(end=True))

    def write(self, data: bytes) -> None:
        """The client's text; its header section is also kept, up to ``HEADER_LIMIT``, for
        the checks that read header fields."""
        if self._first is not None:
            data = self._judged(data)
            if not data:
                return
        self._write(data)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self._append(data)
        if self._header_end < 0 and len(self.head) <= HEADER_LIMIT:
            seen = len(self.head)
            self.head += data[: HEADER_LIMIT + 4 - seen]  # room for the CRLFCRLF at the limit
            if self.head.startswith(b"\r\n"):  # an empty line first: no header fields
                end = 0
            else:
                end = self.head.find(b"\r\n\r\n", max(0, seen - 3))
                end = end + 2 if end >= 0 else -1
            if end >= 0:
                self._header_end = end
                del self.head[end:]

    @property
    def header_too_long(self) -> bool:
        """Is the client's header section longer than ``HEADER_LIMIT``? (A message without an
        empty line is all header section, RFC 5322 2.1.) Known once the text is all in."""
        self._settle()
        if self._header_end < 0:
            return len(self.head) > HEADER_LIMIT
        return self._header_end > HEADER_LIMIT

    def header_block(self) -> bytes:
        """The client's header section (up to the first empty line), as far as it was kept:
        all of it unless ``header_too_long``."""
        self._settle()
        return bytes(self.head)

    def commit_sync(self) -> None:
        """``commit`` for a caller already in a worker thread (``IMailStore.deliver``'s
        ``prepare``)."""
        self._commit()

    def _commit(self, record: tuple[str, bytes] | None = None) -> None:
        self._settle()
        if self._file is None:
            self._open()
        self._file.flush()
        if record is not None:  # before the fsync, which makes both durable at once
            os.setxattr(self._file.fileno(), *record)
        _safeio.fsync(self._file.fileno())
        self._file.close()

    def _close(self) -> None:
        """Close the file; a failing last flush (a full disk) doesn't matter to a message that
        is being dropped, and the descriptor is released either way."""
        if self._file is not None and not self._file.closed:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._body_path is not None:  # a held message dropped before its seal
            body_path, self._body_path = self._body_path, None
            threads.deferToThreadPool(self._reactor, self._pool, _remove, body_path)

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
        return run_in(self._reactor, self._pool, self._commit, record)

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


def strip_fields(data: bytes, remove: tuple[tuple[str, int], ...], whole: bool = False) -> bytes:
    """``data`` (the start of a message, or with ``whole`` all of it) without the header
    fields ``remove`` names: (name, n) is the n-th field of that name, counting from 1,
    continuation lines included; a line without a colon counts as a field named by all of
    it (mail authentication counts alike, ``mailauth.checks``). Data with no end of the
    header section in it is returned as it is, unless it is the whole message: one without
    a body (no empty line) is all header section (RFC 5322 2.1)."""
    end = data.find(b"\r\n\r\n")
    if data.startswith(b"\r\n"):  # no header at all
        return data
    if end < 0:
        if not whole:  # no end in sight
            return data
        end = data.rfind(b"\r\n")  # the last whole line's end: a header field's
        if end < 0:
            return data
    header, rest = data[: end + 2], data[end + 2 :]
    wanted = {(name.lower(), n) for name, n in remove}
    kept: list[bytes] = []
    seen: dict[str, int] = {}
    dropping = False
    for line in header.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):  # a continuation of the field before
            if not dropping:
                kept.append(line)
            continue
        name = line.partition(b":")[0].strip().decode("ascii", "replace").lower()
        seen[name] = seen.get(name, 0) + 1
        dropping = (name, seen[name]) in wanted
        if not dropping:
            kept.append(line)
    return b"".join(line + b"\r\n" for line in kept) + rest


def prefixed(head: bytes, body: BinaryIO) -> BinaryIO:
    """A read-only stream of ``head`` then ``body``'s bytes; closing it closes ``body``. (The
    held header block before a spilled body; a filter's view with earlier filters' fields.)"""
    return io.BufferedReader(_Chained(head, body))  # type: ignore[return-value]


def in_memory(stream: BinaryIO) -> bool:
    """Whether reading ``stream`` (a ``reader()``, perhaps ``prefixed`` with filters' fields)
    touches no file: a small message's, whole in memory. A filter on the reactor thread
    reads only such a stream there (DESIGN invariant 3); a spilled body is read in a pool."""
    while isinstance(stream, io.BufferedReader) and isinstance(stream.raw, _Chained):
        stream = stream.raw._body
    return isinstance(stream, io.BytesIO)


class _Chained(io.RawIOBase):
    """Bytes in memory, then a file: the held header block followed by a spilled body."""

    def __init__(self, head: bytes, body: BinaryIO) -> None:
        self._head = io.BytesIO(head)
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._head.readinto(buffer)
        if n:
            return n
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
