"""Message files with bare-LF line ends, served in their CRLF form.

Why: Maildir files conventionally end lines with LF alone (Dovecot, Postfix's local delivery,
procmail, maildrop, mutt, mbsync and offlineimap all write them so), and the store adopts such
files as they are: that is how people move in. IMAP and POP3 send messages with CRLF line ends
(RFC 3501 §2.2, RFC 5322 §2.1, RFC 1939 §3), and the sizes they report (RFC822.SIZE, partial
fetch offsets, BODYSTRUCTURE sizes, POP3 LIST) count the octets as sent. So a file is served in
its *CRLF form*: every LF not already preceded by CR gets one; a lone CR is data and passes
through, as Dovecot does (its ``,W=`` "virtual size" in Maildir names counts the same way). A
file that is already CRLF is its own CRLF form, byte for byte: the store serves such files (all
the ones it writes itself) directly and never runs them through here. It tells the two apart
without reading: the index keeps each message's CRLF size, and a file of that size on disk
needs no conversion (the form is longer than the file exactly when it has a bare LF).

Streams: a large file is converted a chunk at a time (``CRLFView``), never held whole, and a
partial fetch (offsets in the CRLF form) seeks through ``Marks``: the file and CRLF offsets at
every ``MARK_EVERY`` octets of the file, learnt once per file while reading it and kept for the
most recently opened files, so downloading a large message in chunks costs one pass, not one
pass per chunk.
"""

from __future__ import annotations

import io
import os
import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from operator import itemgetter
from typing import BinaryIO

CHUNK = 64 * 1024
MARK_EVERY = 256 * 1024  # a multiple of CHUNK: marks fall on chunk starts
_W_FIELD = re.compile(r",W=(\d{1,15})(?=[,:]|$)")


def bare_newlines(data: bytes) -> int:
    """How many LFs in ``data`` have no CR before them (within ``data``)."""
    return data.count(b"\n") - data.count(b"\r\n")


def crlf_form(data: bytes) -> bytes:
    """``data`` with a CR added before each bare LF; ``data`` itself when it has none."""
    if not bare_newlines(data):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def convert_chunk(chunk: bytes, after_cr: bool) -> bytes:
    """The CRLF form of one chunk of a file; ``after_cr`` says the chunk before ended in CR
    (then an LF starting this chunk already has its CR)."""
    converted = crlf_form(chunk)
    if after_cr and chunk[:1] == b"\n":
        return converted[1:]
    return converted


class SizeCounter:
    """The CRLF size of a file fed to it in chunks, in order."""

    def __init__(self) -> None:
        self.size = 0
        self._after_cr = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk) + bare_newlines(chunk)
        if self._after_cr and chunk[:1] == b"\n":
            self.size -= 1
        self._after_cr = chunk.endswith(b"\r")


def crlf_size(file: BinaryIO, chunk_size: int = 1 << 20) -> int:
    """The CRLF size of the rest of ``file``, read a chunk at a time."""
    counter = SizeCounter()
    while chunk := file.read(chunk_size):
        counter.feed(chunk)
    return counter.size


def header_end(data: bytes) -> int:
    """Where the body starts in ``data`` (just after the blank line that ends the header,
    RFC 5322 §2.1), whether lines end in CRLF, LF or a mix; -1 when ``data`` has no blank line.
    """
    if data[:1] == b"\n":
        return 1
    if data[:2] == b"\r\n":
        return 2
    crlf = data.find(b"\n\r\n")  # the usual end, "\r\n\r\n": look for "\n\n" only before it
    lf = data.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(data))
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def declared_size(filename: str) -> int | None:
    """The CRLF size a Maildir name states in its ``,W=`` field (Dovecot's convention), if any.
    Only the part before the ``:2,`` flags is looked at."""
    match = _W_FIELD.search(filename.partition(":")[0])
    return int(match[1]) if match else None


class Marks:
    """(CRLF offset, file offset, file byte before was CR) at every ``MARK_EVERY`` octets of
    one file, from the start, as far as it has been read; shared by every reader of the file
    (the store's threads and the reactor's), so appends take a lock and reads need none."""

    def __init__(self) -> None:
        self.points: list[tuple[int, int, bool]] = [(0, 0, False)]
        self.complete = False
        self._lock = threading.Lock()

    def add(self, virtual: int, raw: int, after_cr: bool) -> None:
        with self._lock:
            if raw > self.points[-1][1]:
                self.points.append((virtual, raw, after_cr))

    def before(self, virtual: int) -> tuple[int, int, bool]:
        """The last mark at or before the CRLF offset ``virtual``."""
        points = self.points
        return points[max(bisect_right(points, virtual, key=itemgetter(0)) - 1, 0)]


_marks: OrderedDict[tuple[int, int, int, int], Marks] = OrderedDict()
_marks_guard = threading.Lock()
MARKS_KEPT = 128


def marks_for(st: os.stat_result) -> Marks:
    """The marks of the file with this ``fstat``; a file replaced or changed gets new ones."""
    if st.st_size <= MARK_EVERY:
        return Marks()  # a skip over a small file costs less than remembering it
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _marks_guard:
        marks = _marks.get(key)
        if marks is None:
            marks = _marks[key] = Marks()
            while len(_marks) > MARKS_KEPT:
                _marks.popitem(last=False)
        else:
            _marks.move_to_end(key)
        return marks


class CRLFView(io.RawIOBase):
    """A file opened for reading, seen in its CRLF form: ``read``, ``seek`` and ``tell`` work
    in CRLF offsets. Wrap it in ``io.BufferedReader`` for ``readline`` (``open_crlf`` does)."""

    def __init__(self, raw: BinaryIO, marks: Marks) -> None:
        super().__init__()
        self._raw = raw
        self._marks = marks
        self._pos = 0  # CRLF offset of the next octet read returns
        self._raw_pos = 0  # file offset of the next chunk to convert
        self._after_cr = False
        self._pending = b""  # converted octets from _pos on, not yet returned
        self._taken = 0  # of _pending

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._raw.close()
        super().close()

    def _fill(self) -> bool:
        """Convert the next chunk of the file into ``_pending``; False at the end."""
        if self._raw_pos % MARK_EVERY == 0:
            self._marks.add(self._pos, self._raw_pos, self._after_cr)
        chunk = self._raw.read(CHUNK)
        if not chunk:
            self._marks.complete = True
            return False
        self._pending = convert_chunk(chunk, self._after_cr)
        self._taken = 0
        self._raw_pos += len(chunk)
        self._after_cr = chunk.endswith(b"\r")
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._taken >= len(self._pending) and not self._fill():
            return 0
        count = min(len(buffer), len(self._pending) - self._taken)
        buffer[:count] = self._pending[self._taken : self._taken + count]
        self._taken += count
        self._pos += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            raise io.UnsupportedOperation("the CRLF size is the index's to know")
        offset = max(offset, 0)
        mark = self._marks.before(offset)
        if not mark[0] <= self._pos <= offset:  # start again from the nearest mark
            self._pos, self._raw_pos, self._after_cr = mark
            self._raw.seek(self._raw_pos)
            self._pending, self._taken = b"", 0
        while self._pos < offset:
            if self._taken >= len(self._pending) and not self._fill():
                break
            step = min(offset - self._pos, len(self._pending) - self._taken)
            self._taken += step
            self._pos += step
        return self._pos


def open_crlf(raw: BinaryIO, st: os.stat_result, learn: bool = True) -> io.BufferedReader:
    """The CRLF form of the open file ``raw`` (``st`` its ``fstat``). ``learn`` reads a large
    file through once now (call it from the store's thread pool) so later seeks on the
    reactor thread skip at most ``MARK_EVERY`` octets."""
    marks = marks_for(st)
    view = CRLFView(raw, marks)
    if learn and st.st_size > MARK_EVERY and not marks.complete:
        view.seek(1 << 62)
        view.seek(0)
    return io.BufferedReader(view, CHUNK)
